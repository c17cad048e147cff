import ArgumentParser
import TimelineCore

struct Watch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print edits as they happen, until Ctrl-C.",
        discussion: "Example: timeline watch --json | grep annotation.add")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let client = try global.client()
        for try await edit in client.watch() {
            if global.json { Output.json(EditCodec.json(edit)) } else { print(Output.editLine(edit)) }
        }
    }
}
