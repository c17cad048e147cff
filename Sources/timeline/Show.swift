import ArgumentParser
import TimelineClient
import TimelineCore
import TimelineLink

struct Show: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "One event with its references and annotations (and your edits not yet in the timeline).",
        discussion: """
            ID is any ID that log, show or watch printed (or a whole ID, or the start of one); an annotation's ID \
            shows its event. Example: timeline show 94EPPCE --at 12
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Event or annotation ID (short or whole).") var id: String
    @Option(help: "As it was just after this version.") var at: Int64?

    func run() async throws {
        let client = try global.client()
        Pager.start(global)
        let named = try await client.name(id)
        if case .queued(let item, let queued, true, _) = named {
            throw TimelineError(
                .notSent, "event \(queued) is in your outbox (edit \(item)), not sent yet: timeline sync sends it")
        }
        guard let eventID = named.event else { throw TimelineError(.notFound, "\(id) names no event") }
        try await Checks.version(at, of: client, option: "--at")
        let view = try await client.event(eventID, asOf: at)
        if global.json {
            Output.json(view.json)
        } else {
            let pending = try client.outbox().filter { $0.event == eventID }
            let short = try await client.shortForms(
                [eventID.description] + view.annotations.map(\.id.description))
            Output.eventDetail(view, pending: pending, short: short)
        }
    }
}

/// Checks of what a person typed that several commands share.
enum Checks {
    /// The event an ID names: an event's own, or the one an annotation is on (as show does).
    static func event(_ text: String, of client: TimelineClient) async throws -> EventID {
        let named = try await client.name(text)
        if case .queued(let item, let queued, true, _) = named {
            throw TimelineError(
                .notSent, "event \(queued) is in your outbox (edit \(item)), not sent yet: timeline sync sends it")
        }
        guard let event = named.event else { throw TimelineError(.notFound, "\(text) names no event") }
        return event
    }

    /// A version given to look back at (`--at`, `--from`, `--to`) must be one the replica holds: past the head
    /// would show the present as if it were that version.
    static func version(_ version: Int64?, of client: TimelineClient, option: String) async throws {
        guard let version else { return }
        let head = try await client.replica.currentVersion()
        guard version >= 1, version <= head else {
            throw TimelineError(
                .badVersion,
                "\(option) \(version) is outside the replica's log (versions 1 to \(head)); timeline pull for newer ones"
            )
        }
    }
}
