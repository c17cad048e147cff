import Logging
import NIOCore
import PostgresNIO
import TimelineCore
import TimelineStore

/// The reads, each one statement (or one transaction where several must agree), on any pooled connection.
enum PostgresReads {
    static func head(_ conn: PostgresConnection, logger: Logger) async throws -> ChainHead {
        try await head(conn, "SELECT version, hash FROM timeline_head", logger: logger)
    }

    /// The head, locked until the transaction ends: every node's writer takes turns here.
    static func lockHead(_ conn: PostgresConnection, logger: Logger) async throws -> ChainHead {
        try await head(conn, "SELECT version, hash FROM timeline_head FOR UPDATE", logger: logger)
    }

    private static func head(_ conn: PostgresConnection, _ query: PostgresQuery, logger: Logger) async throws
        -> ChainHead
    {
        for try await (version, hash) in try await conn.query(query, logger: logger).decode((Int64, ByteBuffer).self) {
            guard let digest = Digest(bytes: Array(buffer: hash)) else {
                throw TimelineError(.corrupt, "the head's hash is not 32 bytes")
            }
            return ChainHead(version: version, hash: digest)
        }
        throw TimelineError(.corrupt, "the database has no head row")
    }

    /// Waits (at most `wait`) for this writer's turn, held by the connection's session until its next append ends
    /// it (or `endTurn`); then the head, and what the edits after `version` changed (their event, op, annotation and
    /// the event's revision after each), in one round trip (`timeline_take_turn`, Schema v6).
    static func takeTurn(
        _ conn: PostgresConnection, changesAfter version: Int64, wait: Duration, logger: Logger
    ) async throws -> (ChainHead, [(event: EventID?, op: String, annotation: AnnotationID?, revision: Int64)]) {
        var head: ChainHead?
        var changes: [(event: EventID?, op: String, annotation: AnnotationID?, revision: Int64)] = []
        let milliseconds = max(1, Int64((wait / .milliseconds(1)).rounded(.up)))
        for try await (v, hash, event, op, annotation, revision) in try await conn.query(
            "SELECT * FROM timeline_take_turn(\(version), \(milliseconds))", logger: logger
        ).decode((Int64, ByteBuffer, String?, String?, String?, Int64?).self) {
            if head == nil {
                guard let digest = Digest(bytes: Array(buffer: hash)) else {
                    throw TimelineError(.corrupt, "the head's hash is not 32 bytes")
                }
                head = ChainHead(version: v, hash: digest)
            }
            if let op, let revision {
                changes.append((event.flatMap(EventID.init), op, annotation.flatMap(AnnotationID.init), revision))
            }
        }
        guard let head else { throw TimelineError(.corrupt, "the database has no head row") }
        return (head, changes)
    }

    /// Ends a turn that writes nothing.
    static func endTurn(_ conn: PostgresConnection, logger: Logger) async throws {
        _ = try await conn.query("SELECT pg_advisory_unlock_all()", logger: logger)
    }

    static func edit(body: String, hash: ByteBuffer) throws -> Edit {
        guard let digest = Digest(bytes: Array(buffer: hash)) else {
            throw TimelineError(.corrupt, "a stored hash is not 32 bytes")
        }
        return try EditCodec.decodeStored(body: Array(body.utf8), hash: digest)
    }

    static func edits(_ conn: PostgresConnection, _ query: PostgresQuery, logger: Logger) async throws -> [Edit] {
        var out: [Edit] = []
        for try await (body, hash) in try await conn.query(query, logger: logger).decode((String, ByteBuffer).self) {
            out.append(try edit(body: body, hash: hash))
        }
        return out
    }

    static func edits(_ conn: PostgresConnection, after version: Int64, limit: Int, logger: Logger) async throws
        -> [Edit]
    {
        try await edits(
            conn, "SELECT body, hash FROM edits WHERE version > \(version) ORDER BY version LIMIT \(Int64(limit))",
            logger: logger)
    }

    static func history(_ conn: PostgresConnection, _ id: EventID, after revision: Int64, logger: Logger) async throws
        -> [Edit]
    {
        try await edits(
            conn,
            "SELECT body, hash FROM edits WHERE event = \(id.description) AND revision > \(revision) ORDER BY revision",
            logger: logger)
    }

    static func meta(_ conn: PostgresConnection, logger: Logger) async throws -> [String: JSON] {
        var out: [String: JSON] = [:]
        for try await (key, value) in try await conn.query("SELECT key, value FROM timeline_meta", logger: logger)
            .decode((String, String).self)
        {
            out[key] = try JSON(parsing: value)
        }
        return out
    }

    /// An annotation is its add's log row until it is updated or retracted, and then its row in `annotations`
    /// (Schema, v5): read as `s.body` (NULL until then) and `e.body` (`Annotation.stored(state:added:)`). An
    /// event's annotations are found through the log's index by event (`e.event`).
    static let annotationSource =
        "FROM edits e LEFT JOIN annotations s ON s.id = e.annotation WHERE e.op = 'annotation.add'"

