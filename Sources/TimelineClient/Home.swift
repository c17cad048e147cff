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
        else { throw ClientError("STORE_FAILED", "cannot write \(configPath)") }
        guard rename(temp, configPath) == 0 else { throw ClientError("STORE_FAILED", "cannot replace \(configPath)") }
    }
}
