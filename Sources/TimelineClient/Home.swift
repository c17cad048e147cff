import Foundation
import TimelineCore
import TimelineLink
import TimelineStore

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
            throw TimelineError(
                .notInitialized,
                "no client in \(path); run: timeline init --server HOST:PORT --token-file FILE --fingerprint SHA256")
        }
        return try ClientConfig(json: try JSON(parsingBytes: Array(data)))
    }

    public func saveConfig(_ config: ClientConfig) throws {
        try FileManager.default.createDirectory(
            atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        // It holds the token and the replica: its owner's alone, also when the folder existed before.
        chmod(path, 0o700)
        let temp = configPath + ".tmp"
        guard
            FileManager.default.createFile(
                atPath: temp, contents: Data(config.json.canonicalBytes + [0x0A]),
                attributes: [.posixPermissions: 0o600])
        else { throw TimelineError(.storeFailed, "cannot write \(configPath)") }
        guard rename(temp, configPath) == 0 else { throw TimelineError(.storeFailed, "cannot replace \(configPath)") }
    }
}
