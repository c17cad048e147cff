import GRDB
import TimelineCore
import TimelineLink
import TimelineStore

/// What an ID typed by a person names in the replica.
public enum NamedObject: Sendable, Equatable {
    case event(EventID)
    case annotation(AnnotationID, event: EventID)
    /// An event or annotation this client made that is still in its outbox (not in the replica yet): `item` is
    /// the outbox item that creates it.
    case queued(item: Int64, id: String, isEvent: Bool, event: EventID?)

    /// The event named, or the one an annotation is on (for a queued event: its own ID).
    public var event: EventID? {
        switch self {
        case .event(let id), .annotation(_, let id): id
        case .queued(_, let id, let isEvent, let event): isEvent ? EventID(id) : event
        }
    }
}

/// Every event and annotation ID of the replica, indexed by its random part (`ShortID`), in the home's
/// `client.sqlite`: the replica's own indexes are by whole ID, whose first characters IDs minted together share.
///
/// Kept beside the replica rather than in it, and brought up to date by the commands that print or read IDs rather
/// than by every pull: index rows arrive in random order, and writing them page by page would rewrite most of
/// the index's pages for each page of a large pull. Brought up to date at once, they go in sorted.
final class IDIndex: Sendable {
    let queue: DatabaseQueue

    init(queue: DatabaseQueue) { self.queue = queue }

    static func migrate(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v2-short-ids") { db in
            try db.execute(
                sql: """
                    CREATE TABLE short_ids (
                        tail TEXT NOT NULL CHECK (length(tail) = 16),
                        id TEXT NOT NULL CHECK (length(id) = 26 AND substr(id, 11) = tail),
                        is_event INTEGER NOT NULL CHECK (is_event IN (0, 1)),
                        PRIMARY KEY (tail, id)
                    ) WITHOUT ROWID;
                    CREATE INDEX short_ids_by_id ON short_ids(id);
                    -- The replica's version up to which every created ID is in short_ids (one row).
                    CREATE TABLE short_ids_through (version INTEGER NOT NULL CHECK (version >= 0));
                    INSERT INTO short_ids_through VALUES (0);
                    """)
        }
    }

    /// Adds the IDs that edits pulled since the last call created.
    func refresh(from replica: SQLiteStore) async throws {
        let through = try await queue.read { db in
            try Int64.fetchOne(db, sql: "SELECT version FROM short_ids_through") ?? 0
        }
        // Read from the replica's file, not from what this process last knew of it: another command may have pulled.
        var (created, upTo) = try await replica.createdIDs(after: through)
        // A replica made again from scratch (its file removed) starts the index again too.
        let rebuild = upTo < through
        if rebuild { (created, upTo) = try await replica.createdIDs(after: 0) }
        guard !created.isEmpty || upTo != through else { return }
        let newThrough = upTo
        let rows = created.sorted { ShortID.tail(of: $0.id) < ShortID.tail(of: $1.id) }
        try await queue.write { db in
            if rebuild { try db.execute(sql: "DELETE FROM short_ids") }
            // Another command may have added some of them meanwhile: the same rows, so they are skipped.
            let insert = try db.cachedStatement(
                sql: "INSERT OR IGNORE INTO short_ids(tail, id, is_event) VALUES (?, ?, ?)")
            for row in rows {
                try insert.execute(arguments: [String(ShortID.tail(of: row.id)), row.id, row.isEvent])
            }
            try db.execute(
                sql: "UPDATE short_ids_through SET version = CASE WHEN ? THEN ? ELSE max(version, ?) END",
                arguments: [rebuild, newThrough, newThrough])
        }
    }

    struct Matches {
        /// How many objects the text names, all of them counted.
        var count: Int
        /// How many of them are events.
        var events: Int
        /// The first few, by whole ID.
        var listed: [(id: String, isEvent: Bool)]
    }

    /// The objects whose random part, or whole ID, starts with `normalized` (canonical digits, see
    /// `ShortID.normalize`).
    func matches(_ normalized: String, listing limit: Int = 8) throws -> Matches {
        try queue.read { db in try Self.matches(db, normalized, listing: limit) }
    }

    private static let matching = """
        SELECT id, is_event FROM short_ids WHERE tail >= ?1 AND tail < ?1 || '~'
        UNION
        SELECT id, is_event FROM short_ids WHERE id >= ?1 AND id < ?1 || '~'
        """

    static func matches(_ db: Database, _ normalized: String, listing limit: Int) throws -> Matches {
        // '~' sorts after every digit of the alphabet, so [text, text~) holds exactly what starts with text.
        let counts = try Row.fetchOne(
            db, sql: "SELECT count(*) AS n, coalesce(sum(is_event), 0) AS events FROM (\(matching))",
            arguments: [normalized])
        let first = try Row.fetchAll(
            db, sql: "\(matching) ORDER BY id LIMIT ?2", arguments: [normalized, limit]
        ).map { (id: $0["id"] as String, isEvent: $0["is_event"] as Bool) }
        return Matches(count: counts?["n"] ?? 0, events: counts?["events"] ?? 0, listed: first)
    }

    /// The short form of each ID: the shortest start of its random part, at least `ShortID.minimum` characters,
    /// that names it alone among every indexed ID, read as a short form or as the start of a whole ID. An ID
    /// the index does not hold (an edit still in the outbox) keeps its whole form.
    func shortForms(_ ids: some Sequence<String>) throws -> [String: String] {
        try queue.read { db in
            var out: [String: String] = [:]
            for id in ids where out[id] == nil {
                let tail = ShortID.tail(of: id)
                out[id] = id
                guard id.utf8.count == 26 else { continue }
                for length in ShortID.minimum...tail.count {
                    let candidate = String(tail.prefix(length))
                    let found = try Self.matches(db, candidate, listing: 2)
                    if found.count == 1, found.listed.first?.id == id {
                        out[id] = candidate
                        break
                    }
                    if found.count == 0 { break }  // not indexed: keep the whole ID
                }
            }
            return out
        }
    }
}

