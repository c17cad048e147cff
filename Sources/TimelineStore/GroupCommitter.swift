import CTimelineSQLite
import CoreMetrics
import Dispatch
import Foundation
import GRDB
import NIOConcurrencyHelpers
import TimelineCore

/// The writer's invariants, in one place (every append goes through here):
/// - One writer thread (`queue`) runs every appending transaction, one group at a time; only it advances
///   `state.head` (the last version and hash), so versions are contiguous and each hash chains to the one before.
/// - A group is one transaction and one fsync. It runs first without a savepoint per unit; if a unit is refused,
///   the transaction is rolled back and the group runs again with one, so that only that unit is left out, its
///   `WriterCache` changes taken back by the cache's journal. A commit that fails leaves the head where it was
///   and drops the cache.
/// - No caller is answered before COMMIT returned. Observers (watchers, an office replica) are handed each
///   group's committed edits, in version order, before its callers are answered.
///
/// Group commit: appends that arrive while the writer is busy wait together and go into the next
/// transaction, which costs one fsync for all of them. Each append is its own savepoint inside it, so a
/// refused batch takes nothing else down, and each caller is answered only after COMMIT returned.
final class GroupCommitter: Sendable {
    /// What one append brings: proposals to admit, or edits already in another store's log to verify and copy.
    enum Unit {
        case proposals(PreparedProposals)
        case linked(LinkedEdits)

        var count: Int {
            switch self {
            case .proposals(let p): p.proposals.count
            case .linked(let l): l.edits.count
            }
        }
    }

    struct Request {
        var unit: Unit
        /// Called on the writer's thread once the unit's group is durable, or refused.
        var completion: @Sendable (Result<[Edit], Error>) -> Void
    }

    struct State {
        var pending: [Request] = []
        var running = false
        var head: ChainHead
        var observers: [@Sendable ([[Edit]]) -> Void] = []
    }

    let state: NIOLockedValueBox<State>
    let pool: DatabasePool
    let maxEdits: Int
    let queue = DispatchQueue(label: "timeline.store.writer")
    private let releaser = DispatchQueue(label: "timeline.store.release")

    let checkpointer: Checkpointer

    init(pool: DatabasePool, head: ChainHead, maxEdits: Int, checkpointer: Checkpointer) {
        self.pool = pool
        self.maxEdits = maxEdits
        self.checkpointer = checkpointer
        state = NIOLockedValueBox(State(head: head))
    }

    func addObserver(_ observer: @escaping @Sendable ([[Edit]]) -> Void) {
        state.withLockedValue { $0.observers.append(observer) }
    }

    /// The last durable version and hash.
    var head: ChainHead { state.withLockedValue { $0.head } }

    /// Forgets what this writer believed about the file, reading its head again: another process wrote it (the
    /// commands of one client home take turns at its replica). Runs on the writer's queue, after any commit.
    func resynchronize(dataset: String) async throws {
        try await withCheckedThrowingContinuation { (done: CheckedContinuation<Void, Error>) in
            queue.async {
                do {
                    let head = try self.pool.read { db in try SQLiteStore.readHead(db, dataset: dataset) }
                    self.state.withLockedValue { $0.head = head }
                    self.cache = WriterCache()
                    done.resume()
                } catch {
                    done.resume(throwing: error)
                }
            }
        }
    }

    func submit(_ unit: Unit) async throws -> [Edit] {
        try await withCheckedThrowingContinuation { continuation in
            submit(unit) { continuation.resume(with: $0) }
        }
    }

    func submit(_ unit: Unit, completion: @escaping @Sendable (Result<[Edit], Error>) -> Void) {
        let start = state.withLockedValue { s in
            s.pending.append(Request(unit: unit, completion: completion))
            if s.running { return false }
            s.running = true
            return true
        }
        if start { queue.async { self.drain() } }
    }

    /// Edits per commit (`timeline_commit_edits`, a histogram when metrics are exported).
    private let groupSize = Recorder(label: "timeline_commit_edits")

    private func drain() {
        while true {
            let (group, head) = state.withLockedValue { s -> ([Request], ChainHead) in
                var n = 0
                var edits = 0
                // Always take one request, however large; then others while they fit the commit's budget.
                while n < s.pending.count, n == 0 || edits + s.pending[n].unit.count <= maxEdits {
                    edits += s.pending[n].unit.count
                    n += 1
                }
                let group = Array(s.pending.prefix(n))
                s.pending.removeFirst(n)
                if group.isEmpty { s.running = false }
                return (group, s.head)
            }
            if group.isEmpty { return }
            let (results, newHead) = commit(group, head: head)
            let observers = state.withLockedValue { s in
                s.head = newHead
                return s.observers
            }
            let committed = results.compactMap { result in (try? result.get()).flatMap { $0.isEmpty ? nil : $0 } }
            if !committed.isEmpty {
                groupSize.record(committed.reduce(0) { $0 + $1.count })
                for observer in observers { observer(committed) }
            }
            for (request, result) in zip(group, results) { request.completion(result) }
            // The group's proposals, bodies and edits are released on another thread: for a bulk batch these are
            // hundreds of thousands of strings and arrays, and releasing them had been 5 % of the writer's time
            // (the bulk-batch benchmark, under perf), which every append waits for.
            releaser.async { withExtendedLifetime((group, results, committed)) {} }
        }
    }

