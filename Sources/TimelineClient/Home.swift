import Foundation
import GRDB
import TimelineCore
import TimelineStore
import TimelineTLS

/// How to reach and trust the server, kept in `HOME/config.json` (mode 0600: it holds the token).
public struct ClientConfig: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var token: String
    /// A pinned SHA-256 certificate fingerprint, or
    public var fingerprint: Fingerprint?
    /// a CA file (PEM) with the host name the certificate must carry.
    public var caFile: String?
    /// The dataset of the replica, learnt on the first connection.
    public var dataset: String?

    public init(
        host: String, port: Int, token: String, fingerprint: Fingerprint?, caFile: String?, dataset: String? = nil
    ) {
        self.host = host
        self.port = port
        self.token = token
        self.fingerprint = fingerprint
        self.caFile = caFile
        self.dataset = dataset
    }

    public var verification: TLSContext.Verification {
        if let fingerprint { return .fingerprint(fingerprint) }
        return .certificateAuthority(file: caFile ?? "", hostname: host)
    }

    var json: JSON {
        .object([
            "server": .string("\(host):\(port)"), "token": .string(token),
            "fingerprint": fingerprint.map { .string($0.hex) } ?? .null, "ca": caFile.map { .string($0) } ?? .null,
            "dataset": dataset.map { .string($0) } ?? .null,
        ])
    }

    init(json: JSON) throws {
        guard let server = json["server"]?.stringValue, let colon = server.lastIndex(of: ":"),
            let port = Int(server[server.index(after: colon)...]), let token = json["token"]?.stringValue
        else {
            throw ClientError(
                ClientError.notInitialized, "the client configuration is damaged; run timeline init again")
        }
        self.init(
            host: String(server[..<colon]), port: port, token: token,
            fingerprint: json["fingerprint"]?.stringValue.flatMap(Fingerprint.init(hex:)),
            caFile: json["ca"]?.stringValue,
            dataset: json["dataset"]?.stringValue)
    }
}

/// A client's home folder: `config.json`, the replica (`replica.sqlite`, the server's log and state), and
/// `client.sqlite` (the outbox of local edits and the recorded conflicts). Several homes are independent clients.
public struct ClientHome: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    /// `TIMELINE_HOME`, else `~/.local/share/timeline`.
    public static var defaultPath: String {
        if let home = ProcessInfo.processInfo.environment["TIMELINE_HOME"], !home.isEmpty { return home }
        return NSHomeDirectory() + "/.local/share/timeline"
    }

    var configPath: String { path + "/config.json" }
    var replicaPath: String { path + "/replica.sqlite" }
    var localPath: String { path + "/client.sqlite" }

    public func loadConfig() throws -> ClientConfig {
        guard let data = FileManager.default.contents(atPath: configPath) else {
            throw ClientError(
                ClientError.notInitialized,
                "no client in \(path); run: timeline init --server HOST:PORT --token TOKEN --fingerprint SHA256")
        }
        return try ClientConfig(json: try JSON(parsingBytes: Array(data)))
    }

    public func saveConfig(_ config: ClientConfig) throws {
        try FileManager.default.createDirectory(
            atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let temp = configPath + ".tmp"
        guard
            FileManager.default.createFile(
                atPath: temp, contents: Data(config.json.canonicalBytes + [0x0A]),
                attributes: [.posixPermissions: 0o600])
        else { throw ClientError("STORE_FAILED", "cannot write \(configPath)") }
        guard rename(temp, configPath) == 0 else { throw ClientError("STORE_FAILED", "cannot replace \(configPath)") }
    }
}

/// A local edit waiting to reach the server.
public struct OutboxItem: Sendable, Equatable {
    public var id: Int64
    public var created: Timestamp
    public var event: EventID?
    /// The proposal as it will be sent (with its `base`).
    public var proposal: JSON
}

/// A local edit the server did not take as it was: a field someone else changed (`CONFLICT`), or another
/// refusal (`NOT_FOUND`, `INVALID_STATE`, …). Kept until a person resolves it.
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
    public var code: String
    public var message: String
    /// The original proposal, so that nothing typed is lost.
    public var proposal: JSON

    public var json: JSON {
        .object([
            "id": .int(id), "created": .string(created.rfc3339),
            "event": event.map { .string($0.description) } ?? .null,
            "field": .string(field), "ours": ours, "theirs": theirs, "their_author": .string(theirAuthor),
            "their_version": .int(theirVersion), "code": .string(code), "message": .string(message),
            "proposal": proposal,
        ])
    }
}

/// The outbox and the conflicts, in one SQLite file (`client.sqlite` of a client home, `outbox.sqlite` of an
/// office replica). Every local edit is stored here before it is sent.
public final class Outbox: Sendable {
    let queue: DatabaseQueue

    public init(path: String) throws {
        var config = Configuration()
        config.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
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

    public func items() throws -> [OutboxItem] {
        try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT id, created, event, proposal FROM outbox ORDER BY id").map { row in
                OutboxItem(
                    id: row["id"], created: Timestamp(rfc3339: row["created"]) ?? Timestamp(milliseconds: 0),
                    event: (row["event"] as String?).flatMap(EventID.init),
                    proposal: try JSON(parsing: row["proposal"] as String))
            }
        }
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
                        c.theirAuthor, c.theirVersion, c.code, c.message, c.proposal.canonicalString,
                    ])
            }
            try db.execute(sql: "DELETE FROM outbox WHERE id = ?", arguments: [itemID])
        }
    }

    /// Replaces an outbox item's proposal (what remains to send after a partial merge).
    func replace(_ itemID: Int64, with proposal: JSON) throws {
        try queue.write { db in
            try db.execute(
                sql: "UPDATE outbox SET proposal = ? WHERE id = ?", arguments: [proposal.canonicalString, itemID])
        }
    }

    public func conflicts() throws -> [Conflict] {
        try queue.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM conflicts ORDER BY id").map { row in
                Conflict(
                    id: row["id"], created: Timestamp(rfc3339: row["created"]) ?? Timestamp(milliseconds: 0),
                    event: (row["event"] as String?).flatMap(EventID.init), field: row["field"],
                    ours: try JSON(parsing: row["ours"] as String), theirs: try JSON(parsing: row["theirs"] as String),
                    theirAuthor: row["their_author"], theirVersion: row["their_version"], code: row["code"],
                    message: row["message"], proposal: try JSON(parsing: row["proposal"] as String))
            }
        }
    }

    public func removeConflict(_ id: Int64) throws {
        try queue.write { db in try db.execute(sql: "DELETE FROM conflicts WHERE id = ?", arguments: [id]) }
    }
}
