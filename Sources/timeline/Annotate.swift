import ArgumentParser
import TimelineCore

struct Annotate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Annotate an event: stored first, then sent at once when the server is reachable.",
        discussion: #"Example: timeline annotate 94EPPCE "Confirmed by the MOFA fact sheet" --tag verified"#)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Event ID (short or whole).") var id: String
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
        let title = try await client.event(eventID).event.title
        let (annotation, item) = try await client.annotateQueued(eventID, text: text, tags: tags)
        try await Sending.sendNow(
            client, item: item, json: global.json,
            edit: [
                "op": "annotation.add", "annotation": .string(annotation.description),
                "event": .string(eventID.description),
            ]
        ) {
            let short = (try? await client.shortForms([annotation.description, eventID.description])) ?? [:]
            return
                "annotation \(short[annotation.description] ?? annotation.description) on \(Output.name(eventID, short: short, title: title))"
        }
    }
}
