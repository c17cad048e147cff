import ArgumentParser
import Foundation
import TimelineCore
import TimelinePostgres
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
            Migrate.self, Backup.self, Restore.self, Reload.self,
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
            let arguments: [String]
            do {
                arguments = try ConfigFile.expand(Array(CommandLine.arguments.dropFirst()))
            } catch let problem as ConfigFile.Problem {
                FileHandle.standardError.write(Data("timelined: \(problem)\n".utf8))
                Foundation.exit(2)
            }
            var command = try parseAsRoot(arguments)
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

/// The data folder and the store, shared by every subcommand.
struct DataOptions: ParsableArguments {
    @Option(name: .long, help: "The server's data folder.")
    var data: String?

    @Option(
        help: ArgumentHelp(
            "A PostgreSQL store, postgresql://USER@HOST:PORT/DATABASE, instead of the folder's SQLite file.",
            discussion: "Remembered by the data folder. The password comes from PGPASSWORD or --store-password-file."))
    var store: String?

    @Option(help: "A file whose first line is the PostgreSQL store's password.")
    var storePasswordFile: String?

    func validate() throws {
        guard data != nil || store != nil else { throw ValidationError("give --data FOLDER (or --store URL)") }
        if let store {
            do { _ = try PostgresLocation(url: store) } catch { throw ValidationError("--store: \(describe(error))") }
        }
    }

    /// The folder; only for subcommands that need one (after `requireData()`).
    var directory: String { ((data ?? "") as NSString).expandingTildeInPath }

    /// Exits with a message unless --data was given.
    func requireData(_ why: String) {
        if data == nil { fail("give --data FOLDER: \(why)", code: 2) }
    }

    /// The password file as an absolute path: the folder remembers it, and is used from anywhere.
    var passwordFile: String? {
        storePasswordFile.map {
            URL(fileURLWithPath: ($0 as NSString).expandingTildeInPath).standardizedFileURL.path
        }
    }

    /// The store given on the command line, if any.
    func givenStore() throws -> StoreChoice? {
        guard let store else { return nil }
        return .postgres(try PostgresLocation(url: store), passwordFile: passwordFile)
    }

    /// The store to use with the folder: the one given, or the one it remembers (with --store-password-file, if
    /// given, as its password's file).
    func choice(for dir: DataDirectory) throws -> StoreChoice {
        let choice = try dir.storeChoice(given: try givenStore())
        if storePasswordFile != nil, choice == .sqlite {
            throw ValidationError("--store-password-file is for a PostgreSQL store; \(dir.path) keeps its own file")
        }
        return choice.withPasswordFile(passwordFile)
    }

    /// Exits with a message when the data folder does not exist (commands other than serve and import need one).
    func requireFolder() throws {
        requireData("it holds the server's files")
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            fail("no data folder at \(directory) (timelined serve --data \(data ?? "") creates one)")
        }
    }

    /// The store named by --store, or the one the folder remembers; exits with a message when there is none. A
    /// SQLite folder a server is writing is read as a snapshot, and `live` names that server's process.
    func openStore() async throws -> (dir: DataDirectory?, store: any TimelineStore, tokens: TokenStore, live: Int32?) {
        if data == nil, let given = try givenStore() {
            let (store, tokens, _) = try await DataDirectory(path: "/nonexistent").open(given)
            return (nil, store, tokens, nil)
        }
        let dir = DataDirectory(path: directory)
        let choice = try choice(for: dir)
        if choice == .sqlite {
            guard dir.exists else { fail("no store in \(dir.path)") }
        }
        let (store, tokens, _) = try await dir.open(choice)
        return (dir, store, tokens, dir.liveWriter())
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
