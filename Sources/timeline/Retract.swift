import ArgumentParser
import TimelineClient
import TimelineCore

struct Retract: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Retract an annotation (it stays in the history, marked retracted).",
        discussion: "Example: timeline retract 01M8HXEJRRG37AXFATR1161K07")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The annotation's ID.") var annotation: String

    func run() async throws {
        let client = try global.client()
        guard let id = AnnotationID(annotation), let found = try await client.replica.annotation(id) else {
            throw ClientError("NOT_FOUND", "no annotation \(annotation) in the replica (timeline pull first?)")
        }
        try client.enqueue([
            "op": "annotation.retract", "event": .string(found.event.description),
            "annotation": .string(id.description),
            "base": .int(try await client.base(of: found.event)),
        ])
        try await Sending.pushNow(client, json: global.json, what: ["annotation": .string(id.description)])
    }
}
