import ArgumentParser

struct Show: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "One event with its references and annotations (and your queued edits).",
        discussion: "ID may be any unique prefix. Example: timeline show 019ECZQW0094 --at 12")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Event ID or unique prefix.") var id: String
    @Option(help: "As it was just after this version.") var at: Int64?

    func run() async throws {
        let client = try global.client()
        let eventID = try await client.resolve(id)
        let view = try await client.event(eventID, asOf: at)
        if global.json {
            Output.json(view.json)
        } else {
            Output.eventDetail(view, pending: try client.outbox().filter { $0.event == eventID })
        }
    }
}
