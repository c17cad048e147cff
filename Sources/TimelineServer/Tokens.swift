import COpenSSL
import Foundation
import Logging
import NIOConcurrencyHelpers
import TimelineCore
import TimelinePostgres
import TimelineStore

/// Bearer tokens, stored only as SHA-256 hashes: in `DIR/tokens.json` (mode 0600) beside a SQLite store, or in the
/// database beside a PostgreSQL store (`PostgresTokens`), where every node sees them. The running server rereads
/// the file when it changes, so `timelined token add|revoke` take effect without a restart.
public final class TokenStore: Sendable {
    public typealias Entry = TokenRecord

    public struct Identity: Sendable, Equatable {
        public var name: String
        public var role: Role
    }

    public let path: String
    private let cache: NIOLockedValueBox<(modified: FileStamp?, entries: [Entry])>
    /// When this process last wrote down each token's use: at most once a minute per token.
    private let uses = NIOLockedValueBox<[Digest: Timestamp]>([:])
    /// Set when the tokens live in a PostgreSQL store's database instead of the file.
    private let database: PostgresTokens?

    public init(path: String) {
        self.path = path
        cache = NIOLockedValueBox((nil, []))
        database = nil
    }

    /// The tokens of a PostgreSQL store, shared by every node serving it.
    public init(database: PostgresTokens) {
        path = ""
        cache = NIOLockedValueBox((nil, []))
        self.database = database
    }

    /// What tells that the file changed: a `token` command replaces it (a new inode), or its time or size moved.
    struct FileStamp: Equatable {
        var inode: UInt64
        var size: Int64
        var seconds: Int
        var nanoseconds: Int

        /// One `stat`: cheap enough to make before every request (a revoked token stops at its next one).
        init?(path: String) {
            var s = stat()
            guard stat(path, &s) == 0 else { return nil }
            inode = UInt64(s.st_ino)
            size = Int64(s.st_size)
            seconds = Int(s.st_mtim.tv_sec)
            nanoseconds = Int(s.st_mtim.tv_nsec)
        }
    }

