import CTimelineSQLite
import Dispatch
import Foundation
import GRDB
import NIOConcurrencyHelpers
import TimelineCore

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
            let body = page.bodies[index]
            let p = edit.proposal
            let current = try p.event.map { try event($0) } ?? nil
            let applied = try page.check(
                index, after: head, event: current, annotation: try annotation(before: p.change))
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
