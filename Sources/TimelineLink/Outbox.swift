import Foundation
import GRDB
import TimelineCore
import TimelineStore

/// A local edit not yet in the timeline: queued to be sent, or refused by the server and kept for its author.
public struct OutboxItem: Sendable, Equatable {
    public var id: Int64
    public var created: Timestamp
    public var event: EventID?
    /// The proposal as it will be sent (with its `base`).
    public var proposal: JSON
    /// Set once the server refused the edit for a reason that sending it again would not change (a role, a
    /// field, a state): the edit is no longer sent, only listed, until its author retries or drops it.
    public var refusal: Refusal?

    public struct Refusal: Sendable, Equatable {
        public var code: ErrorCode
        public var message: String
        public var time: Timestamp
    }

    public var json: JSON {
        var o: [String: JSON] = [
            "id": .int(id), "created": .string(created.rfc3339),
            "event": event.map { .string($0.description) } ?? .null, "proposal": proposal,
            "state": refusal == nil ? "queued" : "refused",
        ]
        if let refusal {
            o["code"] = .string(refusal.code.rawValue)
            o["message"] = .string(refusal.message)
            o["refused"] = .string(refusal.time.rfc3339)
        }
        return .object(o)
    }
}

/// A local edit the server merged in part: one field someone else had changed to another value (`CONFLICT`, the
/// protocol's §8). Kept until a person resolves it; the rest of the edit went in.
public struct Conflict: Sendable, Equatable {
    public var id: Int64
    public var created: Timestamp
    public var event: EventID?
    /// The field in conflict (`title`, `annotation.<ID>.text`, `deleted`, …), empty for other refusals.
    public var field: String
    public var ours: JSON
    public var theirs: JSON
    public var theirAuthor: String
    public var theirVersion: Int64
    public var code: ErrorCode
    public var message: String
    /// The original proposal, so that nothing typed is lost.
    public var proposal: JSON

    public var json: JSON {
        .object([
            "id": .int(id), "created": .string(created.rfc3339),
            "event": event.map { .string($0.description) } ?? .null,
            "field": .string(field), "ours": ours, "theirs": theirs, "their_author": .string(theirAuthor),
            "their_version": .int(theirVersion), "code": .string(code.rawValue), "message": .string(message),
            "proposal": proposal,
        ])
    }
}

/// Who the server said this client is, at the last authentication: the role decides which edits are worth
/// queueing at all.
public struct Identity: Sendable, Equatable {
    public var user: String
    public var role: Role
    public var seen: Timestamp
}

/// The outbox and the conflicts, in one SQLite file (`client.sqlite` of a client home, `outbox.sqlite` of an
/// office replica). Every local edit is stored here before it is sent.
public final class Outbox: Sendable {
    /// The file's one connection; the analyst's client keeps tables of its own in it (short IDs, search, marks).
    package let queue: DatabaseQueue