    /// Event rows (revision, body) with their annotations, read with one annotations query for all of them.
    static func views(_ conn: PostgresConnection, rows: [(Int64, String)], logger: Logger) async throws -> [EventView] {
        let events = try rows.map { try Event(json: try JSON(parsing: $0.1), revision: $0.0) }
        guard !events.isEmpty else { return [] }
        var byEvent: [EventID: [Annotation]] = [:]
        for try await (state, added) in try await conn.query(
            """
            SELECT s.body, e.body \(unescaped: annotationSource) AND e.event = ANY(\(events.map(\.id.description)))
            ORDER BY e.event, e.annotation
            """,
            logger: logger
        ).decode((String?, String).self) {
            let annotation = try Annotation.stored(state: state, added: added)
            byEvent[annotation.event, default: []].append(annotation)
        }
        return events.map { EventView(event: $0, annotations: byEvent[$0.id] ?? []) }
    }
}

extension PostgresStore {
    public func edits(after version: Int64, limit: Int) async throws -> [Edit] {
        guard version >= 0 else { throw TimelineError(.badVersion, "version \(version) is negative") }
        let limit = max(0, limit)
        return try await read("read the log") { conn, logger in
            try await PostgresReads.edits(conn, after: version, limit: limit, logger: logger)
        }
    }

    /// Each stored body with its hash spliced in (`EditCodec.wireBytes`), as PULL sends it.
    public func wireEdits(after version: Int64, limit: Int) async throws -> [WireEdit] {
        guard version >= 0 else { throw TimelineError(.badVersion, "version \(version) is negative") }
        let limit = Int64(max(0, limit))
        return try await read("read the log") { conn, logger in
            var out: [WireEdit] = []
            for try await (version, body, hash) in try await conn.query(
                "SELECT version, body, hash FROM edits WHERE version > \(version) ORDER BY version LIMIT \(limit)",
                logger: logger
            ).decode((Int64, String, ByteBuffer).self) {
                guard let digest = Digest(bytes: Array(buffer: hash)) else {
                    throw TimelineError(.corrupt, "a stored hash is not 32 bytes")
                }
                let bytes = Array(body.utf8)
                if let wire = EditCodec.wireBytes(body: bytes, hash: digest) {
                    out.append(WireEdit(version: version, bytes: wire))
                } else {
                    out.append(WireEdit(try EditCodec.decodeStored(body: bytes, hash: digest)))
                }
            }
            return out
        }
    }

    public func event(_ id: EventID, asOf version: Int64?) async throws -> EventView? {
        try await read("read an event") { conn, logger in
            if let version {
                // As of a version: the event's own edits up to it, replayed (an event's history is short).
                return try EventView.replaying(
                    try await PostgresReads.edits(
                        conn,
                        """
                        SELECT body, hash FROM edits WHERE event = \(id.description) AND version <= \(version)
                        ORDER BY revision
                        """, logger: logger))
            }
            // The event and its annotations in one statement, so in one snapshot.
            var row: (Int64, String)?
            var annotations: [Annotation] = []
            for try await (revision, state, added, _) in try await conn.query(
                """
                SELECT \(unescaped: PostgresSchema.revision), body, NULL::text, NULL::text COLLATE "C"
                FROM events WHERE id = \(id.description)
                UNION ALL
                SELECT 0, s.body, e.body, e.annotation \(unescaped: PostgresReads.annotationSource)
                AND e.event = \(id.description)
                ORDER BY 4 NULLS FIRST
                """, logger: logger
            ).decode((Int64, String?, String?, String?).self) {
                if let added {
                    annotations.append(try Annotation.stored(state: state, added: added))
                } else if let state {
                    row = (revision, state)
                }
            }
            guard let row else { return nil }
            return EventView(
                event: try Event(json: try JSON(parsing: row.1), revision: row.0), annotations: annotations)
        }
    }

    public func history(of id: EventID) async throws -> [Edit] {
        try await read("read an event's history") { conn, logger in
            try await PostgresReads.history(conn, id, after: 0, logger: logger)
        }
    }

    public func meta() async throws -> [String: JSON] {
        try await read("read the metadata") { conn, logger in try await PostgresReads.meta(conn, logger: logger) }
    }

    public func stateHash() async throws -> Digest {
        try await read("compute the state hash") { conn, logger in
            try await Self.stateHash(conn, logger: logger)
        }
    }

