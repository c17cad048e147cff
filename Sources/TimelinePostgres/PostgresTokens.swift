import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import PostgresNIO
import TimelineCore
import TimelineStore

/// Tokens kept in the database, so that one added or revoked through any node holds on every node. Only SHA-256
/// hashes are stored. Each node keeps a copy that AUTH and the check before every request read without a round
/// trip; it is read again when another node announces a change (NOTIFY) and at every poll of the follower, so a
/// revocation reaches every node within moments, and the node it was made on at once.
public final class PostgresTokens: Sendable {
    public typealias Record = TokenRecord

    let store: PostgresStore
    private let copy = NIOLockedValueBox<[Record]>([])
    private let refreshing = NIOLockedValueBox(false)

    /// Reads the tokens once, then keeps the copy current.
    public init(store: PostgresStore) async throws {
        self.store = store
        try await refresh()
        store.follower.watchTokens { [weak self] in
            guard let self else { return }
            let start = self.refreshing.withLockedValue { busy in
                defer { busy = true }
                return !busy
            }
            guard start else { return }
            Task {
                defer { self.refreshing.withLockedValue { $0 = false } }
                try? await self.refresh()
            }
        }
    }

    /// Every token, live and revoked, as this node last read them.
    public var records: [Record] { copy.withLockedValue { $0 } }

    public func refresh() async throws {
        let records = try await store.read("read the tokens") { conn, logger in
            var out: [Record] = []
            for try await (name, role, hash, created, revoked, expires, used) in try await conn.query(
                """
                SELECT name, role, sha256, (extract(epoch FROM created) * 1000)::bigint,
                    (extract(epoch FROM revoked) * 1000)::bigint, (extract(epoch FROM expires) * 1000)::bigint,
                    (extract(epoch FROM last_used) * 1000)::bigint
                FROM timeline_tokens ORDER BY id
                """, logger: logger
            ).decode((String, String, ByteBuffer, Int64, Int64?, Int64?, Int64?).self) {
                guard let role = Role(rawValue: role), let digest = Digest(bytes: Array(buffer: hash)) else {
                    throw TimelineError(.corrupt, "the tokens table holds a row that is not a token")
                }
                out.append(
                    Record(
                        name: name, role: role, hash: digest, created: Timestamp(milliseconds: created),
                        revoked: revoked.map(Timestamp.init(milliseconds:)),
                        expires: expires.map(Timestamp.init(milliseconds:)),
                        lastUsed: used.map(Timestamp.init(milliseconds:))))
            }
            return out
        }
        copy.withLockedValue { $0 = records }
    }

    /// Stores a token's hash; refused with `DUPLICATE_ID` while a live token has the name.
    public func add(name: String, role: Role, hash: Digest, created: Timestamp, expires: Timestamp? = nil)
        async throws
    {
        let seconds = Double(created.milliseconds) / 1000
        let until = expires.map { Double($0.milliseconds) / 1000 }
        do {
            try await store.read("add a token") { conn, logger in
                _ = try await conn.query(
                    """
                    INSERT INTO timeline_tokens (name, role, sha256, created, expires)
                    VALUES (\(name), \(role.rawValue), \(ByteBuffer(bytes: hash.bytes)), to_timestamp(\(seconds)),
                        to_timestamp(\(until)))
                    """, logger: logger)
                try await PostgresTokens.announce(conn, logger: logger)
            }
        } catch let error as TimelineError where error.code == .corrupt {
            // The unique index of live names (or, vanishingly unlikely, of hashes).
            throw TimelineError(.duplicateID, "a token named \(name) exists; revoke it first")
        }
        try await refresh()
    }

    /// Copies a token from another store's list as it is (hash, dates, revocation): for `timelined migrate`.
    public func copy(_ record: Record) async throws {
        let created = Double(record.created.milliseconds) / 1000
        let revoked = record.revoked.map { Double($0.milliseconds) / 1000 }
        let expires = record.expires.map { Double($0.milliseconds) / 1000 }
        let used = record.lastUsed.map { Double($0.milliseconds) / 1000 }
        try await store.read("copy a token") { conn, logger in
            _ = try await conn.query(
                """
                INSERT INTO timeline_tokens (name, role, sha256, created, revoked, expires, last_used)
                VALUES (\(record.name), \(record.role.rawValue), \(ByteBuffer(bytes: record.hash.bytes)),
                    to_timestamp(\(created)), to_timestamp(\(revoked)), to_timestamp(\(expires)),
                    to_timestamp(\(used)))
                """, logger: logger)
            try await PostgresTokens.announce(conn, logger: logger)
        }
        try await refresh()
    }

    /// Tells every node to read the tokens again (after the change committed: each statement is its own
    /// transaction here).
    static func announce(_ conn: PostgresConnection, logger: Logger) async throws {
        _ = try await conn.query("SELECT pg_notify('\(unescaped: PostgresStore.tokensChannel)', '')", logger: logger)
    }

    /// Writes down that a token was used now (its AUTH); other nodes read it at their next refresh.
    public func recordUse(hash: Digest) async throws {
        try await store.read("record a token's use") { conn, logger in
            _ = try await conn.query(
                "UPDATE timeline_tokens SET last_used = now() WHERE sha256 = \(ByteBuffer(bytes: hash.bytes))",
                logger: logger)
        }
    }

    /// Revokes every live token with this name; returns how many.
    public func revoke(name: String) async throws -> Int {
        let count = try await store.read("revoke a token") { conn, logger in
            var count = 0
            for try await _ in try await conn.query(
                "UPDATE timeline_tokens SET revoked = now() WHERE name = \(name) AND revoked IS NULL RETURNING id",
                logger: logger
            ).decode(Int64.self) {
                count += 1
            }
            if count > 0 { try await PostgresTokens.announce(conn, logger: logger) }
            return count
        }
        try await refresh()
        guard count > 0 else { throw TimelineError(.notFound, "no live token named \(name)") }
        return count
    }
}
