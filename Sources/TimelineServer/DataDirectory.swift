import Foundation
import TimelineCore
import TimelineStore
import TimelineTLS

/// A server's data folder: `timeline.sqlite`, `tokens.json`, `tls/server.crt` and `tls/server.key`, and on
/// first start `admin.token`. Everything secret is mode 0600.
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

    public var exists: Bool { FileManager.default.fileExists(atPath: storePath) }

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
    /// (an office's: `SQLiteStore.Options.office`).
    public func prepare(
        empty: Bool, dataset: String? = nil, options: SQLiteStore.Options = SQLiteStore.Options()
    ) async throws -> (
        store: SQLiteStore, tokens: TokenStore, first: FirstStart?
    ) {
        let fm = FileManager.default
        let isNew = !exists
        try fm.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let store = try SQLiteStore(path: storePath, dataset: dataset, options: options)
        let tokens = TokenStore(path: tokensPath)
        guard isNew else { return (store, tokens, nil) }
        var loaded = false
        if !empty, try await store.currentVersion() == 0 {
            _ = try await Importer.loadSample(into: store)
            loaded = true
        }
        let token = try tokens.add(name: "admin", role: .admin)
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
