import GRDB
import TimelineCore
import TimelineLink
import TimelineStore

/// Ranked full-text search over the replica: SQLite's FTS5 (through GRDB), in the home's `client.sqlite`, one row
/// for each event (title, summary, date, references, tags) and each annotation not retracted (text, tags,
/// author). Brought up to date by the search itself: the events that edits since the last search touched are
/// indexed again.
final class SearchIndex: Sendable {
    let queue: DatabaseQueue

    init(queue: DatabaseQueue) { self.queue = queue }

    static func migrate(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v4-search") { db in
            // unicode61 with diacritics removed: "resume" finds "résumé"; porter stems English words.
            try db.execute(
                sql: """
                    CREATE VIRTUAL TABLE search USING fts5(
                        event UNINDEXED, annotation UNINDEXED, body, tokenize = 'porter unicode61 remove_diacritics 2');
                    CREATE TABLE search_through (version INTEGER NOT NULL CHECK (version >= 0));
                    INSERT INTO search_through VALUES (0);
                    """)
        }
    }

    /// Indexes again the events edited since the last call (every event the first time).
    func refresh(from replica: SQLiteStore) async throws {
        let through = try await queue.read { db in
            try Int64.fetchOne(db, sql: "SELECT version FROM search_through") ?? 0
        }
        let (touched, head) = try await replica.touchedEvents(after: through)
        let rebuild = head < through
        guard rebuild || !touched.isEmpty || head != through else { return }
        var views: [EventView] = []
        if rebuild || through == 0 || touched.count > 2_000 {
            views = try await replica.events(matching: EventFilter(includeDeleted: true, limit: Int.max))
        } else {
            for id in touched { if let v = try await replica.event(id, asOf: nil) { views.append(v) } }
        }
        let rows = views
        let everything = rebuild || through == 0 || touched.count > 2_000
        try await queue.write { db in
            if everything {
                try db.execute(sql: "DELETE FROM search")
            } else {
                for v in rows {
                    try db.execute(sql: "DELETE FROM search WHERE event = ?", arguments: [v.event.id.description])
                }
            }
            let insert = try db.cachedStatement(sql: "INSERT INTO search(event, annotation, body) VALUES (?, ?, ?)")
            for v in rows where !v.event.deleted {
                let e = v.event
                let body = ([e.title, e.summary, e.date.text] + e.references.map(\.text) + e.tags.map { "#" + $0 })
                    .joined(separator: "\n")
                try insert.execute(arguments: [e.id.description, nil, body])
                for a in v.annotations where !a.retracted {
                    let text = ([a.text] + a.tags.map { "#" + $0 } + [a.author]).joined(separator: "\n")
                    try insert.execute(arguments: [e.id.description, a.id.description, text])
                }
            }
            try db.execute(sql: "UPDATE search_through SET version = ?", arguments: [head])
        }
    }

    /// One event that matched, best first: its ID, the annotations that matched (if any), and a few words
    /// around the first match, the matched words between `open` and `close`.
    struct Hit: Sendable {
        var event: EventID
        var annotations: [AnnotationID]
        var snippet: String
        var rank: Double
    }

    func search(_ words: [String], limit: Int, open: String, close: String) throws -> [Hit] {
        // Each word quoted (so that no FTS5 syntax can be typed by mistake) and taken as a prefix; all must match.
        let query = words.map { "\"" + $0.replacingOccurrences(of: "\"", with: "\"\"") + "\"*" }.joined(separator: " ")
        return try queue.read { db in
            let rows = try Row.fetchAll(
                db,
                sql: """
                    SELECT event, annotation, bm25(search) AS rank,
                           snippet(search, 2, ?, ?, '…', 12) AS snippet
                    FROM search WHERE search MATCH ? ORDER BY rank LIMIT ?
                    """,
                arguments: [open, close, query, max(1, limit) * 4])
            var order: [EventID] = []
            var hits: [EventID: Hit] = [:]
            for row in rows {
                guard let event = EventID(row["event"] as String) else { continue }
                let annotation = (row["annotation"] as String?).flatMap(AnnotationID.init)
                if hits[event] == nil {
                    order.append(event)
                    hits[event] = Hit(event: event, annotations: [], snippet: row["snippet"], rank: row["rank"])
                }
                if let annotation { hits[event]!.annotations.append(annotation) }
            }
            return order.prefix(limit).map { hits[$0]! }
        }
    }
}

extension TimelineClient {
    /// Events matching every word (a prefix of a word in the event's text or in one of its annotations), best
    /// first by BM25 rank.
    public func search(_ words: [String], limit: Int = 50, highlight: (open: String, close: String) = ("«", "»"))
        async throws -> [(view: EventView, annotations: [AnnotationID], snippet: String)]
    {
        let words = words.flatMap { $0.split(whereSeparator: \.isWhitespace).map(String.init) }
        guard !words.isEmpty else { throw TimelineError(.usage, "give one or more words to search for") }
        try await searchIndex.refresh(from: replica)
        var out: [(EventView, [AnnotationID], String)] = []
        for hit in try searchIndex.search(words, limit: limit, open: highlight.open, close: highlight.close) {
            if let view = try await replica.event(hit.event, asOf: nil) {
                out.append((view, hit.annotations, hit.snippet))
            }
        }
        return out
    }
}
