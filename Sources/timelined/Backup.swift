import ArgumentParser
import Foundation
import TimelineCore
import TimelineServer
import TimelineStore

struct Backup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Copy the folder's timeline into a file while it is served, and prove the copy.",
        discussion: """
            The copy is of one moment (SQLite's VACUUM INTO: a commit is in it whole or not at all) and does not \
            hold the server up. It holds the folder's tokens too (as hashes, as the folder does). It is verified \
            (chain and state hash) before the command says it exists; it prints the copy's version, head and \
            state hash. A PostgreSQL store is backed up with pg_dump, and a restored database proved with \
            timelined verify --store URL.

            Example:
              timelined backup --data ./data --to /backups/timeline-2026-12-07.tlbackup
            """)

    @Option(help: "The data folder whose timeline to copy (its server may be running).")
    var data: String

    @Option(help: "The new file to write the backup into.")
    var to: String

    @Flag(help: "Print the result as one JSON object.")
    var json = false

    func run() async throws {
        let dir = DataDirectory(path: (data as NSString).expandingTildeInPath)
        let file = (to as NSString).expandingTildeInPath
        do {
            if case .postgres(let location, _) = try dir.rememberedStore() {
                fail(
                    "\(dir.path) serves from PostgreSQL at \(location): back it up with pg_dump, and prove a "
                        + "restored database with timelined verify --store URL")
            }
            guard FileManager.default.fileExists(atPath: dir.storePath) else {
                fail("no timeline in \(dir.path) to back up")
            }
            var isFolder: ObjCBool = false
            let parent = (file as NSString).deletingLastPathComponent
            guard FileManager.default.fileExists(atPath: parent.isEmpty ? "." : parent, isDirectory: &isFolder),
                isFolder.boolValue
            else { fail("no folder \(parent) to write the backup into") }
            var extras = ["made": WallClock.now().rfc3339, "folder": dir.path]
            if let tokens = try? String(contentsOfFile: dir.tokensPath, encoding: .utf8) { extras["tokens"] = tokens }
            // SQLite may make the store's -wal and -shm files when no server has them open: they stay the folder's.
            let sidecars = ["-wal", "-shm"].map { dir.storePath + $0 }.filter {
                !FileManager.default.fileExists(atPath: $0)
            }
            defer { for path in sidecars { FolderOwner.match(path, folder: dir.path) } }
            let proved = try SQLiteBackup.make(store: dir.storePath, to: file, extras: extras)
            let size = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
            Report.print(proved, into: file, size: size, json: json, verb: "backed up into", extra: [:])
        } catch {
            fail(describe(error))
        }
    }
}

