import ArgumentParser
import TimelineClient
import TimelineCore
import TimelineLink

struct Conflicts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fields someone else changed to another value while you edited them (exit 3 if any).",
        discussion: """
            Only true merge conflicts are listed here; edits the server refused (a role, a field) are in \
            timeline outbox. Example: timeline conflicts --json
            """)
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let client = try global.client()
        let list = try client.conflicts()
        let short = try await client.shortForms(list.compactMap { $0.event?.description })
        for c in list {
            if global.json {
                Output.json(c.json)
                continue
            }
            var title: String?
            if let event = c.event { title = try await client.replica.event(event, asOf: nil)?.event.title }
            let event = c.event.map { Output.name($0, short: short, title: title) } ?? "the timeline"
            if c.field == "deleted", c.theirs == true {
                // Not two values of a field: the event is gone, and the edit made before cannot apply.
                let edit = Output.proposalSummary(c.proposal)
                print(
                    "\(Output.bold("#\(c.id)"))  \(event) was deleted by \(c.theirAuthor) (v\(c.theirVersion)) after you edited it"
                )
                print("   your edit, which cannot apply to a deleted event:  \(Output.clip(edit, 200))")
                print("   settle it with: timeline resolve \(c.id) --theirs")
                continue
            }
            print("\(Output.bold("#\(c.id)"))  \(c.field) of \(event)")
            print("   ours   (you):  \(Output.clip(Diff.text(c.ours, field: c.field), 200))")
            print(
                "   theirs (\(c.theirAuthor), v\(c.theirVersion)):  \(Output.clip(Diff.text(c.theirs, field: c.field), 200))"
            )
        }
        if list.isEmpty && !global.json { print("no conflicts") }
        if !list.isEmpty {
            if !global.json, list.contains(where: { !($0.field == "deleted" && $0.theirs == true) }) {
                print("resolve with: timeline resolve NUMBER --ours | --theirs | --set FIELD=VALUE")
            }
            throw conflictsRemain
        }
    }
}
