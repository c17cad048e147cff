import ArgumentParser
import TimelineClient
import TimelineLink

struct Pull: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fetch new edits from the server into the replica.",
        discussion: "Resumable: each page is applied with its checkpoint in one transaction. Example: timeline pull")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let report = try await global.client().pull(progress: Output.progress)
        if global.json {
            Output.json(["applied": .int(Int64(report.applied)), "version": .int(report.version)])
        } else {
            print("pulled \(report.applied) edit\(report.applied == 1 ? "" : "s"); at version \(report.version)")
        }
    }
}
