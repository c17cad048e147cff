import ArgumentParser
import TimelineCore

struct Conflicts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Local edits the server did not take as they were, waiting for you (exit 3 if any).",
        discussion: "Example: timeline conflicts --json")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let list = try global.client().conflicts()
        for c in list {
            if global.json {
                Output.json(c.json)
            } else if c.code == "CONFLICT" {
                print("\(Output.bold("#\(c.id)")) \(c.event?.description ?? "")  \(c.field)")
                print("   ours   (you):  \(Output.clip(Diff.text(c.ours), 200))")
                print("   theirs (\(c.theirAuthor), v\(c.theirVersion)):  \(Output.clip(Diff.text(c.theirs), 200))")
            } else {
                print("\(Output.bold("#\(c.id)")) \(c.event?.description ?? "")  refused: \(c.code) \(c.message)")
                print("   edit: \(Output.clip(c.proposal.canonicalString, 200))")
            }
        }
        if list.isEmpty && !global.json { print("no conflicts") }
        if !list.isEmpty {
            if !global.json { print("resolve with: timeline resolve ID --ours | --theirs | --set FIELD=VALUE") }
            throw conflictsRemain
        }
    }
}
