import ArgumentParser
import Foundation
import TimelineCore
import TimelineServer
import TimelineStore

@main
struct Timelined: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "timelined",
        abstract: "The Timeline server: the authoritative annotated timeline over TLS.",
        discussion: """
            Start a server on a new data folder (it creates the store, a self-signed certificate and an admin \
            token, and loads the sample timeline):

              timelined serve --data /var/lib/timeline --listen 127.0.0.1:7447

            Then give people tokens:

              timelined token add ana --role annotator --data /var/lib/timeline
            """,
        version: "0.1.0",
        subcommands: [
            Serve.self, TokenCommand.self, Verify.self, Status.self, Conflicts.self, Import.self, Export.self,
        ],
        defaultSubcommand: nil
    )

    /// As timeline's: a mistyped command suggests the right one; usage errors exit 2, other failures 1.
    static func main() async {
        if let typo = Spelling.unknownCommand(
            CommandLine.arguments.dropFirst(), known: configuration.subcommands.map { $0._commandName },
            program: "timelined")
        {
            FileHandle.standardError.write(Data("timelined: \(typo)\n".utf8))
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
            switch exitCode(for: error) {
            case .success:
                print(fullMessage(for: error))
                Foundation.exit(0)
            case .validationFailure:
                FileHandle.standardError.write(
                    Data(((parsed ? "timelined: \(message(for: error))" : fullMessage(for: error)) + "\n").utf8))
                Foundation.exit(2)
            default:
                if let exit = error as? ExitCode { Foundation.exit(exit.rawValue) }
                FileHandle.standardError.write(Data("timelined: \(describe(error))\n".utf8))
                Foundation.exit(1)
            }
        }
    }
}

/// The data folder, shared by every subcommand.
struct DataOptions: ParsableArguments {
    @Option(name: .long, help: "The server's data folder.")
    var data: String

    var directory: String { (data as NSString).expandingTildeInPath }

    /// Exits with a message when the data folder does not exist (commands other than serve and import need one).
    func requireFolder() throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            fail("no data folder at \(directory) (timelined serve --data \(data) creates one)")
        }
    }

    /// The folder's existing store, for reading; exits with a message when there is none. A folder a server is
    /// writing is read as a snapshot, and `live` names that server's process.
    func openStore() throws -> (DataDirectory, SQLiteStore, live: Int32?) {
        let dir = DataDirectory(path: directory)
        guard dir.exists else { fail("no store in \(dir.path)") }
        return (dir, try SQLiteStore(path: dir.storePath), dir.liveWriter())
    }
}

/// Prints one line to standard error and exits with `code`.
func fail(_ message: String, code: Int32 = 1) -> Never {
    FileHandle.standardError.write(Data("timelined: \(message)\n".utf8))
    exit(code)
}

func describe(_ error: Error) -> String {
    switch error {
    case let e as TimelineError: return e.description
    default: return "\(error)"
    }
}
