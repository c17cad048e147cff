import Dispatch
import Foundation
import GRDB
import Synchronization
import TimelineCore

/// Group commit: appends that arrive while the writer is busy wait together and go into the next
/// transaction, which costs one fsync for all of them. Each append is its own savepoint inside it, so a
/// refused batch takes nothing else down, and each caller is answered only after COMMIT returned.
final class GroupCommitter: Sendable {
    struct Request {
        var batch: [Proposal]
        var continuation: CheckedContinuation<[Edit], Error>
    }

    struct State {
        var pending: [Request] = []
        var running = false
        var head: ChainHead
    }

    let state: Mutex<State>
    let pool: DatabasePool
    let maxEdits: Int
    let queue = DispatchQueue(label: "timeline.store.writer")

    init(pool: DatabasePool, head: ChainHead, maxEdits: Int) {
        self.pool = pool
        self.maxEdits = maxEdits
        state = Mutex(State(head: head))
    }

    /// The last durable version and hash.
    var head: ChainHead { state.withLock { $0.head } }

    func submit(_ batch: [Proposal]) async throws -> [Edit] {
        try await withCheckedThrowingContinuation { continuation in
            let start = state.withLock { s in
                s.pending.append(Request(batch: batch, continuation: continuation))
                if s.running { return false }
                s.running = true
                return true
            }
            if start { queue.async { self.drain() } }
        }
    }

    private func drain() {
        while true {
            let (group, head) = state.withLock { s -> ([Request], ChainHead) in
                var n = 0
                var edits = 0
                // Always take one request, however large; then others while they fit the commit's budget.
                while n < s.pending.count, n == 0 || edits + s.pending[n].batch.count <= maxEdits {
                    edits += s.pending[n].batch.count
                    n += 1
                }
                let group = Array(s.pending.prefix(n))
                s.pending.removeFirst(n)
                if group.isEmpty { s.running = false }
                return (group, s.head)
            }
            if group.isEmpty { return }
            let (results, newHead) = commit(group, head: head)
            state.withLock { $0.head = newHead }
            for (request, result) in zip(group, results) { request.continuation.resume(with: result) }
        }
    }

    private func commit(_ group: [Request], head start: ChainHead) -> ([Result<[Edit], Error>], ChainHead) {
        var results: [Result<[Edit], Error>] = []
        var head = start
        do {
            try pool.writeWithoutTransaction { db in
                try db.execute(sql: "BEGIN IMMEDIATE")
                var writer = StateWriter(db: db)
                for request in group {
                    let saved = head
                    try db.execute(sql: "SAVEPOINT unit")
                    do {
                        let edits = try writer.admit(request.batch, head: &head)
                        try db.execute(sql: "RELEASE unit")
                        results.append(.success(edits))
                    } catch {
                        try db.execute(sql: "ROLLBACK TO unit")
                        try db.execute(sql: "RELEASE unit")
                        head = saved
                        writer.forgetCache()
                        results.append(.failure(Self.describe(error)))
                    }
                }
                try db.execute(sql: "COMMIT")
            }
            return (results, head)
        } catch {
            // BEGIN or COMMIT failed (disk full, I/O error): nothing of this group is durable.
            try? pool.writeWithoutTransaction { db in
                if db.isInsideTransaction { try db.execute(sql: "ROLLBACK") }
            }
            let failure = Self.describe(error)
            let all: [Result<[Edit], Error>] = group.indices.map { i in
                if i < results.count, case .failure = results[i] { return results[i] }
                return .failure(failure)
            }
            return (all, start)
        }
    }

    static func describe(_ error: Error) -> Error {
        switch error {
        case let e as DatabaseError: return StoreErrors.map(e, doing: "append")
        default: return error
        }
    }
}

/// Admits proposals inside the writer's transaction and writes the log row and the materialized state.
struct StateWriter {
    let db: Database
    /// Rows read or written in this transaction; an event is parsed once however many edits touch it.
    var events: [EventID: Event?] = [:]
    var annotations: [AnnotationID: Annotation?] = [:]

    init(db: Database) { self.db = db }

    mutating func forgetCache() {
        events.removeAll(keepingCapacity: true)
        annotations.removeAll(keepingCapacity: true)
    }

    mutating func event(_ id: EventID) throws -> Event? {
        if let cached = events[id] { return cached }
        let row = try Row.fetchOne(
            db.cachedStatement(sql: "SELECT revision, body FROM events WHERE id = ?"), arguments: [id.description])
        let event = try row.map { row in
            try Event(json: try JSON(parsing: row["body"] as String), revision: row["revision"])
        }
        events[id] = .some(event)
        return event
    }

