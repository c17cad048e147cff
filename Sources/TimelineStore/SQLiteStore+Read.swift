import Foundation
import GRDB
import GRDBSQLite
import TimelineCore

enum SQLiteReads {
    /// An event's revision, in a query over `events`: that of its newest log row (Schema, v5), one seek in the
    /// covering index edits_by_event.
    static let revision = "(SELECT max(revision) FROM edits WHERE edits.event = events.id) AS revision"

    static func edits(_ db: Database, sql: String, arguments: StatementArguments) throws -> [Edit] {
        var out: [Edit] = []
        let rows = try Row.fetchCursor(db.cachedStatement(sql: sql), arguments: arguments)
        while let row = try rows.next() {
            out.append(try edit(row))
        }
        return out
    }

    static func edit(_ row: Row) throws -> Edit {
        let (body, hash) = try stored(row)
        return try EditCodec.decodeStored(body: body, hash: hash)
    }

    /// Log rows as PULL sends them: each hash spliced into its stored body (`EditCodec.wireBytes`), or, for a
    /// body of another shape, the edit decoded and encoded again. The columns are read where SQLite holds them,
    /// through its C API: through GRDB's `Row` each row's body and hash were copied three times (the large-pull benchmark, server side).
    static func wireEdits(_ db: Database, after version: Int64, limit: Int) throws -> [WireEdit] {
        let select = try HotStatement(
            db, sql: "SELECT version, body, hash FROM edits WHERE version > ? ORDER BY version LIMIT ?")
        var out: [WireEdit] = []
        out.reserveCapacity(min(limit, 10_000))
        select.bind(1, version)
        select.bind(2, Int64(limit))
        try select.rows(db) { row in
            let body = text(row, 1)
            let hashStart = sqlite3_column_blob(row, 2)
            let hash = UnsafeRawBufferPointer(start: hashStart, count: Int(sqlite3_column_bytes(row, 2)))
            guard body.baseAddress != nil, hashStart != nil, hash.count == 32 else {
                throw TimelineError(.corrupt, "a stored edit has no body or a hash that is not 32 bytes")
            }
            if let bytes = EditCodec.wireBytes(body: body, hashBytes: hash) {
                out.append(WireEdit(version: sqlite3_column_int64(row, 0), bytes: bytes))
            } else {
                let edit = try EditCodec.decodeStored(body: Array(body), hash: Digest(bytes: Array(hash))!)
                out.append(WireEdit(edit))
            }
        }
        return out
    }

    /// A log row's `body` and `hash` columns.
    private static func stored(_ row: Row) throws -> (body: [UInt8], hash: Digest) {
        guard let hash = Digest(bytes: Array(row["hash"] as Data)) else {
            throw TimelineError(.corrupt, "a stored hash is not 32 bytes")
        }
        return (Array((row["body"] as String).utf8), hash)
    }

    /// An annotation is its add's log row until it is updated or retracted, and then its row in `annotations`
    /// (Schema, v6). Selected as `state` (the row's body or NULL) and `added` (the add's body), for `annotation`.
    static let annotationColumns = "annotations.body AS state, edits.body AS added"
    static let annotationSource =
        "FROM edits LEFT JOIN annotations ON annotations.id = edits.annotation WHERE edits.op = 'annotation.add'"

    /// One annotation by ID, found through the log's index of adds.
    static let annotationByID = "SELECT \(annotationColumns) \(annotationSource) AND edits.annotation = ?"

    /// An event's annotations are the ones its log rows added: the store keeps one index by event, the log's
    /// (a second one cost every commit a page per event it touched; Schema, v4).
    static let annotationsOfEvents = "\(annotationSource) AND edits.event"

    static func annotation(_ row: Row) throws -> Annotation {
        try Annotation.stored(state: row["state"], added: row["added"])
    }

    /// An event as it is now, with its annotations, in one statement: SQLite reads a statement in one snapshot,
    /// so no transaction is needed around it. The event's row comes first (its `annotation` is NULL), then its
    /// annotations by ID. Columns are read where SQLite holds them, as PULL's are (`wireEdits`).
    static let currentEvent = """
        SELECT NULL AS annotation, \(revision), body AS state, NULL AS added FROM events WHERE id = ?1
        UNION ALL
        SELECT edits.annotation, NULL, \(annotationColumns) \(annotationsOfEvents) = ?1
        ORDER BY 1
        """

