import ArgumentParser
import Foundation
import TimelineClient
import TimelineCore
import TimelineLink
import TimelineStore

struct Add: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Add an event (editors): stored first, then sent at once when the server is reachable.",
        discussion: """
            Example:
              timeline add --date "June 9 to 10, 2011" --title "Second Director-General meeting" \\
                --summary "Held in Washington DC." --reference "[4] MIC, Joint Press Statement, http://…" --tag cyber
            """)
    @OptionGroup var global: GlobalOptions
    @Option(help: "The date, as text (e.g. \"June 9 to 10, 2011\", \"2011-06\", \"Q3 2011\").") var date: String
    @Flag(help: "Keep a --date the calendar cannot place, as text only (the event then drops out of date filters).")
    var dateTextOnly = false
    @Option(help: "The title (not empty).") var title: String
    @Option(help: "The summary.") var summary: String = ""
    @Option(
        name: .customLong("reference"),
        help: "A reference, \"[n] citation\", or a citation alone, numbered after the others (repeatable).")
    var references: [String] = []
    @Option(name: .customLong("tag"), help: "A tag (repeatable).") var tags: [String] = []

    func validate() throws {
        guard !title.allSatisfy(\.isWhitespace) else { throw ValidationError("--title must not be empty") }
        try DateCheck.placeable(date, textOnly: dateTextOnly)
        for tag in tags where !Tags.isValid(tag) {
            throw ValidationError("\"\(tag)\" is not a tag (1-64 bytes, no spaces)")
        }
    }

    func run() async throws {
        let client = try global.client()
        // Minted here, so that the event can be shown and edited while it waits in the outbox, and a retried send
        // cannot create it twice.
        let id = EventID(ULID.generate(at: WallClock.now()))
        let refs = try References.typed(references, after: [], keeping: [])
        // Spelled as JSON, not as a typed Change: the date goes as typed, for the server's parser to place.
        let item = try await client.propose([
            "op": "event.create", "event": .string(id.description),
            "date": DateCheck.json(date, textOnly: dateTextOnly),
            "title": .string(title),
            "summary": .string(summary), "references": .array(refs.map(\.json)),
            "tags": .array(tags.map { .string($0) }),
        ])
        try await Sending.sendNow(
            client, item: item, json: global.json, edit: ["op": "event.create", "event": .string(id.description)]
        ) {
            let short = (try? await client.shortForms([id.description])) ?? [:]
            return "event \(Output.name(id, short: short, title: title))"
        }
    }
}

struct Delete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete an event (editors): it stays in the history as a tombstone, and leaves every listing.",
        discussion: "Example: timeline delete 94EPPCE")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Event ID (short or whole).") var id: String

    func run() async throws {
        let client = try global.client()
        let eventID = try await client.resolve(id)
        let event = try await client.event(eventID).event
        guard !event.deleted else {
            throw TimelineError(.invalidState, "\(id) is deleted already")
        }
        let item = try await client.propose(EditCodec.proposal(.deleteEvent, event: eventID, base: event.revision))
        try await Sending.sendNow(
            client, item: item, json: global.json, edit: ["op": "event.delete", "event": .string(eventID.description)]
        ) {
            let short = (try? await client.shortForms([eventID.description])) ?? [:]
            return "deletion of \(Output.name(eventID, short: short, title: event.title))"
        }
    }
}
