import CTimelineSQLite
import Dispatch
import Foundation
import GRDB
import NIOConcurrencyHelpers
import TimelineCore

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
            if !committed.isEmpty { for observer in observers { observer(committed) } }
            for (request, result) in zip(group, results) { request.completion(result) }
            // The group's proposals, bodies and edits are released on another thread: for a bulk batch these are
            // hundreds of thousands of strings and arrays, and releasing them had been 5 % of the writer's time
            // (B1, perf), which every append waits for.
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

/// Proposals with all of their encoding that does not depend on the store's state: each edit's body but its
/// version and revision. Built on the caller's thread (an event loop, or the task decoding a BATCH), so that the
/// single writer, which every write waits for, only splices two integers in, hashes and writes. In B1 this
/// encoding was a sixth of the writer's time.
///
/// Units larger than `limit` (an offline import is one unit) are encoded by the writer as it goes: holding all of
/// their encodings at once cost about 570 bytes per edit more at the peak (`timelined import` of 1,000,000 edits:
/// 1.50 → 2.06 GiB), while a unit that size gains nothing from its encoding being done in parallel.
struct PreparedProposals: Sendable {
    static let limit = 20_000
    let proposals: [Proposal]
    /// Empty when the unit is larger than `limit`.
    private let templates: [EditCodec.BodyTemplate]

    init(_ proposals: [Proposal], limit: Int = Self.limit) {
        self.proposals = proposals
        templates = proposals.count <= limit ? proposals.map { EditCodec.BodyTemplate($0) } : []
    }

    /// The canonical body of the proposal at `index` as the edit with this version and revision.
    func body(_ index: Int, version: Int64, revision: Int64) -> [UInt8] {
        if templates.isEmpty {
            return EditCodec.canonicalBody(version: version, revision: revision, proposal: proposals[index])
        }
        return templates[index].body(version: version, revision: revision)
    }
}

/// Events and annotations as the writer last saw them; `nil` values record rows known not to exist.
///
/// Every change is journaled so that a unit rolled back to its savepoint can take its changes back. Saving a copy
/// of the cache per unit instead made the next write copy the whole dictionary (copy-on-write), once per unit:
/// O(cached events) per single PROPOSE.
struct WriterCache {
    private(set) var events: [EventID: Event?] = [:]
    private(set) var annotations: [AnnotationID: Annotation?] = [:]
    private var undo: [Undo] = []

    private enum Undo {
        case event(EventID, Event??)
        case revision(EventID, Int64)
        case annotation(AnnotationID, Annotation??)
    }

    mutating func set(_ id: EventID, _ event: Event?) {
        undo.append(.event(id, events[id]))
        events[id] = .some(event)
    }

    /// Records `event` after an edit that moved only its revision (an annotation edit). When the event before it
    /// is cached, only the revision is set, in place, and journaled: storing and journaling the whole event cost
    /// the writer two copies of it (a retain and a release of each of its strings and arrays) per annotation.
    mutating func set(revisionOf event: Event) {
        if let index = events.index(forKey: event.id),
            // Through the slot in place: reading `events.values[index]` copied the whole event.
            let old = Self.exchangeRevision(&events.values[index], event.revision)
        {
            undo.append(.revision(event.id, old))
        } else {
            set(event.id, event)
        }
    }

    private static func exchangeRevision(_ slot: inout Event?, _ revision: Int64) -> Int64? {
        guard let old = slot?.revision else { return nil }
        slot?.revision = revision
        return old
    }

    /// The cached annotation, without hashing the ID while none is cached (a pull or a batch of additions).
    func annotation(_ id: AnnotationID) -> Annotation?? { annotations.isEmpty ? nil : annotations[id] }

    mutating func set(_ id: AnnotationID, _ annotation: Annotation?) {
        undo.append(.annotation(id, annotations[id]))
        annotations[id] = .some(annotation)
    }

    /// Forgets the journal: what is cached now stays.
    mutating func keep() { undo.removeAll(keepingCapacity: true) }

    /// Takes back every change since the last `keep()`, newest first.
    mutating func takeBack() {
        while let last = undo.popLast() {
            switch last {
            case .event(let id, let old): events[id] = old
            case .revision(let id, let old): events[id]??.revision = old
            case .annotation(let id, let old): annotations[id] = old
            }
        }
    }

    /// Keeps the cache bounded; a cleared cache only costs re-reading rows.
    mutating func trim() {
        if events.count > 50_000 { events.removeAll() }
        if annotations.count > 200_000 { annotations.removeAll() }
    }
}

/// Admits proposals inside the writer's transaction and writes the log row and the materialized state.
struct StateWriter {
    let db: Database
    // Prepared once per commit: looking statements up by their SQL text for every edit costs a string hash each.
    let selectEvent: Statement
    let selectAnnotation: Statement
    let insertEdit: HotStatement
    let upsertAnnotation: Statement
    var cache: WriterCache

