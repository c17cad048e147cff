import ArgumentParser
import TimelineClient

struct Sync: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Push local edits, merging by event ID, then pull (exit 3 if conflicts remain).",
        discussion: "Example: timeline sync && timeline status")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let report = try await global.client().sync(progress: Output.progress)
        if global.json {
            Output.json([
                "sent": .int(Int64(report.push.accepted)), "merged": .int(Int64(report.push.merged)),
                "pulled": .int(Int64(report.pull.applied)), "version": .int(report.pull.version),
                "conflicts": .int(Int64(report.conflicts)),
            ])
        } else {
            print("sent \(report.push.accepted), pulled \(report.pull.applied); at version \(report.pull.version)")
            if report.conflicts > 0 {
                print(
                    Output.warn(
                        "\(report.conflicts) conflict\(report.conflicts == 1 ? "" : "s") to resolve: timeline conflicts"
                    ))
            }
        }
        if report.conflicts > 0 { throw conflictsRemain }
    }
}
