import ArgumentParser
import TimelineCore

struct History: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Every edit of one event, oldest first.",
        discussion: "Example: timeline history 94EPPCE")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Event ID (short or whole).") var id: String

    func run() async throws {
        let client = try global.client()
        Pager.start(global)
        let event = try await Checks.event(id, of: client)
        let edits = try await client.replica.history(of: event)
        if global.json {
            for edit in edits { Output.json(EditCodec.json(edit)) }
            return
        }
        let short = try await client.shortForms(edits.flatMap(Output.ids))
        let title = try await client.event(event).event.title
        for edit in edits { print(Output.editLine(edit, short: short, titles: [event: title])) }
    }
}