    init(db: Database, cache: WriterCache) throws {
        self.db = db
        self.cache = cache
        selectEvent = try db.cachedStatement(sql: "SELECT \(SQLiteReads.revision), body FROM events WHERE id = ?")
        selectAnnotation = try db.cachedStatement(sql: SQLiteReads.annotationByID)
        insertEdit = try HotStatement(db, sql: Self.insertLogRowSQL)
        upsertAnnotation = try db.cachedStatement(
            sql: """
                INSERT INTO annotations(id, event, retracted, body) VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE
                SET event = excluded.event, retracted = excluded.retracted, body = excluded.body
                """)
    }

    /// Starts a unit (one append inside its savepoint, or a whole group run without savepoints): later changes
    /// to the cache can be taken back.
    mutating func beginUnit() { cache.keep() }

    /// The unit was rolled back: its changes to the cache go too.
    mutating func rollbackUnit() { cache.takeBack() }

    mutating func event(_ id: EventID) throws -> Event? {
        if let cached = cache.events[id] { return cached }
        let row = try Row.fetchOne(selectEvent, arguments: [id.description])
        let event = try row.map { row in
            try Event(json: try JSON(parsing: row["body"] as String), revision: row["revision"])
        }
        cache.set(id, event)
        return event
    }

    mutating func annotation(_ id: AnnotationID) throws -> Annotation? {
        if let cached = cache.annotation(id) { return cached }
        let annotation = try Row.fetchOne(selectAnnotation, arguments: [id.description]).map(SQLiteReads.annotation)
        cache.set(id, annotation)
        return annotation
    }

    /// The annotation `change` is about, as it stands before it. A new annotation's ID is checked by the log's
    /// index of adds when its row is inserted (`isDuplicateAdd`), which saves a lookup per add; only the cache
    /// is asked.
    mutating func annotation(before change: Change) throws -> Annotation? {
        if case .addAnnotation(let id, _, _) = change { return cache.annotation(id) ?? nil }
        return try change.annotationID.map { try annotation($0) } ?? nil
    }

    func history(_ id: EventID, afterRevision revision: Int64) throws -> [Edit] {
        try SQLiteReads.edits(
            db, sql: "SELECT body, hash FROM edits WHERE event = ? AND revision > ? ORDER BY revision",
            arguments: [id.description, revision])
    }

    mutating func admit(_ prepared: PreparedProposals, head: inout ChainHead) throws -> [Edit] {
        let batch = prepared.proposals
        var out: [Edit] = []
        out.reserveCapacity(batch.count)
        for (index, proposal) in batch.enumerated() {
            let current = try proposal.event.map { try event($0) } ?? nil
            let annotation = try annotation(before: proposal.change)
            let applied: Applied
            do {
                applied = try Rules.admit(
                    proposal, event: current, annotation: annotation,
                    since: { base in try history(proposal.event!, afterRevision: base) })
            } catch let error as TimelineError {
                throw BatchRejection(index: index, count: batch.count, error: error)
            }
            let body = prepared.body(index, version: head.version + 1, revision: applied.revision)
            let edit = Edit.chained(
                after: head.hash, version: head.version + 1, revision: applied.revision, proposal: proposal, body: body)
            do {
                try insertLogRow(edit, body: body[...])
            } catch let error as DatabaseError where Self.isDuplicateAdd(error) {
                throw BatchRejection(
                    index: index, count: batch.count,
                    error: TimelineError(
                        .duplicateID, "annotation \(proposal.change.annotationID?.description ?? "?") already exists"))
            }
            try write(proposal, applied, previous: current)
            head = ChainHead(version: edit.version, hash: edit.hash)
            out.append(edit)
        }
        return out
    }

    /// Copies edits from another store's log: each must be the next version and carry the hash the chain
    /// gives it, and must apply; the materialized state is written as for an admitted edit.
    /// `LinkedEdits` checked every link but the first and computed the bodies: only the first is hashed here.
    mutating func copy(_ page: LinkedEdits, head: inout ChainHead) throws -> [Edit] {
        let batch = page.edits
        for (index, edit) in batch.enumerated() {
            func refuse(_ message: String) -> BatchRejection {
                BatchRejection(index: index, count: batch.count, error: TimelineError(.corrupt, message))
            }
            guard edit.version == head.version + 1 else {
                throw refuse("edit \(edit.version) does not follow version \(head.version)")
            }
            let body = page.bodies[index]
            if index == 0, SHA256.chain(prefix: head.hash.bytes, Array(body)) != edit.hash {
                throw refuse("edit \(edit.version)'s hash does not follow the chain: the logs have diverged")
            }
            let p = edit.proposal
            let current = try p.event.map { try event($0) } ?? nil
            let annotation = try annotation(before: p.change)
            let applied: Applied
            do {
                applied = try Rules.apply(p, event: current, annotation: annotation)
            } catch {
                throw refuse("edit \(edit.version) does not apply: \(error)")
            }
            guard applied.revision == edit.revision else {
                throw refuse(
                    "edit \(edit.version) says revision \(edit.revision), applying it gives \(applied.revision)")
            }
            do {
                try insertLogRow(edit, body: body)
            } catch let error as DatabaseError where Self.isDuplicateAdd(error) {
                throw refuse("edit \(edit.version) adds annotation \(p.change.annotationID?.description ?? "?") twice")
            }
            try write(p, applied, previous: current)
            head = ChainHead(version: edit.version, hash: edit.hash)
        }
        return batch
    }

