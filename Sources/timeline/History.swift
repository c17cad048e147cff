import ArgumentParser
import TimelineCore

struct History: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Every edit of one event, oldest first.",
        discussion: "Example: timeline history 019ECZQW007T")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Event ID or unique prefix.") var id: String

    func run() async throws {
        let client = try global.client()
        let edits = try await client.replica.history(of: try await client.resolve(id))
        for edit in edits {
            if global.json { Output.json(EditCodec.json(edit)) } else { print(Output.editLine(edit)) }
        }
    }
}
