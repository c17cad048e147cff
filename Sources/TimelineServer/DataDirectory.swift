import Foundation
import TimelineCore
import TimelinePostgres
import TimelineStore
import TimelineTLS

/// Where a timeline is kept: the SQLite file in the data folder, or a PostgreSQL database.
public enum StoreChoice: Sendable, Equatable {
    case sqlite
    /// The database, and the file its password is read from (nil: `PGPASSWORD`, or none).
    case postgres(PostgresLocation, passwordFile: String?)

    /// The password for the database: the file's first line, else `PGPASSWORD`; never an argument.
    func password() throws -> String? {
        guard case .postgres(_, let file) = self else { return nil }
        if let file {
            var s = stat()
            guard stat(file, &s) == 0, let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw TimelineError(.badArgument, "cannot read the store's password from \(file)")
            }
            // As ssh does with a key: a secret others can read is refused, not used.
            guard s.st_mode & 0o077 == 0 else {
                throw TimelineError(
                    .badArgument,
                    "\(file) can be read by other users of this machine; make it private (chmod 600 \(file))")
            }
            return String(text.split(separator: "\n", omittingEmptySubsequences: false).first ?? "")
        }
        return ProcessInfo.processInfo.environment["PGPASSWORD"]
    }

    /// The same database with another password file (`--store-password-file` given with only `--data`).
    public func withPasswordFile(_ file: String?) -> StoreChoice {
        guard let file, case .postgres(let location, _) = self else { return self }
        return .postgres(location, passwordFile: file)
    }
}

/// A server's data folder: `timeline.sqlite`, `tokens.json`, `tls/server.crt` and `tls/server.key`, and on
/// first start `admin.token`; with a PostgreSQL store, `store.json` naming the database instead of the first two.
/// Everything secret is mode 0600.
public struct DataDirectory: Sendable {
    public let path: String

    public init(path: String) { self.path = path }

    public var storePath: String { path + "/timeline.sqlite" }
    public var tokensPath: String { path + "/tokens.json" }
    public var adminTokenPath: String { path + "/admin.token" }
    public var certificatePath: String { path + "/tls/server.crt" }
    public var keyPath: String { path + "/tls/server.key" }
    /// An office replica's queued edits and conflicts.
    public var outboxPath: String { path + "/outbox.sqlite" }
    /// An office replica's link state, for `timelined status`.
    public var replicationStatusPath: String { path + "/replication.json" }

    /// The outcome of the server's last certificate reload (SIGHUP), for `timelined reload`.
    public var reloadStatusPath: String { path + "/reload.json" }

    /// Which store the folder uses, when it is a PostgreSQL database: its URL and password file, never a password.
    public var storeChoicePath: String { path + "/store.json" }

    public var exists: Bool {
        FileManager.default.fileExists(atPath: storePath) || FileManager.default.fileExists(atPath: storeChoicePath)
    }

    /// The store this folder was served with: the database `store.json` names, else its SQLite file.
    public func rememberedStore() throws -> StoreChoice {
        guard let data = FileManager.default.contents(atPath: storeChoicePath) else { return .sqlite }
        let json = try JSON(parsingBytes: Array(data))
        guard let url = json["store"]?.stringValue else {
            throw TimelineError(.corrupt, "\(storeChoicePath) names no store")
        }
        return .postgres(try PostgresLocation(url: url), passwordFile: json["password_file"]?.stringValue)
    }

    /// The store to use: `given` (a `--store`), checked against what the folder remembers, or what it remembers.
    public func storeChoice(given: StoreChoice?) throws -> StoreChoice {
        let remembered = try rememberedStore()
        guard let given else { return remembered }
        switch (given, remembered) {
        case (.postgres(let a, _), .postgres(let b, _)) where a != b:
            throw TimelineError(
                .wrongDataset, "\(path) is served from \(b), not \(a); give another --data folder for another store")
        case (.postgres, .sqlite) where FileManager.default.fileExists(atPath: storePath):
            throw TimelineError(
                .wrongDataset,
                "\(path) holds a SQLite timeline; copy it to PostgreSQL with timelined migrate, or use another folder")
        case (.sqlite, .postgres(let b, _)):
            throw TimelineError(.wrongDataset, "\(path) is served from \(b)")
        default:
            return given
        }
    }

    /// Opens the folder's store (`choice`, from `storeChoice(given:)`) with its tokens. `create`: a PostgreSQL
    /// database without a timeline becomes one.
    public func open(
        _ choice: StoreChoice, create: Bool = false, dataset: String? = nil,
        options: SQLiteStore.Options = SQLiteStore.Options()
    ) async throws -> (store: any TimelineStore, tokens: TokenStore, created: Bool) {
        switch choice {
        case .sqlite:
            let created = !FileManager.default.fileExists(atPath: storePath)
            let store = try SQLiteStore(path: storePath, dataset: dataset, options: options)
            return (store, TokenStore(path: tokensPath), created)
        case .postgres(let location, _):
            let store = try await PostgresStore.open(
                location, password: try choice.password(), dataset: dataset, create: create)
            return (store, TokenStore(database: try await PostgresTokens(store: store)), store.createdDataset)
        }
    }