    mutating func annotation(_ id: AnnotationID) throws -> Annotation? {
        if let cached = annotations[id] { return cached }
        let body = try String.fetchOne(
            db.cachedStatement(sql: "SELECT body FROM annotations WHERE id = ?"), arguments: [id.description])
        let annotation = try body.map { try Annotation(json: try JSON(parsing: $0)) }
        annotations[id] = .some(annotation)
        return annotation
    }

    func history(_ id: EventID, afterRevision revision: Int64) throws -> [Edit] {
        try SQLiteReads.edits(db, sql: "SELECT body, hash FROM edits WHERE event = ? AND revision > ? ORDER BY revision",
            arguments: [id.description, revision])
    }

    mutating func admit(_ batch: [Proposal], head: inout ChainHead) throws -> [Edit] {
        var out: [Edit] = []
        out.reserveCapacity(batch.count)
        for (index, proposal) in batch.enumerated() {
            let current = try proposal.event.map { try event($0) } ?? nil
            let annotation = try proposal.change.annotationID.map { try self.annotation($0) } ?? nil
            let applied: Applied
            do {
                applied = try Rules.admit(
                    proposal, event: current, annotation: annotation,
                    since: { base in try history(proposal.event!, afterRevision: base) })
            } catch let error as TimelineError {
                throw BatchRejection(index: index, count: batch.count, error: error)
            }
            let (edit, body) = Edit.chained(
                after: head.hash, version: head.version + 1, revision: applied.revision, proposal: proposal)
            try db.cachedStatement(
                sql: "INSERT INTO edits(version, event, revision, op, body, hash) VALUES (?, ?, ?, ?, ?, ?)"
            ).execute(arguments: [
                edit.version, proposal.event?.description, edit.revision, proposal.change.operation.rawValue,
                String(decoding: body, as: UTF8.self), Data(edit.hash.bytes),
            ])
            try write(proposal, applied, previous: current, version: edit.version)
            head = ChainHead(version: edit.version, hash: edit.hash)
            out.append(edit)
        }
        return out
    }

    mutating func write(_ p: Proposal, _ applied: Applied, previous: Event?, version: Int64) throws {
        if case .setMeta(let set) = p.change {
            for (key, value) in set {
                if value.isNull {
                    try db.cachedStatement(sql: "DELETE FROM timeline_meta WHERE key = ?").execute(arguments: [key])
                } else {
                    try db.cachedStatement(sql: "INSERT OR REPLACE INTO timeline_meta(key, value) VALUES (?, ?)")
                        .execute(arguments: [key, value.canonicalString])
                }
            }
            return
        }
        guard let e = applied.event else { return }
        events[e.id] = .some(e)
        switch p.change {
        case .createEvent, .updateEvent, .deleteEvent:
            let args: StatementArguments = [
                e.revision, version, e.deleted, e.date.start?.iso, e.date.end?.iso,
                e.contentJSON.canonicalString, e.id.description,
            ]
            if previous == nil {
                try db.cachedStatement(
                    sql: """
                        INSERT INTO events(revision, version, deleted, date_start, date_end, body, id)
                        VALUES (?, ?, ?, ?, ?, ?, ?)
                        """
                ).execute(arguments: args)
            } else {
                try db.cachedStatement(
                    sql: """
                        UPDATE events SET revision = ?, version = ?, deleted = ?, date_start = ?, date_end = ?, body = ?
                        WHERE id = ?
                        """
                ).execute(arguments: args)
            }
            let before = Set(previous?.tags ?? [])
            let after = Set(e.tags)
            for tag in before.subtracting(after) {
                try db.cachedStatement(sql: "DELETE FROM event_tags WHERE tag = ? AND event = ?")
                    .execute(arguments: [tag, e.id.description])
            }
            for tag in after.subtracting(before) {
                try db.cachedStatement(sql: "INSERT INTO event_tags(tag, event) VALUES (?, ?)")
                    .execute(arguments: [tag, e.id.description])
            }
        case .addAnnotation, .updateAnnotation, .retractAnnotation:
            // Only the revision moves: an event's body is not rewritten for each of its annotations.
            try db.cachedStatement(sql: "UPDATE events SET revision = ?, version = ? WHERE id = ?")
                .execute(arguments: [e.revision, version, e.id.description])
            guard let a = applied.annotation else { return }
            annotations[a.id] = .some(a)
            try db.cachedStatement(
                sql: "INSERT OR REPLACE INTO annotations(id, event, retracted, body) VALUES (?, ?, ?, ?)"
            ).execute(arguments: [a.id.description, a.event.description, a.retracted, a.json.canonicalString])
        case .setMeta:
            break
        }
    }
}