    /// Rows the writer read or wrote, kept between commits: only this writer writes, so they stay true, and
    /// an event that takes a stream of annotations is parsed once. Any failed commit drops them.
    nonisolated(unsafe) private var cache = WriterCache()

    /// Units of a group are seldom refused, so a group first runs without a savepoint per unit: under one, SQLite
    /// runs two more statements per unit and copies every page the unit first touches into its sub-journal. If a
    /// unit is refused, the whole transaction is rolled back and the group runs again with a savepoint per unit,
    /// so that only the refused unit is left out; a group of one unit is simply answered with its refusal.
    private func commit(_ group: [Request], head start: ChainHead) -> ([Result<[Edit], Error>], ChainHead) {
        switch attempt(group, head: start, savepoints: false) {
        case .committed(let results, let head): return (results, head)
        case .refused(let error) where group.count == 1: return ([.failure(error)], start)
        case .refused:
            guard case .committed(let results, let head) = attempt(group, head: start, savepoints: true) else {
                preconditionFailure("a group run with savepoints answers every unit")
            }
            return (results, head)
        }
    }

    private enum Attempt {
        case committed([Result<[Edit], Error>], ChainHead)
        /// A unit of a group run without savepoints was refused; the transaction was rolled back, nothing written.
        case refused(Error)
    }

    private func attempt(_ group: [Request], head start: ChainHead, savepoints: Bool) -> Attempt {
        var results: [Result<[Edit], Error>] = []
        var head = start
        do {
            return try pool.writeWithoutTransaction { db -> Attempt in
                try db.cachedStatement(sql: "BEGIN IMMEDIATE").execute()
                var writer = try StateWriter(db: db, cache: cache)
                let savepoint = try db.cachedStatement(sql: "SAVEPOINT unit")
                let release = try db.cachedStatement(sql: "RELEASE unit")
                let rollback = try db.cachedStatement(sql: "ROLLBACK TO unit")
                // Without savepoints the whole group is one unit for the cache's journal.
                writer.beginUnit()
                for request in group {
                    let saved = head
                    if savepoints {
                        writer.beginUnit()
                        try savepoint.execute()
                    }
                    do {
                        let edits: [Edit]
                        switch request.unit {
                        case .proposals(let batch): edits = try writer.admit(batch, head: &head)
                        case .linked(let page): edits = try writer.copy(page, head: &head)
                        }
                        if savepoints { try release.execute() }
                        results.append(.success(edits))
                    } catch {
                        guard savepoints else {
                            try db.cachedStatement(sql: "ROLLBACK").execute()
                            writer.rollbackUnit()
                            cache = writer.cache
                            return .refused(Self.describe(error))
                        }
                        try rollback.execute()
                        try release.execute()
                        head = saved
                        writer.rollbackUnit()
                        results.append(.failure(Self.describe(error)))
                    }
                }
                timeline_sqlite_reset_wal_frames()
                try db.cachedStatement(sql: "COMMIT").execute()
                // Read on this thread, right after the COMMIT whose WAL hook recorded it.
                let walFrames = Int(timeline_sqlite_wal_frames())
                writer.beginUnit()
                writer.cache.trim()
                cache = writer.cache
                checkpointer.finishOnWriter(db)
                if walFrames >= 0 { checkpointer.committed(walFrames: walFrames) }
                return .committed(results, head)
            }
        } catch {
            // BEGIN, COMMIT or a rollback failed (disk full, I/O error): nothing of this group is durable.
            cache = WriterCache()
            try? pool.writeWithoutTransaction { db in
                if db.isInsideTransaction { try db.execute(sql: "ROLLBACK") }
            }
            let failure = Self.describe(error)
            let all: [Result<[Edit], Error>] = group.indices.map { i in
                if i < results.count, case .failure = results[i] { return results[i] }
                return .failure(failure)
            }
            return .committed(all, start)
        }
    }

    static func describe(_ error: Error) -> Error {
        switch error {
        case let e as DatabaseError: return StoreErrors.map(e, doing: "append")
        default: return error
        }
    }
}
