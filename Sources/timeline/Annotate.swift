import ArgumentParser
import TimelineCore

struct Annotate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Annotate an event: stored first, then sent at once when the server is reachable.",
        discussion: #"Example: timeline annotate 019ECZQW0094 "Confirmed by the MOFA fact sheet" --tag verified"#)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Event ID or unique prefix.") var id: String
    @Argument(help: "The annotation's text.") var text: String
    @Option(name: .customLong("tag"), help: "A tag (repeatable).") var tags: [String] = []

    func validate() throws {
        guard !text.allSatisfy(\.isWhitespace) else { throw ValidationError("the text is empty") }
        for tag in tags where !Tags.isValid(tag) {
            throw ValidationError("\"\(tag)\" is not a tag (1-64 bytes, no spaces)")
        }
    }

    func run() async throws {
        let client = try global.client()
        let eventID = try await client.resolve(id)
        let annotation = try await client.annotate(eventID, text: text, tags: tags)
        if !global.json { print("annotation \(annotation) on \(eventID)") }
        try await Sending.pushNow(client, json: global.json, what: ["annotation": .string(annotation.description)])
    }
}
