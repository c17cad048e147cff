import Foundation
import GRDB
import TimelineCore

/// Online backups of a SQLite store: a copy of one moment, made while a server goes on writing, and proved by
/// `verify` before anyone is told it exists.
///
/// A backup file is a SQLite database: the store as it was (SQLite's `VACUUM INTO` copies what one read
/// transaction sees, so a commit is in the copy whole or not at all, and the writer is not held up), plus a table of
/// its own, `timelined_backup`, with what the folder kept beside the store (its tokens file, as text). Restoring
/// drops that table again.
public enum SQLiteBackup {
    /// What a backup holds, proved: its dataset, the verify report of its timeline, and what was kept beside it.
    public struct Proved: Sendable {
        public var dataset: String
        public var report: VerifyReport
        public var extras: [String: String]
    }

    /// Copies the store at `store` (which a server may be writing) into the new file `path`, with `extras`, and
    /// verifies the copy (written through `path.partial`, renamed once verified).
    public static func make(store: String, to path: String, extras: [String: String]) throws -> Proved {
        guard !FileManager.default.fileExists(atPath: path) else {
            throw TimelineError(.badArgument, "\(path) exists already; a backup goes into a new file")
        }
        do {
            return try throughPartial(path) { partial in
                let source = try readOnly(store)
                try source.inDatabase { db in try db.execute(sql: "VACUUM INTO ?", arguments: [partial]) }
                try source.close()
                let copy = try DatabaseQueue(path: partial)
                try copy.inDatabase { db in
                    try db.execute(sql: "CREATE TABLE timelined_backup (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                    for (key, value) in extras.sorted(by: { $0.key < $1.key }) {
                        try db.execute(sql: "INSERT INTO timelined_backup VALUES (?, ?)", arguments: [key, value])
                    }
                }
                let proved = try prove(copy, path: path)
                try copy.close()
                return proved
            }
        } catch let error as DatabaseError {
            throw StoreErrors.map(error, doing: "back up the store")
        }
    }

    /// Writes the backup `file` as a store at `path` (a new file), without its extras table, after proving it
    /// (written through `path.partial`, renamed once proved).
    public static func restore(_ file: String, to path: String) throws -> Proved {
        guard FileManager.default.fileExists(atPath: file) else {
            throw TimelineError(.notFound, "no backup file at \(file)")
        }
        do {
            return try throughPartial(path) { partial in
                let source = try readOnly(file)
                // A page-by-page copy into the 0600 file (a file copy would keep the backup's mode and owner).
                let target = try DatabaseQueue(path: partial)
                try source.backup(to: target)
                try source.close()
                let proved = try prove(target, path: file)
                try target.inDatabase { db in try db.execute(sql: "DROP TABLE timelined_backup") }
                try target.close()
                return proved
            }
        } catch {
            throw failure(error, file: file)
        }
    }

    /// Runs `body` on `path.partial`, made empty and 0600 first (what SQLite then writes there keeps that mode), and
    /// renames it to `path` once `body` returned: a failed or interrupted copy leaves no file that looks like one.
    private static func throughPartial<T>(_ path: String, _ body: (String) throws -> T) throws -> T {
        let partial = path + ".partial"
        try? FileManager.default.removeItem(atPath: partial)
        do {
            try PrivateFile.create(partial)
            let result = try body(partial)
            try FileManager.default.moveItem(atPath: partial, toPath: path)
            return result
        } catch {
            try? FileManager.default.removeItem(atPath: partial)
            throw error
        }
    }

    /// A connection that only reads `path`, waiting out a writer's lock.
    private static func readOnly(_ path: String) throws -> DatabaseQueue {
        var configuration = Configuration()
        configuration.readonly = true
        configuration.busyMode = .timeout(10)
        return try DatabaseQueue(path: path, configuration: configuration)
    }

    /// A restore's failure in a sentence about the file: not a database, damaged, or not verifying.
    private static func failure(_ error: Error, file: String) -> Error {
        if error is TimelineError { return error }
        if let error = error as? DatabaseError {
            switch error.resultCode {
            case .SQLITE_NOTADB: return TimelineError(.badArgument, "\(file) is not a timelined backup (not SQLite)")
            case .SQLITE_CORRUPT: return TimelineError(.corrupt, "\(file) is damaged: \(error.message ?? "corrupt")")
            default: return StoreErrors.map(error, doing: "restore the backup")
            }
        }
        return TimelineError(.corrupt, "\(file) does not verify: \(error)")
    }

    /// The copy's dataset and verify report; throws unless it verifies.
    private static func prove(_ copy: DatabaseQueue, path: String) throws -> Proved {
        try copy.inDatabase { db in
            guard try db.tableExists("timelined_backup"), try db.tableExists("store_info"),
                let dataset = try String.fetchOne(db, sql: "SELECT value FROM store_info WHERE key = 'dataset'")
            else {
                throw TimelineError(.badArgument, "\(path) is not a timelined backup")
            }
            let report = try SQLiteStore.verify(db, dataset: dataset)
            guard report.ok else {
                throw TimelineError(.corrupt, "the copy does not verify: \(report)")
            }
            let extras = try Dictionary(
                uniqueKeysWithValues: Row.fetchAll(db, sql: "SELECT key, value FROM timelined_backup").map {
                    ($0["key"] as String, $0["value"] as String)
                })
            return Proved(dataset: dataset, report: report, extras: extras)
        }
    }
}