    /// Writes `store.json` for a PostgreSQL store (mode 0600; it holds no password).
    public func remember(_ choice: StoreChoice) throws {
        guard case .postgres(let location, let file) = choice else { return }
        let json = JSON.object([
            "store": .string(location.description), "password_file": file.map { .string($0) } ?? .null,
        ])
        guard
            FileManager.default.createFile(
                atPath: storeChoicePath, contents: Data(json.canonicalBytes + [0x0A]),
                attributes: [.posixPermissions: 0o600])
        else { throw TimelineError(.storeFailed, "could not write \(storeChoicePath)") }
    }

    /// Held exclusively by the one process that writes the store (`serve`, `import`).
    public var lockPath: String { path + "/timelined.lock" }

    /// Takes the folder for writing its store, or refuses at once, naming the process that has it: two writers
    /// on one store would serve stale versions and refuse each other's edits. Keep the lock for as long as the
    /// store is written; the kernel releases it when the process ends.
    public func lockForWriting() throws -> FileLock {
        try FileManager.default.createDirectory(
            atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let lock = try FileLock(path: lockPath)
        guard try lock.tryLock(exclusive: true) else {
            throw TimelineError(
                .inUse, "\(path) is in use by timelined\(lock.owner.map { " (pid \($0))" } ?? ""); stop it first")
        }
        return lock
    }

    /// The process writing the store now, if any: readers (verify, export, status) read a snapshot of a live
    /// folder, and say so.
    public func liveWriter() -> Int32? {
        guard FileManager.default.fileExists(atPath: lockPath), let lock = try? FileLock(path: lockPath) else {
            return nil
        }
        guard (try? lock.tryLock(exclusive: false)) == false else {
            lock.unlock()
            return nil
        }
        return lock.owner ?? 0
    }

    /// What a first start created, to tell the operator once.
    public struct FirstStart: Sendable {
        public var adminToken: String
        public var loadedSample: Bool
    }

    /// Opens the store, creating the folder, store, certificate and admin token on first start (loading the
    /// bundled sample timeline unless `empty`). An existing folder is opened as it is. `options` are the store's
    /// (an office's: `SQLiteStore.Options.office`). With a PostgreSQL store, the first node to open an empty
    /// database creates the timeline and its admin token; later nodes (other folders) join it.
    public func prepare(
        empty: Bool, dataset: String? = nil, options: SQLiteStore.Options = SQLiteStore.Options(),
        store given: StoreChoice? = nil
    ) async throws -> (
        store: any TimelineStore, tokens: TokenStore, first: FirstStart?
    ) {
        let fm = FileManager.default
        let choice = try storeChoice(given: given)
        try fm.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let (store, tokens, created) = try await open(choice, create: true, dataset: dataset, options: options)
        try remember(choice)
        guard created else { return (store, tokens, nil) }
        var loaded = false
        if !empty, try await store.currentVersion() == 0 {
            _ = try await Importer.loadSample(into: store)
            loaded = true
        }
        let token = try await tokens.add(name: "admin", role: .admin)
        guard
            fm.createFile(
                atPath: adminTokenPath, contents: Data((token + "\n").utf8), attributes: [.posixPermissions: 0o600])
        else { throw TimelineError(.storeFailed, "could not write \(adminTokenPath)") }
        return (store, tokens, FirstStart(adminToken: token, loadedSample: loaded))
    }

    /// Makes a self-signed certificate in `tls/` unless one is there; returns its fingerprint.
    @discardableResult
    public func ensureCertificate(hostnames: [String] = []) throws -> Fingerprint {
        let fm = FileManager.default
        if !fm.fileExists(atPath: certificatePath) {
            try fm.createDirectory(
                atPath: path + "/tls", withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            let (cert, key) = try Certificates.selfSigned(commonName: "timelined", extraNames: hostnames)
            guard fm.createFile(atPath: keyPath, contents: Data(key.utf8), attributes: [.posixPermissions: 0o600]),
                fm.createFile(
                    atPath: certificatePath, contents: Data(cert.utf8), attributes: [.posixPermissions: 0o644])
            else { throw TimelineError(.storeFailed, "could not write the certificate files") }
        }
        return try Self.fingerprint(ofCertificateAt: certificatePath)
    }

    public static func fingerprint(ofCertificateAt path: String) throws -> Fingerprint {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TimelineError(.storeFailed, "cannot read the certificate \(path)")
        }
        return try Fingerprint(pem: String(decoding: data, as: UTF8.self))
    }
}