    /// An `annotation.add` whose ID was added before, refused by the log's index `edits_adding` (Schema, v6). The
    /// other unique index, by event and revision, failing would be the writer's own error, and is not this.
    static func isDuplicateAdd(_ error: DatabaseError) -> Bool {
        error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE && error.message?.contains("edits.annotation") == true
    }

    /// OR FAIL: with no constraint that aborts, SQLite writes the row without a statement journal (Schema, v4;
    /// a test compiles this statement and checks).
    static let insertLogRowSQL = """
        INSERT OR FAIL INTO edits(version, event, revision, op, body, hash, annotation) VALUES (?, ?, ?, ?, ?, ?, ?)
        """

    /// The log row: the hashed body as stored text, and the columns queries need (an event's annotations are
    /// found through its log rows' `annotation`).
    func insertLogRow(_ edit: Edit, body: ArraySlice<UInt8>) throws {
        let row = insertEdit
        row.bind(1, edit.version)
        row.bind(3, edit.revision)
        try row.withText(2, edit.event?.description) {
            try row.withText(4, edit.operation.rawValue) {
                try row.withText(5, body) {
                    try row.withBlob(6, edit.hash.bytes) {
                        try row.withText(7, edit.change.annotationID?.description) { try row.run(db) }
                    }
                }
            }
        }
    }

    mutating func write(_ p: Proposal, _ applied: Applied, previous: Event?) throws {
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
        switch p.change {
        case .createEvent, .updateEvent, .deleteEvent:
            cache.set(e.id, e)
            let args: StatementArguments = [
                e.deleted, e.date.start?.iso, e.date.end?.iso, e.contentJSON.canonicalString, e.id.description,
            ]
            if previous == nil {
                try db.cachedStatement(
                    sql: "INSERT INTO events(deleted, date_start, date_end, body, id) VALUES (?, ?, ?, ?, ?)"
                ).execute(arguments: args)
            } else {
                try db.cachedStatement(
                    sql: "UPDATE events SET deleted = ?, date_start = ?, date_end = ?, body = ? WHERE id = ?"
                ).execute(arguments: args)
            }
            // Tags are compared by their bytes, as SQLite does (a Set of String would merge two that Unicode
            // deems equivalent, and leave a row that the log does not have).
            let before = Set((previous?.tags ?? []).map { Array($0.utf8) })
            let after = Set(e.tags.map { Array($0.utf8) })
            for tag in before.subtracting(after) {
                try db.cachedStatement(sql: "DELETE FROM event_tags WHERE tag = ? AND event = ?")
                    .execute(arguments: [String(decoding: tag, as: UTF8.self), e.id.description])
            }
            let start = e.date.start?.iso
            if let previous, previous.date.start?.iso != start, !before.isDisjoint(with: after) {
                try db.cachedStatement(sql: "UPDATE event_tags SET date_start = ? WHERE event = ?")
                    .execute(arguments: [start, e.id.description])
            }
            for tag in after.subtracting(before) {
                try db.cachedStatement(sql: "INSERT INTO event_tags(tag, event, date_start) VALUES (?, ?, ?)")
                    .execute(arguments: [String(decoding: tag, as: UTF8.self), e.id.description, start])
            }
        case .addAnnotation, .updateAnnotation, .retractAnnotation:
            // Only the revision moves (the cached event is the one Rules applied the edit to), and the event's row
            // holds none: it is read from the log (Schema, v5).
            cache.set(revisionOf: e)
            // An added annotation is its log row until it changes (Schema, v6); it is not cached either, since
            // most annotations are never edited.
            guard let a = applied.annotation, p.change.operation != .annotationAdd else { return }
            cache.set(a.id, a)
            try upsertAnnotation.execute(arguments: [
                a.id.description, a.event.description, a.retracted, String(decoding: a.canonicalBytes, as: UTF8.self),
            ])
        case .setMeta:
            break
        }
    }
}