    /// Runs in the caller's transaction when there is one (verify's), so that it hashes the state it checked.
    static func stateHash(_ conn: PostgresConnection, logger: Logger) async throws -> Digest {
        let hasher = StateHasher(meta: try await PostgresReads.meta(conn, logger: logger))
        // One ordered scan: each event followed by its annotations by ID (kind 0 before kind 1).
        var event: Event?
        var own: [Annotation] = []
        for try await (revision, state, added) in try await conn.query(
            """
            SELECT id, 0, \(unescaped: PostgresSchema.revision), body, NULL::text FROM events
            UNION ALL
            SELECT e.event, 1, 0, s.body, e.body \(unescaped: PostgresReads.annotationSource)
            ORDER BY 1, 2
            """, logger: logger
        ).decode((String, Int32, Int64, String?, String?).self).map({ ($0.2, $0.3, $0.4) }) {
            if let added {
                own.append(try Annotation.stored(state: state, added: added))
            } else if let state {
                if let event { hasher.add(event: event, annotations: own.sorted { $0.id < $1.id }) }
                event = try Event(json: try JSON(parsing: state), revision: revision)
                own = []
            }
        }
        if let event { hasher.add(event: event, annotations: own.sorted { $0.id < $1.id }) }
        return hasher.finalize()
    }

    public func events(matching filter: EventFilter) async throws -> [EventView] {
        try await read("list events") { conn, logger in
            var clauses: [String] = []
            var bindings = PostgresBindings()
            func bind(_ value: String) -> String {
                bindings.append(value)
                return "$\(bindings.count)::text COLLATE \"C\""
            }
            if !filter.includeDeleted { clauses.append("NOT events.deleted") }
            if let from = filter.from { clauses.append("events.date_end >= \(bind(from.iso))") }
            if let until = filter.until { clauses.append("events.date_start <= \(bind(until.iso))") }
            // Annotations as they are now, for a search through them.
            let live = """
                SELECT e.event, coalesce(s.body, e.body) AS body \(PostgresReads.annotationSource)
                AND NOT coalesce(s.retracted, false)
                """
            var fromTags = "events"
            if filter.throughAnnotations,
                filter.tag != nil || filter.annotationAuthor != nil || !(filter.text ?? "").isEmpty
            {
                if let tag = filter.tag {
                    let t = bind(tag)
                    clauses.append(
                        """
                        (events.id IN (SELECT event FROM event_tags WHERE tag = \(t))
                         OR events.id IN (SELECT n.event FROM (\(live)) n
                                          WHERE (n.body::jsonb -> 'tags') ? \(t)))
                        """)
                }
                if let text = filter.text, !text.isEmpty {
                    let t = bind(text)
                    clauses.append(
                        """
                        (strpos(lower(events.body), lower(\(t))) > 0
                         OR events.id IN (SELECT n.event FROM (\(live)) n
                                          WHERE strpos(lower(n.body::jsonb ->> 'text'), lower(\(t))) > 0
                                             OR strpos(lower(n.body::jsonb ->> 'author'), lower(\(t))) > 0))
                        """)
                }
                if let author = filter.annotationAuthor {
                    clauses.append(
                        "events.id IN (SELECT n.event FROM (\(live)) n WHERE n.body::jsonb ->> 'author' = \(bind(author)))"
                    )
                }
            } else if let tag = filter.tag {
                // Walk the tag's rows in page order (an index) and stop at the limit.
                fromTags = "event_tags t JOIN events ON events.id = t.event"
                clauses.insert("t.tag = \(bind(tag))", at: 0)
            }
            if !filter.throughAnnotations, let text = filter.text, !text.isEmpty {
                clauses.append("strpos(lower(events.body), lower(\(bind(text)))) > 0")
            }
            let whereSQL = clauses.isEmpty ? "" : "WHERE " + clauses.joined(separator: " AND ")
            bindings.append(Int64(max(0, filter.limit)))
            let order =
                fromTags == "events"
                ? "events.date_start IS NULL, events.date_start, events.id"
                : "t.date_start IS NULL, t.date_start, t.event"
            let query = PostgresQuery(
                unsafeSQL: """
                    SELECT \(PostgresSchema.revision), events.body FROM \(fromTags) \(whereSQL) ORDER BY \(order)
                    LIMIT $\(bindings.count)
                    """, binds: bindings)
            var rows: [(Int64, String)] = []
            for try await row in try await conn.query(query, logger: logger).decode((Int64, String).self) {
                rows.append(row)
            }
            return try await PostgresReads.views(conn, rows: rows, logger: logger)
        }
    }

    public func resolve(prefix: String, limit: Int) async throws -> [EventID] {
        let upper = prefix.uppercased()
        guard !upper.isEmpty, upper.utf8.count <= 26 else { return [] }
        let limit = Int64(max(1, limit))
        return try await read("resolve an ID") { conn, logger in
            var out: [EventID] = []
            for try await id in try await conn.query(
                """
                SELECT id FROM events WHERE id >= \(upper) AND left(id, \(Int32(upper.utf8.count))) = \(upper)
                ORDER BY id LIMIT \(limit)
                """, logger: logger
            ).decode(String.self) {
                if let id = EventID(id) { out.append(id) }
            }
            return out
        }
    }
}