    /// Names may be used as authors: 1 to 64 letters, digits, `.`, `-`, `_`, `@`.
    public static func isValidName(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 64
            && name.utf8.allSatisfy { b in
                (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2E
                    || b == 0x2D || b == 0x5F || b == 0x40
            }
    }

    /// Beside the tokens file: when each token (by hash) was last used, written by the server that serves it.
    public var usesPath: String { path.isEmpty ? "" : path + ".used" }

    public func entries() throws -> [Entry] {
        if let database {
            return database.records
        }
        let modified = FileStamp(path: path)
        if let cached = cache.withLockedValue({ $0.modified != nil && $0.modified == modified ? $0.entries : nil }) {
            return cached
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            // No file is no tokens; a file this process may not read is a mistake to say, not an empty list.
            if modified != nil {
                throw TimelineError(
                    .storeFailed,
                    "cannot read \(path): \(String(cString: strerror(access(path, R_OK) == 0 ? EIO : errno))) "
                        + "(run token commands as the server's user)")
            }
            cache.withLockedValue { $0 = (nil, []) }
            return []
        }
        let json = try JSON(parsingBytes: Array(data))
        var out: [Entry] = []
        for item in json["tokens"]?.arrayValue ?? [] {
            guard let name = item["name"]?.stringValue, let role = item["role"]?.stringValue.flatMap(Role.init),
                let hash = item["sha256"]?.stringValue.flatMap(Digest.init(hex:)),
                let created = item["created"]?.stringValue.flatMap(Timestamp.init(rfc3339:))
            else { throw TimelineError(.corrupt, "\(path) holds an entry that is not a token") }
            out.append(
                Entry(
                    name: name, role: role, hash: hash, created: created,
                    revoked: item["revoked"]?.stringValue.flatMap(Timestamp.init(rfc3339:)),
                    expires: item["expires"]?.stringValue.flatMap(Timestamp.init(rfc3339:))))
        }
        cache.withLockedValue { $0 = (modified, out) }
        return out
    }

    /// `entries()` with each token's last use, as the server wrote it down.
    public func entriesWithUses() throws -> [Entry] {
        var list = try entries()
        guard database == nil, let data = FileManager.default.contents(atPath: usesPath),
            let json = try? JSON(parsingBytes: Array(data))
        else { return list }
        for i in list.indices {
            list[i].lastUsed = json[list[i].hash.hex]?.stringValue.flatMap(Timestamp.init(rfc3339:))
        }
        return list
    }

    /// Why a token is refused, for the operator's log (the client is told only AUTH_FAILED): unknown, or whose
    /// token it was and that it was revoked or expired.
    public func refusal(ofHash hash: Digest) -> String {
        guard let list = try? entries() else { return "the tokens cannot be read" }
        guard let entry = list.last(where: { $0.hash == hash }) else { return "unknown token" }
        if entry.revoked != nil { return "revoked token of \(entry.name)" }
        if !entry.isLive(at: WallClock.now()) { return "expired token of \(entry.name)" }
        return "token of \(entry.name)"
    }

    /// When an unreadable tokens file was last logged.
    private let lastUnreadable = NIOLockedValueBox<Timestamp?>(nil)
    static let logger = Logger(label: "timelined")

    /// One read-merge-write of a uses file at a time.
    private static let usesFileLock = NIOLock()

    /// Writes down that a token was just used (AUTH): to the minute, in the background, never holding AUTH up.
    public func recordUse(ofHash hash: Digest) {
        let now = WallClock.now()
        let due = uses.withLockedValue { seen -> [Digest: Timestamp]? in
            if let last = seen[hash], now.milliseconds - last.milliseconds < 60_000 { return nil }
            seen[hash] = now
            return seen
        }
        guard let due else { return }
        if let database {
            Task { try? await database.recordUse(hash: hash) }
            return
        }
        let path = usesPath
        Task.detached { Self.usesFileLock.withLock { Self.writeUses(due, to: path) } }
    }

    /// This process's uses over what the file held (a restart starts from the file).
    private static func writeUses(_ due: [Digest: Timestamp], to path: String) {
        var merged: [String: JSON] = [:]
        if let data = FileManager.default.contents(atPath: path),
            case .object(let old)? = try? JSON(parsingBytes: Array(data))
        {
            merged = old
        }
        for (digest, time) in due { merged[digest.hex] = .string(time.rfc3339) }
        let temp = path + ".tmp"
        if FileManager.default.createFile(
            atPath: temp, contents: Data(JSON.object(merged).canonicalBytes + [0x0A]),
            attributes: [.posixPermissions: 0o600])
        {
            _ = rename(temp, path)
        }
    }

    /// Runs a read-modify-write of the file holding its lock: two `token` commands at once must not lose one
    /// another's change.
    private func changing<T>(_ body: () throws -> T) throws -> T {
        let lock = try FileLock(path: path + ".lock")
        FolderOwner.match(path + ".lock", folder: (path as NSString).deletingLastPathComponent)
        try lock.lock(exclusive: true)
        defer { lock.unlock() }
        cache.withLockedValue { $0 = (nil, []) }
        return try body()
    }

    /// Creates a token, valid until `expires` when given; returns it (the only time it exists outside the
    /// caller's hands).
    public func add(name: String, role: Role, expires: Timestamp? = nil) async throws -> String {
        guard Self.isValidName(name) else {
            throw TimelineError(.badField, "a token name is 1 to 64 letters, digits, '.', '-', '_' or '@'")
        }
        if let expires, expires <= WallClock.now() {
            throw TimelineError(.badField, "a token's expiry must be in the future")
        }
        var random = [UInt8](repeating: 0, count: 24)
        guard RAND_bytes(&random, 24) == 1 else { throw TimelineError(.storeFailed, "no randomness for a token") }
        let token = "tl_" + random.map { String(format: "%02x", $0) }.joined()
        if let database {
            try await database.add(
                name: name, role: role, hash: SHA256.hash(Array(token.utf8)), created: WallClock.now(),
                expires: expires)
            return token
        }
        return try changing { try addLocked(name: name, role: role, token: token, expires: expires) }
    }

    private func addLocked(name: String, role: Role, token: String, expires: Timestamp?) throws -> String {
        var list = try entries()
        if list.contains(where: { $0.name == name && $0.revoked == nil }) {
            throw TimelineError(.duplicateID, "a token named \(name) exists; revoke it first")
        }
        list.append(
            Entry(
                name: name, role: role, hash: SHA256.hash(Array(token.utf8)), created: WallClock.now(),
                expires: expires))
        try save(list)
        return token
    }

    /// Revokes every live token with this name; returns how many.
    @discardableResult
    public func revoke(name: String) async throws -> Int {
        if let database { return try await database.revoke(name: name) }
        return try changing { try revokeLocked(name: name) }
    }

    private func revokeLocked(name: String) throws -> Int {
        var list = try entries()
        var count = 0
        for i in list.indices where list[i].name == name && list[i].revoked == nil {
            list[i].revoked = WallClock.now()
            count += 1
        }
        guard count > 0 else { throw TimelineError(.notFound, "no live token named \(name)") }
        try save(list)
        return count
    }

    /// Whether the tokens are shared by several nodes (kept in a database), so that this node's copy may lag.
    public var isShared: Bool { database != nil }

    /// `identity(ofHash:)` after reading the shared tokens again: for an AUTH this node's copy does not know.
    public func refreshedIdentity(ofHash hash: Digest) async -> Identity? {
        if let database { try? await database.refresh() }
        return identity(ofHash: hash)
    }

    /// Takes every token of `other` (a store being migrated), live and revoked, as they are; this list must be
    /// empty.
    public func copyEntries(from other: TokenStore) async throws {
        let entries = try other.entriesWithUses()
        guard try self.entries().isEmpty else {
            throw TimelineError(.duplicateID, "the target holds tokens already; migrate into an empty store")
        }
        if let database {
            for e in entries { try await database.copy(e) }
            return
        }
        try changing { try save(entries) }
    }

    /// The identity of a token by its hash, as the file says now (nil once it is revoked or expired), comparing
    /// hashes in constant time against every entry: what AUTH checks, and what a connection checks before each
    /// request.
    public func identity(ofHash hash: Digest) -> Identity? {
        let list: [Entry]
        do {
            list = try entries()
        } catch {
            // Every AUTH is refused until the file is readable again: the log says why, once a minute.
            let now = WallClock.now()
            let due = lastUnreadable.withLockedValue { last -> Bool in
                guard last.map({ now.milliseconds - $0.milliseconds >= 60_000 }) ?? true else { return false }
                last = now
                return true
            }
            if due { Self.logger.error("tokens unreadable, every AUTH is refused: \(error)") }
            return nil
        }
        let presented = hash.bytes
        let now = WallClock.now()
        var found: Identity?
        for entry in list {
            let same = presented.withUnsafeBytes { a in
                entry.hash.bytes.withUnsafeBytes { b in CRYPTO_memcmp(a.baseAddress, b.baseAddress, 32) == 0 }
            }
            if same && entry.isLive(at: now) && found == nil { found = Identity(name: entry.name, role: entry.role) }
        }
        return found
    }

    private func save(_ list: [Entry]) throws {
        let json = JSON.object([
            "tokens": .array(
                list.map { e in
                    .object([
                        "name": .string(e.name), "role": .string(e.role.rawValue), "sha256": .string(e.hash.hex),
                        "created": .string(e.created.rfc3339),
                        "revoked": e.revoked.map { .string($0.rfc3339) } ?? .null,
                        "expires": e.expires.map { .string($0.rfc3339) } ?? .null,
                    ])
                })
        ])
        let temp = path + ".tmp"
        guard
            FileManager.default.createFile(
                atPath: temp, contents: Data(json.canonicalBytes + [0x0A]), attributes: [.posixPermissions: 0o600])
        else { throw TimelineError(.storeFailed, "could not write the token file") }
        // Run as root (sudo timelined token add …), the file keeps the folder's owner: a file only root may read
        // would lock the server's own user out of every token.
        FolderOwner.match(temp, folder: (path as NSString).deletingLastPathComponent)
        guard rename(temp, path) == 0 else { throw TimelineError(.storeFailed, "could not replace the token file") }
        cache.withLockedValue { $0 = (nil, []) }
    }
}
