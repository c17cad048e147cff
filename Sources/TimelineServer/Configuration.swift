import NIOCore

/// Limits the server enforces, each answered with a documented code (Protocol/PROTOCOL.md, "Limits").
public struct Limits: Sendable, Equatable {
    /// Longest request line, in bytes without the LF.
    public var maxLineLength = 1 << 20
    /// Most edits in one BATCH.
    public var maxBatch = 10_000
    /// Most edits one PULL returns.
    public var maxPull = 10_000
    /// PULL's page when the client names none.
    public var defaultPull = 1_000
    /// Most connections at once; more are told `BYE TOO_MANY_CONNECTIONS`.
    public var maxConnections = 1_024
    /// A connection with no request for this long is closed (`BYE IDLE_TIMEOUT`); watchers are exempt.
    public var idleTimeout = TimeAmount.seconds(300)
    /// A connection that has not authenticated within this is closed (`BYE AUTH_TIMEOUT`).
    public var authTimeout = TimeAmount.seconds(30)
    /// The TLS handshake must finish within this.
    public var handshakeTimeout = TimeAmount.seconds(10)
    /// Bytes that may wait unsent to a slow reader (a watcher past it is told `BYE SLOW_CONSUMER`).
    public var maxOutboundBuffer = 8 << 20
    /// How long a connection being closed waits for its last lines (the reason) to be written to a peer that does
    /// not read, before it is closed regardless.
    public var closeGrace = TimeAmount.seconds(10)
    /// Requests read ahead of the one executing; past it the server stops reading from that connection.
    public var maxPipelined = 128

    public init() {}
}

/// Where and how a server runs.
public struct ServerConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var certificateFile: String
    public var keyFile: String
    /// Client certificates signed by this CA may be presented (mutual TLS for server-to-server links).
    public var clientCAFile: String?
    public var limits: Limits

    public init(
        host: String = "127.0.0.1", port: Int = 7447, certificateFile: String, keyFile: String,
        clientCAFile: String? = nil, limits: Limits = Limits()
    ) {
        self.host = host
        self.port = port
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.clientCAFile = clientCAFile
        self.limits = limits
    }
}
