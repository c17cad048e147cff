import Foundation
import TimelineCore
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

    package var json: JSON {
        .object([
            "server": .string("\(host):\(port)"), "token": .string(token),
            "fingerprint": fingerprint.map { .string($0.hex) } ?? .null, "ca": caFile.map { .string($0) } ?? .null,
            "dataset": dataset.map { .string($0) } ?? .null,
        ])
    }

    package init(json: JSON) throws {
        guard let server = json["server"]?.stringValue, let colon = server.lastIndex(of: ":"),
            let port = Int(server[server.index(after: colon)...]), let token = json["token"]?.stringValue
        else {
            throw TimelineError(
                .notInitialized, "the client configuration is damaged; run timeline init again")
        }
        self.init(
            host: String(server[..<colon]), port: port, token: token,
            fingerprint: json["fingerprint"]?.stringValue.flatMap(Fingerprint.init(hex:)),
            caFile: json["ca"]?.stringValue,
            dataset: json["dataset"]?.stringValue)
    }
}