    static func currentEvent(_ db: Database, _ id: EventID) throws -> EventView? {
        let select = try HotStatement(db, sql: currentEvent)
        var event: Event?
        var annotations: [Annotation] = []
        try select.withText(1, id.description) {
            try select.rows(db) { row in
                if event == nil {
                    guard sqlite3_column_type(row, 0) == SQLITE_NULL else {
                        throw TimelineError(.corrupt, "event \(id) has annotations but no row")
                    }
                    event = try Event(json: try JSON(parsing: text(row, 2)), revision: sqlite3_column_int64(row, 1))
                } else if sqlite3_column_type(row, 2) != SQLITE_NULL {
                    annotations.append(try Annotation(json: try JSON(parsing: text(row, 2))))
                } else {
                    annotations.append(try Annotation.fromAdd(EditCodec.decodeStoredProposal(body: text(row, 3))))
                }
            }
        }
        return event.map { EventView(event: $0, annotations: annotations) }
    }

    /// A text column where SQLite holds it, valid until the next step; no base address for NULL.
    private static func text(_ row: OpaquePointer, _ column: Int32) -> UnsafeBufferPointer<UInt8> {
        // Text before its length: sqlite3_column_bytes then counts the text's UTF-8 bytes (SQLite's docs).
        let start = sqlite3_column_text(row, column)
        return UnsafeBufferPointer(start: start, count: Int(sqlite3_column_bytes(row, column)))
    }

    /// Event rows with their annotations, read with one annotations query per 500 events instead of one each.
    static func views(_ db: Database, rows: [Row]) throws -> [EventView] {
        let events = try rows.map { try Event(json: try JSON(parsing: $0["body"] as String), revision: $0["revision"]) }
        var byEvent: [String: [Annotation]] = [:]
        var start = 0
        while start < events.count {
            let chunk = events[start..<min(start + 500, events.count)]
            let marks = Array(repeating: "?", count: chunk.count).joined(separator: ",")
            let rows = try Row.fetchCursor(
                db,
                sql: """
                    SELECT edits.event AS event, \(annotationColumns) \(annotationsOfEvents) IN (\(marks))
                    ORDER BY edits.event, edits.annotation
                    """,
                arguments: StatementArguments(chunk.map { $0.id.description }))
            while let row = try rows.next() {
                byEvent[row["event"], default: []].append(try annotation(row))
            }
            start += chunk.count
        }
        return events.map { EventView(event: $0, annotations: byEvent[$0.id.description] ?? []) }
    }
}

extension SQLiteStore {
    func read<T: Sendable>(_ what: String, _ body: @Sendable @escaping (Database) throws -> T) async throws -> T {
        do {
            return try await pool.read(body)
        } catch let error as DatabaseError {
            throw StoreErrors.map(error, doing: what)
        }
    }

    public func edits(after version: Int64, limit: Int) async throws -> [Edit] {
        guard version >= 0 else { throw TimelineError(.badVersion, "version \(version) is negative") }
        let limit = max(0, limit)
        return try await read("read the log") { db in
            try SQLiteReads.edits(
                db, sql: "SELECT body, hash FROM edits WHERE version > ? ORDER BY version LIMIT ?",
                arguments: [version, limit])
        }
    }

    public func wireEdits(after version: Int64, limit: Int) async throws -> [WireEdit] {
        guard version >= 0 else { throw TimelineError(.badVersion, "version \(version) is negative") }
        let limit = max(0, limit)
        return try await read("read the log") { db in try SQLiteReads.wireEdits(db, after: version, limit: limit) }
    }

    /// The same read as GET's (`event(_:asOf:completion:)`, on the read lanes), awaited.
    public func event(_ id: EventID, asOf version: Int64?) async throws -> EventView? {
        try await withCheckedThrowingContinuation { continuation in
            event(id, asOf: version) { continuation.resume(with: $0) }
        }
    }

