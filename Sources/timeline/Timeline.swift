import ArgumentParser
import Foundation
import TimelineClient
import TimelineCore

@main
struct Timeline: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "timeline",
        abstract: "Read, annotate and edit the shared timeline; works offline and syncs with timelined.",
        discussion: """
            A typical session:
              timeline init --server tl.example.org:7447 --token tl_… --fingerprint 9fc8…
              timeline log --grep "cyber dialogue"
              timeline annotate 019ECZQW0094 "First Cyber Dialogue" --tag cyber
              timeline sync
              timeline conflicts

            Exit codes: 0 success, 1 error, 2 usage, 3 unresolved conflicts remain.
            TIMELINE_HOME (or --home) holds the replica; NO_COLOR turns colour off.
            """,
        version: "0.1.0",
        subcommands: [
            Init.self, Pull.self, Push.self, Sync.self, Status.self, Log.self, Show.self, History.self, Diff.self,
            Annotate.self, EditCommand.self, Retract.self, Conflicts.self, Resolve.self, Batch.self, Import.self,
            Export.self, Watch.self,
        ])

    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
                Foundation.exit(0)
            }
            if let exit = error as? ExitCode { Foundation.exit(exit.rawValue) }
            if code == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            FileHandle.standardError.write(Data("timeline: \(Output.describe(error))\n".utf8))
            Foundation.exit(1)
        }
    }
}

/// Options every subcommand shares.
struct GlobalOptions: ParsableArguments {
    @Option(help: "The client's home folder (default: $TIMELINE_HOME or ~/.local/share/timeline).")
    var home: String?

    @Flag(help: "One JSON object per line.")
    var json = false

    var clientHome: ClientHome {
        ClientHome(path: (home.map { ($0 as NSString).expandingTildeInPath }) ?? ClientHome.defaultPath)
    }

    func client() throws -> TimelineClient { try TimelineClient(home: clientHome) }
}

/// Exit code 3: conflicts remain for a person to resolve.
let conflictsRemain = ExitCode(3)
