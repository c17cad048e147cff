import ArgumentParser
import Foundation
import TimelineClient
import TimelineCore
import TimelineLink

@main
struct Timeline: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "timeline",
        abstract: "Read, annotate and edit the shared timeline; works offline and syncs with timelined.",
        discussion: """
            A typical session:
              timeline init --server tl.example.org:7447 --token-file ~/tl.token --fingerprint 9fc8…
              timeline log --grep "cyber dialogue"
              timeline annotate 94EPPCE "First Cyber Dialogue" --tag cyber
              timeline sync
              timeline conflicts

            IDs: every ID a command prints (7 or more characters) names one event or annotation in any command.
            Exit codes: 0 success, 1 error (the edit was refused, or not sent), 2 usage, 3 conflicts remain.
            TIMELINE_HOME (or --home) holds the replica; TIMELINE_TOKEN can hold the token; NO_COLOR turns \
            colour off. With --json, errors are one JSON object on standard error.
            """,
        version: "0.1.0",
        subcommands: [
            Init.self, Pull.self, Push.self, Sync.self, Status.self, Log.self, Search.self, Show.self, History.self,
            Diff.self, Blame.self, Changes.self, Verify.self,
            Annotate.self, Add.self, EditCommand.self, Delete.self, Retract.self, Conflicts.self, Resolve.self,
            OutboxCommand.self,
            Batch.self, Import.self, Export.self, Chart.self, Watch.self,
        ])

    static func main() async {
        if let typo = Spelling.unknownCommand(
            CommandLine.arguments.dropFirst(), known: configuration.subcommands.map { $0._commandName },
            program: "timeline")
        {
            if CommandLine.arguments.contains("--json") {
                Output.error(code: .usage, message: typo)
            } else {
                FileHandle.standardError.write(Data("timeline: \(typo)\n".utf8))
            }
            Foundation.exit(2)
        }
        var parsed = false
        do {
            var command = try parseAsRoot()
            parsed = true
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
                if CommandLine.arguments.contains("--json") {
                    Output.error(code: .usage, message: message(for: error))
                } else if parsed {
                    // Found while running (a reference typed wrongly): the sentence alone, not the root's usage.
                    FileHandle.standardError.write(Data("timeline: \(message(for: error))\n".utf8))
                } else {
                    FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                }
                Foundation.exit(2)
            }
            if let e = error as? TimelineError, e.code == .usage {
                if CommandLine.arguments.contains("--json") {
                    Output.error(code: e.code, message: e.message)
                } else {
                    FileHandle.standardError.write(Data("timeline: \(e.message)\n".utf8))
                }
                Foundation.exit(2)
            }
            if CommandLine.arguments.contains("--json") {
                switch error {
                case let e as TimelineError: Output.error(code: e.code, message: e.message)
                default: Output.error(code: .unexpected, message: "\(error)")
                }
            } else {
                FileHandle.standardError.write(Data("timeline: \(Output.describe(error))\n".utf8))
            }
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

    @Flag(help: "Do not send long output through a pager ($TIMELINE_PAGER, $PAGER or less).")
    var noPager = false

    var clientHome: ClientHome {
        ClientHome(path: (home.map { ($0 as NSString).expandingTildeInPath }) ?? ClientHome.defaultPath)
    }

    func client() throws -> TimelineClient { try TimelineClient(home: clientHome) }
}

/// Exit code 3: conflicts remain for a person to resolve.
let conflictsRemain = ExitCode(3)