    public init(path: String) throws {
        var config = Configuration()
        config.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        // Several commands may use one home at once (a script's `xargs -P`): readers see a snapshot while a writer
        // works, and a writer waits for another rather than failing with "database is locked".
        config.journalMode = .wal
        config.busyMode = .timeout(60)
        // It holds what people typed: theirs alone, whatever the umask (SQLite gives its -wal and -shm files the
        // database file's mode).
        try PrivateFile.create(path)
        queue = try DatabaseQueue(path: path, configuration: config)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1-outbox-and-conflicts") { db in
            try db.execute(
                sql: """
                    CREATE TABLE outbox (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        created TEXT NOT NULL,
                        event TEXT CHECK (event IS NULL OR length(event) = 26),
                        proposal TEXT NOT NULL CHECK (json_valid(proposal))
                    );
                    CREATE TABLE conflicts (
                        id INTEGER PRIMARY KEY AUTOINCREMENT,
                        created TEXT NOT NULL,
                        event TEXT CHECK (event IS NULL OR length(event) = 26),
                        field TEXT NOT NULL,
                        ours TEXT NOT NULL,
                        theirs TEXT NOT NULL,
                        their_author TEXT NOT NULL,
                        their_version INTEGER NOT NULL,
                        code TEXT NOT NULL,
                        message TEXT NOT NULL,
                        proposal TEXT NOT NULL CHECK (json_valid(proposal))
                    );
                    """)
        }
        // Refusals (FORBIDDEN, BAD_FIELD, INVALID_STATE, …) had been recorded as conflicts, which they are not:
        // nothing merged, and "keep ours" only repeats the refusal. They stay in the outbox, marked, unsent.
        migrator.registerMigration("v3-refused-edits-stay-in-the-outbox") { db in
            try db.execute(
                sql: """
                    ALTER TABLE outbox ADD COLUMN refused_code TEXT;
                    ALTER TABLE outbox ADD COLUMN refused_message TEXT;
                    ALTER TABLE outbox ADD COLUMN refused_at TEXT;
                    INSERT INTO outbox(created, event, proposal, refused_code, refused_message, refused_at)
                        SELECT created, event, proposal, code, message, created FROM conflicts
                        WHERE code != 'CONFLICT' ORDER BY id;
                    DELETE FROM conflicts WHERE code != 'CONFLICT';
                    CREATE TABLE identity (
                        user TEXT NOT NULL,
                        role TEXT NOT NULL,
                        seen TEXT NOT NULL
                    );
                    """)
        }
        try migrator.migrate(queue)
    }

    public func enqueue(_ proposal: JSON, event: EventID?) throws -> Int64 {
        try queue.write { db in
            try db.execute(
                sql: "INSERT INTO outbox(created, event, proposal) VALUES (?, ?, ?)",
                arguments: [WallClock.now().rfc3339, event?.description, proposal.canonicalString])
            return db.lastInsertedRowID
        }
    }

    /// Every item, queued and refused, oldest first.
    public func items() throws -> [OutboxItem] {
        try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM outbox ORDER BY id").map(Self.item)
        }
    }

    /// The items a push sends: those not refused.
    public func queued() throws -> [OutboxItem] {
        try items().filter { $0.refusal == nil }
    }

    public func refused() throws -> [OutboxItem] {
        try items().filter { $0.refusal != nil }
    }

    static func item(_ row: Row) throws -> OutboxItem {
        let code: String? = row["refused_code"]
        return OutboxItem(
            id: row["id"], created: Timestamp(rfc3339: row["created"]) ?? Timestamp(milliseconds: 0),
            event: (row["event"] as String?).flatMap(EventID.init),
            proposal: try JSON(parsing: row["proposal"] as String),
            refusal: code.map {
                OutboxItem.Refusal(
                    code: ErrorCode(rawValue: $0), message: row["refused_message"] ?? "",
                    time: Timestamp(rfc3339: row["refused_at"] ?? "") ?? Timestamp(milliseconds: 0))
            })
    }

    /// Removes an outbox item and records its conflicts in one transaction: nothing is lost between the two.
    func settle(_ itemID: Int64, conflicts: [Conflict]) throws {
        try queue.write { db in
            for c in conflicts {
                try db.execute(
                    sql: """
                        INSERT INTO conflicts(created, event, field, ours, theirs, their_author, their_version, code, message, proposal)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                    arguments: [
                        c.created.rfc3339, c.event?.description, c.field, c.ours.canonicalString,
                        c.theirs.canonicalString,
                        c.theirAuthor, c.theirVersion, c.code.rawValue, c.message, c.proposal.canonicalString,
                    ])
            }
            try db.execute(sql: "DELETE FROM outbox WHERE id = ?", arguments: [itemID])
        }
    }

    /// Marks an item refused: it stays, unsent, with the server's reason.
    func markRefused(_ itemID: Int64, code: ErrorCode, message: String) throws {
        try queue.write { db in
            try db.execute(
                sql: "UPDATE outbox SET refused_code = ?, refused_message = ?, refused_at = ? WHERE id = ?",
                arguments: [code.rawValue, message, WallClock.now().rfc3339, itemID])
        }
    }

    /// Puts a refused item back in the queue (with a new proposal, e.g. a fresh base); false if there is none.
    public func requeue(_ itemID: Int64, proposal: JSON) throws -> Bool {
        try queue.write { db in
            try db.execute(
                sql: """
                    UPDATE outbox SET refused_code = NULL, refused_message = NULL, refused_at = NULL, proposal = ?
                    WHERE id = ? AND refused_code IS NOT NULL
                    """,
                arguments: [proposal.canonicalString, itemID])
            return db.changesCount == 1
        }
    }

    /// Removes an item, queued or refused; false if there is none.
    public func drop(_ itemID: Int64) throws -> Bool {
        try queue.write { db in
            try db.execute(sql: "DELETE FROM outbox WHERE id = ?", arguments: [itemID])
            return db.changesCount == 1
        }
    }

    public func conflicts() throws -> [Conflict] {
        try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM conflicts ORDER BY id").map { row in
                Conflict(
                    id: row["id"], created: Timestamp(rfc3339: row["created"]) ?? Timestamp(milliseconds: 0),
                    event: (row["event"] as String?).flatMap(EventID.init), field: row["field"],
                    ours: try JSON(parsing: row["ours"] as String), theirs: try JSON(parsing: row["theirs"] as String),
                    theirAuthor: row["their_author"], theirVersion: row["their_version"],
                    code: ErrorCode(rawValue: row["code"]),
                    message: row["message"], proposal: try JSON(parsing: row["proposal"] as String))
            }
        }
    }

    /// What an office replica's upstream did not take as it was: its conflicts, then its refused edits in the
    /// same shape (no field, `ours` the whole proposal), as the CONFLICTS verb lists them.
    public func notTaken() throws -> [Conflict] {
        try conflicts()
            + refused().map { item in
                Conflict(
                    id: item.id, created: item.refusal!.time, event: item.event, field: "", ours: item.proposal,
                    theirs: .null, theirAuthor: "", theirVersion: 0, code: item.refusal!.code,
                    message: item.refusal!.message, proposal: item.proposal)
            }
    }

    public func removeConflict(_ id: Int64) throws {
        try queue.write { db in try db.execute(sql: "DELETE FROM conflicts WHERE id = ?", arguments: [id]) }
    }

    /// Who the server said this client was at its last authentication, if it ever said.
    public func identity() throws -> Identity? {
        try queue.read { db in
            try Row.fetchOne(db, sql: "SELECT user, role, seen FROM identity").flatMap { row in
                (Role(rawValue: row["role"] as String)).map {
                    Identity(
                        user: row["user"], role: $0,
                        seen: Timestamp(rfc3339: row["seen"] as String) ?? Timestamp(milliseconds: 0))
                }
            }
        }
    }

    package func recordIdentity(user: String, role: Role) throws {
        try queue.write { db in
            try db.execute(sql: "DELETE FROM identity")
            try db.execute(
                sql: "INSERT INTO identity(user, role, seen) VALUES (?, ?, ?)",
                arguments: [user, role.rawValue, WallClock.now().rfc3339])
        }
    }
}
