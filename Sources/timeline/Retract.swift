import ArgumentParser
import TimelineClient
import TimelineCore
import TimelineLink

struct Retract: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Retract an annotation (it stays in the history, marked retracted).",
        discussion: "Example: timeline retract K3F7QAB (the annotation's ID, as timeline show prints it)")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The annotation's ID (short or whole).") var annotation: String

    func run() async throws {
        let client = try global.client()
        if case .queued(let item, let queued, false, _) = try await client.name(annotation) {
            // Never sent: nothing to retract on the server; it leaves the outbox.
            try client.drop(item)
            if global.json {
                Output.json(["state": "dropped", "outbox": .int(item), "annotation": .string(queued)])
            } else {
                print("annotation \(queued) was never sent: removed it from your outbox (edit \(item))")
            }
            return
        }
        let (id, event) = try await client.resolveAnnotation(annotation)
        let title = try await client.event(event).event.title
        let item = try await client.propose(
            EditCodec.proposal(.retractAnnotation(id), event: event, base: try await client.base(of: event)))
        try await Sending.sendNow(
            client, item: item, json: global.json,
            edit: [
                "op": "annotation.retract", "annotation": .string(id.description), "event": .string(event.description),
            ]
        ) {
            let short = (try? await client.shortForms([id.description, event.description])) ?? [:]
            return
                "retraction of annotation \(short[id.description] ?? id.description) on \(Output.name(event, short: short, title: title))"
        }
    }
}
