import ArgumentParser
import Foundation
import TimelineCore
import TimelinePostgres
import TimelineServer
import TimelineStore

struct Migrate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Move a timeline between the folder's SQLite file and a PostgreSQL database, all or nothing.",
        discussion: """
            --to copies the folder's SQLite timeline (log, chain, state, tokens) into an empty PostgreSQL \
            database; the folder then serves from it (its SQLite file is left as it was). --from copies a \
            PostgreSQL timeline into a new folder's SQLite file. Versions, hashes and the state hash are the same \
            on both sides, or nothing is written. Stop the folder's server first.

            Examples:
              PGPASSWORD=... timelined migrate --data ./data --to postgresql://timeline@db:5432/timeline
              PGPASSWORD=... timelined migrate --data ./copy --from postgresql://timeline@db:5432/timeline
            """)

    @Option(help: "The data folder: the SQLite timeline to copy (--to), or a new folder to copy into (--from).")
    var data: String

    @Option(help: "The empty PostgreSQL database to copy the folder's timeline into.")
    var to: String?

    @Option(help: "The PostgreSQL database to copy into the new folder.")
    var from: String?

    @Option(help: "A file whose first line is the database's password (else PGPASSWORD).")
    var storePasswordFile: String?

    @Flag(help: "Print the result as one JSON object.")
    var json = false

    func validate() throws {
        guard (to == nil) != (from == nil) else { throw ValidationError("give exactly one of --to URL and --from URL") }
        do { _ = try PostgresLocation(url: to ?? from ?? "") } catch {
            throw ValidationError("\(to == nil ? "--from" : "--to"): \(describe(error))")
        }
    }

    func run() async throws {
        let dir = DataDirectory(path: (data as NSString).expandingTildeInPath)
        let passwordFile = storePasswordFile.map {
            URL(fileURLWithPath: ($0 as NSString).expandingTildeInPath).standardizedFileURL.path
        }
        let database = StoreChoice.postgres(try PostgresLocation(url: to ?? from!), passwordFile: passwordFile)
        do {
            let lock = try dir.lockForWriting()
            defer { withExtendedLifetime(lock) {} }
            if to != nil {
                if case .postgres(let location, _) = try dir.rememberedStore() {
                    fail("\(dir.path) serves from \(location) already")
                }
                guard FileManager.default.fileExists(atPath: dir.storePath) else {
                    fail("no SQLite timeline in \(dir.path) to migrate")
                }
                let (source, sourceTokens, _) = try await dir.open(.sqlite)
                let target: any TimelineStore
                let targetTokens: TokenStore
                do {
                    (target, targetTokens, _) = try await dir.open(database, create: true, dataset: source.dataset)
                } catch let error as TimelineError where error.code == .wrongDataset {
                    throw TimelineError(.wrongDataset, "\(error.message); migrate --to needs an empty database")
                }
                guard let postgres = target as? PostgresStore else { fail("not a PostgreSQL store") }
                try await postgres.copyLog(from: source)
                try await targetTokens.copyEntries(from: sourceTokens)
                try await compare(source, postgres, into: "\(postgres.location)")
                try dir.remember(database)
                await postgres.close()
                if !json {
                    print("\(dir.path) now serves from \(postgres.location); its SQLite file is kept as it was")
                }
            } else {
                guard !dir.exists else {
                    fail("\(dir.path) holds a timeline already; --from copies into a new folder")
                }
                let (source, sourceTokens, _) = try await DataDirectory(path: "/nonexistent").open(database)
                defer { Task { await (source as? PostgresStore)?.close() } }
                // Written beside its place and renamed at the end: a copy that fails leaves no timeline behind.
                let partial = dir.path + "/timeline.partial"
                try? FileManager.default.removeItem(atPath: partial)
                try FileManager.default.createDirectory(
                    atPath: partial, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
                // Its own scope: the SQLite store is closed before its files move.
                do {
                    let target = try SQLiteStore(path: partial + "/timeline.sqlite", dataset: source.dataset)
                    try await copy(from: source, into: target)
                    try await compare(source, target, into: dir.storePath)
                }
                try await TokenStore(path: partial + "/tokens.json").copyEntries(from: sourceTokens)
                for name in ["timeline.sqlite", "timeline.sqlite-wal", "timeline.sqlite-shm", "tokens.json"]
                where FileManager.default.fileExists(atPath: partial + "/" + name) {
                    try FileManager.default.moveItem(atPath: partial + "/" + name, toPath: dir.path + "/" + name)
                }
                try FileManager.default.removeItem(atPath: partial)
                if !json { print("copied into \(dir.storePath); serve it with timelined serve --data \(dir.path)") }
            }
        } catch {
            fail(describe(error))
        }
    }

    /// Pages of the source's log into a SQLite store, each verified link by link.
    func copy(from source: any TimelineStore, into target: SQLiteStore) async throws {
        var after: Int64 = 0
        while true {
            let page = try await source.edits(after: after, limit: 5_000)
            guard let last = page.last else { break }
            do { try await target.appendVerified(page) } catch let r as BatchRejection { throw r.error }
            after = last.version
        }
    }

    /// Both sides verified; their version, chain head and state hash must be the same.
    func compare(_ source: any TimelineStore, _ target: any TimelineStore, into name: String) async throws {
        let (a, b) = (try await source.verify(), try await target.verify())
        guard a.ok, b.ok, a.version == b.version, a.headHash == b.headHash, a.stateHash == b.stateHash else {
            throw TimelineError(.corrupt, "the copy differs from the source: \(a) / \(b)")
        }
        if json {
            print(
                JSON.object([
                    "ok": true, "dataset": .string(source.dataset), "version": .int(b.version),
                    "head": .string(b.headHash.hex), "state": .string(b.stateHash.hex), "into": .string(name),
                ]).canonicalString)
        } else {
            print("dataset \(source.dataset): \(b.version) edits copied")
            print("head    \(b.headHash.hex)")
            print("state   \(b.stateHash.hex)")
        }
    }
}
