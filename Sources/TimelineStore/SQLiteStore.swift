import CTimelineSQLite
import Dispatch
import Foundation
import GRDB
import TimelineCore

/// The embedded store: one SQLite file in WAL mode with `synchronous=FULL`, one writer thread doing group
/// commit, and concurrent readers.
public final class SQLiteStore: TimelineStore, Sendable {
    public struct Options: Sendable {
        /// Most edits one commit may take from concurrent appends: each commit is one fsync, shared by all.
        /// 1 turns group commit off (one fsync per append), which only the benchmark wants.
        public var maxEditsPerCommit: Int = 20_000
        /// SQLite's page cache per connection, in MiB: a server's large batch must not spill pages to the WAL
        /// mid-transaction; a client's replica, written a page of a pull at a time, keeps its memory small.
        public var cacheMiB: Int = 64
        /// Bytes of WAL a checkpoint beside the writer copies into the file at a time (`Checkpointer`). 32 MiB is
        /// about 2,700 single PROPOSEs among 64 connections, or 40,000 edits of a pull.
        public var checkpointEveryBytes: Int = 32 << 20
        /// The page size of a store created with these options; an existing file keeps the size it was made with.
        /// 4 KiB suits a primary: a commit of one PROPOSE rewrites a few pages, all of which go to the WAL and
        /// its fsync (16 KiB pages: B2's p99 1.34-1.36 of pgbench's and a quarter fewer edits/s, against 0.84-0.91).
        public var pageSize: Int = 4_096

        public init(
            maxEditsPerCommit: Int = 20_000, cacheMiB: Int = 64, checkpointEveryBytes: Int = 32 << 20,
            pageSize: Int = 4_096
        ) {
            self.maxEditsPerCommit = maxEditsPerCommit
            self.cacheMiB = cacheMiB
            self.checkpointEveryBytes = checkpointEveryBytes
            self.pageSize = pageSize
        }

        /// A client's replica: written only by pulls, a page of thousands of edits per commit, with a small cache.
        /// Its pages are 16 KiB, so a pull's commit writes a quarter as many (each with its own header, WAL frame
        /// and checksum) and its b-trees split a quarter as often. A fresh pull of 1,020,029 edits, four
        /// alternating pairs: 9.5-12.2 s with 4 KiB pages, 8.3-10.3 s with 16 KiB.
        public static let replica = Options(cacheMiB: 16, pageSize: 16_384)

        /// An office's store: written only by what it pulls from upstream, in pages, as a client's replica is, so
        /// with the replica's pages; its readers serve clients and keep a primary's cache.
        public static let office = Options(pageSize: replica.pageSize)
    }

    /// SQLite's memory statistics cost every allocation a process-wide mutex; they can be switched off only
    /// before SQLite's first connection, so the first store opened does it (later calls change nothing).
    static let memoryStatisticsOff: Bool = timeline_sqlite_disable_memory_statistics() == 0

    /// SQLite's own checkpoint in the writer's commit, a safety net behind `Checkpointer`: 64 MiB of log.
    static let autocheckpointBytes = 64 << 20

    let pool: DatabasePool
    public let dataset: String
    public let path: String
    let committer: GroupCommitter
    /// Where completion-handler reads run, one lane per reader of the pool.
    let lanes: ReadLanes