extension TimelineClient {
    /// What `text` (a short form, a whole ID, or the start of one; any case) names in the replica.
    public func name(_ text: String) async throws -> NamedObject {
        guard !text.allSatisfy(\.isWhitespace) else {
            throw TimelineError(.usage, "give an event's or annotation's ID")
        }
        guard let normalized = ShortID.normalize(text) else {
            throw TimelineError(.notFound, "\(text.debugDescription) is not an ID (IDs use the digits 0-9 and A-Z)")
        }
        try await ids.refresh(from: replica)
        if normalized.utf8.count == 26, let ulid = ULID(normalized) {
            if try await replica.event(EventID(ulid), asOf: nil) != nil { return .event(EventID(ulid)) }
            if let a = try await replica.annotation(AnnotationID(ulid)) { return .annotation(a.id, event: a.event) }
            if let queued = try queued(normalized) { return queued }
            throw TimelineError(.notFound, "no event or annotation \(normalized) in the replica (timeline pull?)")
        }
        let found = try ids.matches(normalized)
        switch found.count {
        case 0:
            if let queued = try queued(normalized) { return queued }
            throw TimelineError(
                .notFound, "no event or annotation matches \(normalized) in the replica (timeline pull?)")
        case 1:
            let match = found.listed[0]
            if match.isEvent { return .event(EventID(match.id)!) }
            let id = AnnotationID(match.id)!
            guard let a = try await replica.annotation(id) else {
                throw TimelineError(.notFound, "annotation \(match.id) is not in the replica")
            }
            return .annotation(id, event: a.event)
        default:
            let short = try ids.shortForms(found.listed.map(\.id))
            let listed = found.listed.map { (short[$0.id] ?? $0.id) + ($0.isEvent ? "" : " (annotation)") }
            let more = found.count > found.listed.count ? ", …" : ""
            let annotations = found.count - found.events
            let what =
                annotations == 0
                ? "events"
                : found.events == 0
                    ? "annotations"
                    : "IDs (\(found.events) event\(found.events == 1 ? "" : "s"), \(annotations) annotation\(annotations == 1 ? "" : "s"))"
            throw TimelineError(
                .ambiguous,
                "\(normalized) matches \(found.count) \(what): \(listed.joined(separator: ", "))\(more); give more characters",
                detail: .object([
                    "matches": .int(Int64(found.count)),
                    "candidates": .array(found.listed.map { .string($0.id) }),
                ]))
        }
    }

    /// The event or annotation that a queued item of the outbox creates, named by its whole ID, the start of it,
    /// or the start of its random part.
    func queued(_ normalized: String) throws -> NamedObject? {
        for item in try local.items() where item.refusal == nil {
            let op = item.proposal["op"]?.stringValue
            let created: String?
            switch op {
            case "event.create": created = item.proposal["event"]?.stringValue
            case "annotation.add": created = item.proposal["annotation"]?.stringValue
            default: created = nil
            }
            guard let id = created?.uppercased(), id.utf8.count == 26,
                id.hasPrefix(normalized) || ShortID.tail(of: id).hasPrefix(normalized)
            else { continue }
            return .queued(item: item.id, id: id, isEvent: op == "event.create", event: item.event)
        }
        return nil
    }

    /// An event ID from what a person typed (see `name(_:)`); an annotation's ID is refused with its event named.
    public func resolve(_ text: String) async throws -> EventID {
        switch try await name(text) {
        case .queued(let item, let id, let isEvent, let event):
            if !isEvent, let event {
                let short = try await shortForms([event.description])
                throw TimelineError(
                    .notAnEvent,
                    "\(id) is an annotation (on event \(short[event.description] ?? event.description)) in your outbox (edit \(item)), not sent yet"
                )
            }
            throw TimelineError(
                .notSent, "event \(id) is in your outbox (edit \(item)), not sent yet: timeline sync sends it")
        case .event(let id): return id
        case .annotation(let id, let event):
            let short = try await shortForms([id.description, event.description])
            throw TimelineError(
                .notAnEvent,
                "\(short[id.description] ?? id.description) is an annotation (on event \(short[event.description] ?? event.description)), not an event"
            )
        }
    }

    /// An annotation ID (and its event) from what a person typed; an event's ID is refused.
    public func resolveAnnotation(_ text: String) async throws -> (AnnotationID, EventID) {
        switch try await name(text) {
        case .annotation(let id, let event): return (id, event)
        case .queued(let item, let id, _, _):
            throw TimelineError(
                .notSent,
                "\(id) is in your outbox (edit \(item)), not sent yet: timeline outbox drop \(item) removes it")
        case .event(let id):
            let short = try await shortForms([id.description])
            throw TimelineError(
                .notAnAnnotation,
                "\(short[id.description] ?? id.description) is an event, not an annotation; timeline show it to see its annotations' IDs"
            )
        }
    }

    /// The short form of each ID, unique in the whole replica (see `IDIndex.shortForms`).
    public func shortForms(_ wanted: some Sequence<String>) async throws -> [String: String] {
        try await ids.refresh(from: replica)
        return try ids.shortForms(wanted)
    }
}
