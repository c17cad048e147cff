import ArgumentParser
import TimelineClient
import TimelineCore
import TimelineLink

struct OutboxCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "outbox",
        abstract: "Your edits not yet in the timeline: queued to be sent, or refused by the server.",
        discussion: """
            Edits queued while offline are sent by timeline sync. One the server refuses (your role changed, the \
            event was deleted, …) stays here with the server's reason until you retry or drop it.
            Examples:
              timeline outbox
              timeline outbox retry 4
              timeline outbox drop 4
            """,
        subcommands: [List.self, Retry.self, Drop.self],
        defaultSubcommand: List.self)

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List queued and refused edits.")
        @OptionGroup var global: GlobalOptions

        func run() async throws {
            let client = try global.client()
            let items = try client.outbox()
            if global.json {
                for item in items { Output.json(item.json) }
                return
            }
            if items.isEmpty {
                let conflicts = try client.conflicts().count
                print(
                    "the outbox is empty: nothing is waiting to be sent"
                        + (conflicts > 0
                            ? "; \(conflicts) conflict\(conflicts == 1 ? "" : "s") to settle: timeline conflicts" : ""))
                return
            }
            let short = try await client.shortForms(items.compactMap { $0.event?.description })
            for item in items {
                let on = item.event.map { " on \(short[$0.description] ?? $0.description)" } ?? ""
                let state = item.refusal.map { Output.warn("refused: \($0.code) \($0.message)") } ?? "queued"
                print("\(Output.bold(String(item.id)))  \(Output.proposalSummary(item.proposal))\(on)  \(state)")
            }
        }
    }

    struct Retry: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Send a refused edit again, on the event as it is now.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The edit's number in timeline outbox (or the ID of what it creates).") var edit: String

        func run() async throws {
            let client = try global.client()
            let number = try await OutboxCommand.item(edit, client)
            let item = try await client.retry(number)
            try await Sending.sendNow(
                client, item: item, json: global.json, edit: ["outbox": .int(number)], keepRefused: true
            ) {
                "edit \(number)"
            }
        }
    }

    struct Drop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove an edit, queued or refused, for good.")
        @OptionGroup var global: GlobalOptions
        @Argument(help: "The edit's number in timeline outbox (or the ID of what it creates).") var edit: String

        func run() async throws {
            let client = try global.client()
            let number = try await OutboxCommand.item(edit, client)
            try client.drop(number)
            if global.json {
                Output.json(["dropped": .int(number)])
            } else {
                print("dropped edit \(number)")
            }
        }
    }

    /// An outbox item by its number, or by the ID of the event or annotation it creates.
    static func item(_ text: String, _ client: TimelineClient) async throws -> Int64 {
        if let number = Int64(text.hasPrefix("#") ? String(text.dropFirst()) : text) { return number }
        if case .queued(let item, _, _, _) = try await client.name(text) { return item }
        throw TimelineError(.notFound, "\(text) is not an edit in your outbox; see timeline outbox")
    }
}