    /// Opens the store at `path`, creating it (with a new dataset ID, or `dataset` when given) if the file
    /// does not exist yet. Opening an existing store for a different `dataset` fails with `WRONG_DATASET`.
    public init(path: String, dataset: String? = nil, options: Options = Options()) throws {
        _ = Self.memoryStatisticsOff
        var config = Configuration()
        config.label = "timeline"
        config.busyMode = .timeout(10)
        config.prepareDatabase { db in
            // Takes effect only while the file is still empty, that is for a store created now.
            try db.execute(sql: "PRAGMA page_size = \(options.pageSize)")
            // SQLite as Debian builds it zeroes every byte a write frees (SQLITE_SECURE_DELETE). Nothing here is
            // secret from the log, which keeps every edit ever made: 2.7 % of an edit's instructions (callgrind,
            // the store's SQL through the C API, 30,147 -> 29,334).
            try db.execute(sql: "PRAGMA secure_delete = OFF")
            // FULL: a commit in WAL mode is on disk before it returns, so an OK survives power loss, not just kill -9.
            try db.execute(sql: "PRAGMA synchronous = FULL")
            try db.execute(sql: "PRAGMA journal_size_limit = 67108864")
            try db.execute(sql: "PRAGMA cache_size = -\(max(1, options.cacheMiB) * 1024)")
        }
        var pageSize = 4_096
        // Only its owner reads a timeline: the file is made 0600 before SQLite opens it (and gives its -wal and
        // -shm files the same mode), whatever the umask.
        try PrivateFile.create(path)
        do {
            pool = try DatabasePool(path: path, configuration: config)
            // Again after opening: DatabasePool puts its writer in WAL mode after prepareDatabase ran, and sets
            // synchronous = NORMAL there, under which a commit returns before the log is on disk.
            try pool.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA synchronous = FULL")
                // The WAL counts pages, whose size is the file's own (an older replica's may be 4 KiB).
                pageSize = try Int.fetchOne(db, sql: "PRAGMA page_size") ?? 4_096
                // Checkpoints run beside the writer (Checkpointer), not inside its commits. The writer's WAL hook
                // keeps SQLite's own as a safety net at 64 MiB (a bulk import's large commits, or a short-lived
                // process that exits before the checkpointer ran, still leave the data in the file, not in a
                // growing log) and counts the log's pages for Checkpointer. It replaces wal_autocheckpoint, which
                // is set through the same hook; only this connection writes.
                _ = timeline_sqlite_watch_wal(
                    UnsafeMutableRawPointer(db.sqliteConnection), Int32(SQLiteStore.autocheckpointBytes / pageSize))
            }
            try Schema.migrator.migrate(pool)
            self.dataset = try pool.write { db in
                if let existing = try String.fetchOne(db, sql: "SELECT value FROM store_info WHERE key = 'dataset'") {
                    return existing
                }
                let minted = dataset ?? ULID.generate(at: WallClock.now()).string
                try db.execute(sql: "INSERT INTO store_info(key, value) VALUES ('dataset', ?)", arguments: [minted])
                return minted
            }
        } catch let error as DatabaseError {
            throw StoreErrors.map(error, doing: "open the store")
        }
        if let dataset, dataset != self.dataset {
            throw TimelineError(
                .wrongDataset, "the store holds dataset \(self.dataset), not \(dataset)")
        }
        self.path = path
        let name = self.dataset
        let head = try pool.read { db in try Self.readHead(db, dataset: name) }
        let checkpointer: Checkpointer
        do {
            checkpointer = try Checkpointer(path: path, everyFrames: options.checkpointEveryBytes / pageSize)
        } catch let error as DatabaseError {
            throw StoreErrors.map(error, doing: "open the store")
        }
        committer = GroupCommitter(
            pool: pool, head: head, maxEdits: max(1, options.maxEditsPerCommit), checkpointer: checkpointer)
        lanes = ReadLanes(width: config.maximumReaderCount)
    }

    static func readHead(_ db: Database, dataset: String) throws -> ChainHead {
        if let row = try Row.fetchOne(db, sql: "SELECT version, hash FROM edits ORDER BY version DESC LIMIT 1") {
            let bytes: [UInt8] = Array(row["hash"] as Data)
            guard let digest = Digest(bytes: bytes) else {
                throw TimelineError(.corrupt, "the last edit's hash is not 32 bytes")
            }
            return ChainHead(version: row["version"], hash: digest)
        }
        return ChainHead(version: 0, hash: Genesis.hash(dataset: dataset))
    }

    public var engine: String { "sqlite" }

    public func append(_ batch: [Proposal]) async throws -> [Edit] {
        guard !batch.isEmpty else { return [] }
        return try await committer.submit(.proposals(PreparedProposals(batch)))
    }

    public func append(_ batch: [Proposal], completion: @escaping @Sendable (Result<[Edit], Error>) -> Void) {
        guard !batch.isEmpty else { return completion(.success([])) }
        committer.submit(.proposals(PreparedProposals(batch)), completion: completion)
    }

    public func appendVerified(_ page: LinkedEdits) async throws {
        guard !page.edits.isEmpty else { return }
        _ = try await committer.submit(.linked(page))
    }

    public func observeCommits(_ observer: @escaping @Sendable ([[Edit]]) -> Void) {
        committer.addObserver(observer)
    }

    /// Reads the head again and drops the writer's cached rows: for a file that another process may have written
    /// since this one opened it (a client home's replica, shared by the commands run on it).
    public func resynchronize() async throws {
        try await committer.resynchronize(dataset: dataset)
    }

    public func head() async throws -> (version: Int64, hash: Digest) {
        let h = committer.head
        return (h.version, h.hash)
    }
}

/// The time for stamping: wall clock in milliseconds.
public enum WallClock {
    public static func now() -> Timestamp {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Timestamp(milliseconds: Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000)
    }
}

/// The last version and hash of a log.
package struct ChainHead: Sendable, Equatable {
    package var version: Int64
    package var hash: Digest

    package init(version: Int64, hash: Digest) {
        self.version = version
        self.hash = hash
    }
}

enum StoreErrors {
    /// SQLite's errors become stable codes; the message names what failed, never a path or SQL.
    static func map(_ error: DatabaseError, doing what: String) -> TimelineError {
        switch error.resultCode {
        case .SQLITE_FULL:
            return TimelineError(.storeFailed, "the disk is full; could not \(what), nothing was written")
        case .SQLITE_READONLY, .SQLITE_PERM, .SQLITE_CANTOPEN:
            return TimelineError(.storeFailed, "the store is not writable; could not \(what)")
        case .SQLITE_CORRUPT, .SQLITE_NOTADB:
            return TimelineError(.corrupt, "the store file is damaged; could not \(what)")
        case .SQLITE_CONSTRAINT:
            return TimelineError(.corrupt, "a schema constraint refused the write (\(error.message ?? "constraint"))")
        default:
            return TimelineError(.storeFailed, "could not \(what) (SQLite error \(error.resultCode.rawValue))")
        }
    }
}

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Files that only their owner may read.
public enum PrivateFile {
    /// Creates `path` empty with mode 0600 if it does not exist, so that whatever opens it next (SQLite) keeps that
    /// mode; an existing file is left as it is.
    public static func create(_ path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if fd >= 0 {
            close(fd)
        } else if errno != EEXIST {
            throw TimelineError(.storeFailed, "cannot create \(path): \(String(cString: strerror(errno)))")
        }
    }
}
