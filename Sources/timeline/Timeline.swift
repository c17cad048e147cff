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
            Batch.self, Import.self, Export.self, Watch.self,
        ])

    static func main() async {
        if let typo = Suggest.unknownSubcommand(
            CommandLine.arguments.dropFirst(), known: configuration.subcommands.map { $0._commandName })
        {
            FileHandle.standardError.write(Data("timeline: \(typo)\n".utf8))
            Foundation.exit(2)
        }
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
                if CommandLine.arguments.contains("--json") {
                    Output.error(code: "USAGE", message: message(for: error))
                } else {
                    FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                }
                Foundation.exit(2)
            }
            if CommandLine.arguments.contains("--json") {
                switch error {
                case let e as ClientError: Output.error(code: e.code, message: e.message)
                case let e as TimelineError: Output.error(code: e.code.rawValue, message: e.message)
                default: Output.error(code: "ERROR", message: "\(error)")
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

/// "did you mean" for a mistyped subcommand, as git says it.
enum Suggest {
    static func unknownSubcommand(_ arguments: ArraySlice<String>, known: [String]) -> String? {
        guard let word = arguments.first, !word.hasPrefix("-"), !known.contains(word), word != "help" else {
            return nil
        }
        let close = known.map { ($0, distance(word, $0)) }.filter { $0.1 <= (word.count >= 4 ? 2 : 1) }
            .sorted { $0.1 < $1.1 }
        guard let best = close.first else {
            return "'\(word)' is not a timeline command; see timeline --help"
        }
        return "'\(word)' is not a timeline command; did you mean '\(best.0)'?"
    }

    /// Edit distance counting a swap of two neighbouring letters as one edit ("shwo" is one from "show").
    static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a)
        let b = Array(b)
        guard !a.isEmpty, !b.isEmpty else { return max(a.count, b.count) }
        var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
                }
            }
        }
        return d[a.count][b.count]
    }
}
