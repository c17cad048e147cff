import ArgumentParser
import TimelineClient

struct Push: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send queued local edits; conflicts are recorded (exit 3 if any remain).",
        discussion: "Example: timeline push --json")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let client = try global.client()
        let report = try await client.push()
        let remaining = try client.conflicts().count
        if global.json {
            Output.json([
                "accepted": .int(Int64(report.accepted)), "merged": .int(Int64(report.merged)),
                "conflicts": .int(Int64(remaining)),
            ])
        } else {
            print(
                "sent \(report.accepted) edit\(report.accepted == 1 ? "" : "s")\(report.merged > 0 ? ", \(report.merged) merged in part" : "")"
            )
            if remaining > 0 {
                print(Output.warn("\(remaining) conflict\(remaining == 1 ? "" : "s") to resolve: timeline conflicts"))
            }
        }
        if remaining > 0 { throw conflictsRemain }
    }
}