struct Restore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a data folder's timeline from a backup file, once the file is proved.",
        discussion: """
            The backup is verified (chain and state hash) before anything in the folder changes. A new folder \
            gets the backup's tokens; a folder that has a tokens file keeps its own. A folder a server is \
            serving is refused: stop it first. A folder that holds a timeline already is refused unless \
            --replace is given, and then its timeline is kept beside the restored one, renamed.

            Examples:
              timelined restore /backups/timeline-2026-12-07.tlbackup --data ./restored
              timelined restore /backups/timeline-2026-12-07.tlbackup --data ./data --replace
            """)

    @Argument(help: "The backup file (from timelined backup).")
    var file: String

    @Option(help: "The data folder to restore into (created if missing).")
    var data: String

    @Flag(help: "Replace the timeline the folder holds (kept beside it as timeline.sqlite.replaced-TIME).")
    var replace = false

    @Flag(help: "Print the result as one JSON object.")
    var json = false

    func run() async throws {
        let dir = DataDirectory(path: (data as NSString).expandingTildeInPath)
        let file = (file as NSString).expandingTildeInPath
        let fm = FileManager.default
        let folderWasThere = fm.fileExists(atPath: dir.path)
        do {
            guard fm.fileExists(atPath: file) else { fail("no backup file at \(file)") }
            // Held until the end: no server starts on the folder while its timeline is being put in place.
            let lock = try dir.lockForWriting()
            defer { withExtendedLifetime(lock) {} }
            if case .postgres(let location, _) = try dir.rememberedStore() {
                fail("\(dir.path) serves from PostgreSQL at \(location); restore a database there with pg_restore")
            }
            let existing = fm.fileExists(atPath: dir.storePath)
            if existing && !replace {
                fail(
                    "\(dir.path) holds a timeline already; give --replace to replace it (it is kept beside, "
                        + "renamed), or restore into a new folder")
            }
            let restoring = dir.storePath + ".restoring"
            try? fm.removeItem(atPath: restoring)
            let proved = try SQLiteBackup.restore(file, to: restoring)
            var kept: String?
            if existing {
                // The store with its WAL and shared-memory files: the WAL may hold commits the file does not yet.
                let stamp = WallClock.now().rfc3339.replacingOccurrences(of: ":", with: "")
                kept = dir.storePath + ".replaced-" + stamp
                for suffix in ["", "-wal", "-shm"] where fm.fileExists(atPath: dir.storePath + suffix) {
                    try fm.moveItem(atPath: dir.storePath + suffix, toPath: kept! + suffix)
                }
            }
            try fm.moveItem(atPath: restoring, toPath: dir.storePath)
            let owned = { (path: String) in FolderOwner.match(path, folder: dir.path) }
            owned(dir.lockPath)
            var tokens = ("kept", "the folder's own, kept")
            if !fm.fileExists(atPath: dir.tokensPath) {
                if let text = proved.extras["tokens"] {
                    guard
                        fm.createFile(
                            atPath: dir.tokensPath, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600])
                    else { throw TimelineError(.storeFailed, "could not write \(dir.tokensPath)") }
                    owned(dir.tokensPath)
                    tokens = ("backup", "from the backup")
                } else {
                    tokens = ("none", "none (add one with timelined token add --data \(dir.path))")
                }
            }
            owned(dir.storePath)
            var extra: [String: JSON] = ["tokens": .string(tokens.0)]
            if let kept { extra["replaced"] = .string(kept) }
            Report.print(proved, into: dir.storePath, size: nil, json: json, verb: "restored into", extra: extra)
            if !json {
                if let kept { print("the timeline it replaced is kept as \(kept)") }
                print("tokens  \(tokens.1)")
                if !fm.fileExists(atPath: dir.certificatePath) {
                    print(
                        "certificate: none in \(dir.path)/tls (a backup holds none); copy the old folder's tls/ there, "
                            + "or serve makes a new one whose fingerprint every client must pin")
                }
                print("serve it with: timelined serve --data \(dir.path)")
            }
        } catch {
            // A restore that failed into a new folder leaves no folder behind.
            if !folderWasThere { try? fm.removeItem(atPath: dir.path) }
            fail(describe(error))
        }
    }
}

enum Report {
    static func print(
        _ proved: SQLiteBackup.Proved, into path: String, size: Int?, json: Bool, verb: String, extra: [String: JSON]
    ) {
        let report = proved.report
        if json {
            var object: [String: JSON] = [
                "ok": true, "dataset": .string(proved.dataset), "version": .int(report.version),
                "head": .string(report.headHash.hex), "state": .string(report.stateHash.hex), "file": .string(path),
            ]
            if let made = proved.extras["made"] { object["made"] = .string(made) }
            if let size { object["bytes"] = .int(Int64(size)) }
            object.merge(extra) { $1 }
            Swift.print(JSON.object(object).canonicalString)
        } else {
            Swift.print("dataset \(proved.dataset)")
            Swift.print("version \(report.version)")
            Swift.print("head    \(report.headHash.hex)")
            Swift.print("state   \(report.stateHash.hex)")
            if let made = proved.extras["made"] { Swift.print("made    \(made)") }
            Swift.print("ok: verified and \(verb) \(path)\(size.map { " (\($0) bytes)" } ?? "")")
        }
    }
}