    /// Either way one statement, which needs no transaction around it (`SQLiteReads.currentEvent`).
    static func event(_ db: Database, _ id: EventID, asOf version: Int64?) throws -> EventView? {
        guard let version else { return try SQLiteReads.currentEvent(db, id) }
        // As of a version: replay the event's own edits up to it. An event's history is short next to the log.
        let edits = try SQLiteReads.edits(
            db, sql: "SELECT body, hash FROM edits WHERE event = ? AND version <= ? ORDER BY revision",
            arguments: [id.description, version])
        return try EventView.replaying(edits)
    }

    public func history(of id: EventID) async throws -> [Edit] {
        try await read("read an event's history") { db in
            try SQLiteReads.edits(
                db, sql: "SELECT body, hash FROM edits WHERE event = ? ORDER BY revision", arguments: [id.description])
        }
    }

    public func meta() async throws -> [String: JSON] {
        try await read("read the metadata") { db in try Self.meta(db) }
    }

    static func meta(_ db: Database) throws -> [String: JSON] {
        var out: [String: JSON] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT key, value FROM timeline_meta") {
            out[row["key"]] = try JSON(parsing: row["value"] as String)
        }
        return out
    }

    public func stateHash() async throws -> Digest {
        try await read("compute the state hash") { db in try Self.stateHash(db) }
    }

    static func stateHash(_ db: Database) throws -> Digest {
        let hasher = StateHasher(meta: try meta(db))
        // A merge of two ordered scans (events by ID, annotations by event and ID): one pass over each table
        // instead of one annotations query per event.
        let events = try Row.fetchCursor(db, sql: "SELECT id, \(SQLiteReads.revision), body FROM events ORDER BY id")
        let annotations = try Row.fetchCursor(
            db,
            sql: """
                SELECT edits.event AS event, \(SQLiteReads.annotationColumns) \(SQLiteReads.annotationSource)
                ORDER BY edits.event, edits.annotation
                """)
        var pending = try annotations.next()
        while let row = try events.next() {
            let id: String = row["id"]
            let event = try Event(json: try JSON(parsing: row["body"] as String), revision: row["revision"])
            var own: [Annotation] = []
            while let a = pending {
                let owner: String = a["event"]
                if owner > id { break }
                // An annotation whose event sorts before this one has no event row; the schema forbids it.
                if owner == id { own.append(try SQLiteReads.annotation(a)) }
                pending = try annotations.next()
            }
            hasher.add(event: event, annotations: own)
        }
        return hasher.finalize()
    }

    public func events(matching filter: EventFilter) async throws -> [EventView] {
        try await read("list events") { db in
            var clauses: [String] = []
            var arguments: StatementArguments = []
            if !filter.includeDeleted { clauses.append("events.deleted = 0") }
            if let from = filter.from {
                clauses.append("events.date_end >= ?")
                arguments += [from.iso]
            }
            if let until = filter.until {
                clauses.append("events.date_start <= ?")
                arguments += [until.iso]
            }
            let fromTags: String
            var tagArguments: StatementArguments = []
            // Annotations as they are now: an add's body until the annotation changed, then its state row. A scan
            // of the annotations, for a person's search of a replica; the server's LOG never takes this path.
            let liveAnnotations = """
                SELECT a.event AS event, coalesce(s.body, a.body) AS body FROM edits a
                LEFT JOIN annotations s ON s.id = a.annotation
                WHERE a.op = 'annotation.add' AND coalesce(s.retracted, 0) = 0
                """
            if filter.throughAnnotations,
                filter.tag != nil || filter.annotationAuthor != nil
                    || !(filter.text ?? "").isEmpty
            {
                fromTags = "events"
                if let tag = filter.tag {
                    clauses.append(
                        """
                        (events.id IN (SELECT event FROM event_tags WHERE tag = ?)
                         OR events.id IN (SELECT n.event FROM (\(liveAnnotations)) n, json_each(n.body, '$.tags') t
                                          WHERE t.value = ?))
                        """)
                    arguments += [tag, tag]
                }
                if let text = filter.text, !text.isEmpty {
                    clauses.append(
                        """
                        (instr(lower(events.body), lower(?)) > 0
                         OR events.id IN (SELECT n.event FROM (\(liveAnnotations)) n
                                          WHERE instr(lower(json_extract(n.body, '$.text')), lower(?)) > 0
                                             OR instr(lower(json_extract(n.body, '$.author')), lower(?)) > 0))
                        """)
                    arguments += [text, text, text]
                }
                if let author = filter.annotationAuthor {
                    clauses.append(
                        "events.id IN (SELECT n.event FROM (\(liveAnnotations)) n WHERE json_extract(n.body, '$.author') = ?)"
                    )
                    arguments += [author]
                }
            } else if let tag = filter.tag {
                // Walk the tag's rows in page order (an index) and stop at the limit, instead of sorting them all.
                fromTags = "event_tags t JOIN events ON events.id = t.event"
                clauses.insert("t.tag = ?", at: 0)
                tagArguments = [tag]
            } else {
                fromTags = "events"
            }
            if !filter.throughAnnotations, let text = filter.text, !text.isEmpty {
                // instr() over the lower-cased body: no LIKE wildcards to escape, and the text stays bound.
                clauses.append("instr(lower(events.body), lower(?)) > 0")
                arguments += [text]
            }
            let whereSQL = clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ")
            arguments = tagArguments + arguments + [max(0, filter.limit)]
            let order =
                fromTags == "events"
                ? "events.date_start IS NULL, events.date_start, events.id"
                : "t.date_start IS NULL, t.date_start, t.event"
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT \(SQLiteReads.revision), events.body FROM \(fromTags) \(whereSQL) ORDER BY \(order) LIMIT ?
                    """,
                arguments: arguments)
            return try SQLiteReads.views(db, rows: rows)
        }
    }

    /// One annotation by its ID.
    public func annotation(_ id: AnnotationID) async throws -> Annotation? {
        try await read("read an annotation") { db in
            try Row.fetchOne(db.cachedStatement(sql: SQLiteReads.annotationByID), arguments: [id.description])
                .map(SQLiteReads.annotation)
        }
    }

    /// An ID that an edit created: an event's (`event.create`) or an annotation's (`annotation.add`).
    public struct CreatedID: Sendable, Equatable {
        public var id: String
        public var isEvent: Bool
    }

    /// The IDs created by edits after `version`, in version order, and the log's head they were read at: what a
    /// client's index of short IDs adds after a pull.
    public func createdIDs(after version: Int64) async throws -> (ids: [CreatedID], through: Int64) {
        try await read("list the IDs edits created") { db in
            var ids: [CreatedID] = []
            let rows = try Row.fetchCursor(
                db,
                sql: """
                    SELECT version, op = 'event.create' AS is_event, coalesce(annotation, event) AS id FROM edits
                    WHERE version > ? AND (op = 'event.create' OR op = 'annotation.add') ORDER BY version
                    """,
                arguments: [version])
            while let row = try rows.next() { ids.append(CreatedID(id: row["id"], isEvent: row["is_event"])) }
            // The log's head in the same snapshot: what was read is complete up to there (it may be below `version`
            // for a replica made again from scratch).
            let through = try Int64.fetchOne(db, sql: "SELECT coalesce(max(version), 0) FROM edits") ?? 0
            return (ids, through)
        }
    }

    /// The events that edits after `version` touched (created, changed, annotated), and the log's head they were
    /// read at: what a client's search index reads again.
    public func touchedEvents(after version: Int64) async throws -> (events: [EventID], through: Int64) {
        try await read("list the events edits touched") { db in
            let events = try String.fetchAll(
                db, sql: "SELECT DISTINCT event FROM edits WHERE version > ? AND event IS NOT NULL",
                arguments: [version]
            ).compactMap(EventID.init)
            let through = try Int64.fetchOne(db, sql: "SELECT coalesce(max(version), 0) FROM edits") ?? 0
            return (events, through)
        }
    }

    public func resolve(prefix: String, limit: Int) async throws -> [EventID] {
        let upper = prefix.uppercased()
        guard !upper.isEmpty, upper.utf8.count <= 26 else { return [] }
        return try await read("resolve an ID") { db in
            try String.fetchAll(
                db, sql: "SELECT id FROM events WHERE id >= ? AND substr(id, 1, ?) = ? ORDER BY id LIMIT ?",
                arguments: [upper, upper.utf8.count, upper, max(1, limit)]
            ).compactMap(EventID.init)
        }
    }
}
