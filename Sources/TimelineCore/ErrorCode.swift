/// The one set of stable codes, shared by the store, the wire, TLS, the server, the office replica and the client:
/// a program compares codes, never messages. The wire's `NO`, `BAD` and `BYE` lines carry them
/// (Protocol/PROTOCOL.md, "Error codes"); the CLI prints them and maps them to exit codes.
public struct ErrorCode: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    // MARK: Edits and the store

    /// Not valid JSON (or not the JSON subset the timeline accepts).
    public static let badJSON = ErrorCode(rawValue: "BAD_JSON")
    /// Input that is not valid UTF-8.
    public static let badUTF8 = ErrorCode(rawValue: "BAD_UTF8")
    /// An `op` that the timeline does not know.
    public static let unknownOperation = ErrorCode(rawValue: "UNKNOWN_OP")
    /// A field missing, of the wrong type, or out of its limits.
    public static let badField = ErrorCode(rawValue: "BAD_FIELD")
    /// An event or annotation that does not exist.
    public static let notFound = ErrorCode(rawValue: "NOT_FOUND")
    /// An ID that already exists.
    public static let duplicateID = ErrorCode(rawValue: "DUPLICATE_ID")
    /// The same field changed to two different values; `detail` names them.
    public static let conflict = ErrorCode(rawValue: "CONFLICT")
    /// A base revision newer than the event's current revision.
    public static let badBase = ErrorCode(rawValue: "BAD_BASE")
    /// The change is not allowed in the annotation's or event's present state.
    public static let invalidState = ErrorCode(rawValue: "INVALID_STATE")
    /// Not allowed to this author (another author's annotation, a verb above the token's role).
    public static let forbidden = ErrorCode(rawValue: "FORBIDDEN")
    /// A document that could not be imported.
    public static let badImport = ErrorCode(rawValue: "BAD_IMPORT")
    /// The store refused or failed the write (disk full, I/O error); nothing was written.
    public static let storeFailed = ErrorCode(rawValue: "STORE_FAILED")
    /// The store cannot be reached now (its PostgreSQL is stopped or unreachable); nothing was written. Retry later.
    public static let storeUnavailable = ErrorCode(rawValue: "STORE_UNAVAILABLE")
    /// The store's log or state is inconsistent.
    public static let corrupt = ErrorCode(rawValue: "CORRUPT")
    /// A version outside the log (negative, or beyond the current version).
    public static let badVersion = ErrorCode(rawValue: "BAD_VERSION")
    /// A store created for a different dataset, or a server holding another dataset than a replica.
    public static let wrongDataset = ErrorCode(rawValue: "WRONG_DATASET")
    /// A data folder or client home another process writes (a second `serve` or `import`).
    public static let inUse = ErrorCode(rawValue: "IN_USE")

    // MARK: BAD: the request is malformed

    public static let lineTooLong = ErrorCode(rawValue: "LINE_TOO_LONG")
    public static let badTag = ErrorCode(rawValue: "BAD_TAG")
    public static let badSyntax = ErrorCode(rawValue: "BAD_SYNTAX")
    public static let unknownVerb = ErrorCode(rawValue: "UNKNOWN_VERB")
    public static let badArgument = ErrorCode(rawValue: "BAD_ARGUMENT")
    public static let batchTooLarge = ErrorCode(rawValue: "BATCH_TOO_LARGE")
    public static let expectedDone = ErrorCode(rawValue: "EXPECTED_DONE")

    // MARK: NO: well formed but refused

    public static let authRequired = ErrorCode(rawValue: "AUTH_REQUIRED")
    public static let authFailed = ErrorCode(rawValue: "AUTH_FAILED")
    /// The connection's token was revoked, or expired, since it authenticated.
    public static let authRevoked = ErrorCode(rawValue: "AUTH_REVOKED")
    /// AUTH on a connection that is authenticated already.
    public static let alreadyAuthenticated = ErrorCode(rawValue: "ALREADY_AUTHENTICATED")
    /// A prefix that names more than one event.
    public static let ambiguous = ErrorCode(rawValue: "AMBIGUOUS")
    /// The client's version is beyond the server's log: another dataset or a restored server.
    public static let resync = ErrorCode(rawValue: "RESYNC")
    public static let shuttingDown = ErrorCode(rawValue: "SHUTTING_DOWN")
    public static let internalError = ErrorCode(rawValue: "INTERNAL")
    /// An office replica cannot reach its upstream to forward a write.
    public static let upstreamUnavailable = ErrorCode(rawValue: "UPSTREAM_UNAVAILABLE")
    /// An office replica stopped following an upstream whose log no longer extends its own.
    public static let upstreamDiverged = ErrorCode(rawValue: "UPSTREAM_DIVERGED")

    // MARK: BYE: the server closes the connection

    public static let goodbye = ErrorCode(rawValue: "GOODBYE")
    public static let idleTimeout = ErrorCode(rawValue: "IDLE_TIMEOUT")
    public static let authTimeout = ErrorCode(rawValue: "AUTH_TIMEOUT")
    public static let tooManyConnections = ErrorCode(rawValue: "TOO_MANY_CONNECTIONS")
    public static let slowConsumer = ErrorCode(rawValue: "SLOW_CONSUMER")
    public static let shutdown = ErrorCode(rawValue: "SHUTDOWN")
    public static let protocolError = ErrorCode(rawValue: "PROTOCOL_ERROR")

    // MARK: TLS

    /// A TLS context could not be set up (key, certificate or library state).
    public static let tlsSetup = ErrorCode(rawValue: "TLS_SETUP")
    public static let badCertificate = ErrorCode(rawValue: "BAD_CERTIFICATE")
    public static let badKey = ErrorCode(rawValue: "BAD_KEY")
    public static let certificateMismatch = ErrorCode(rawValue: "CERT_MISMATCH")
    /// The peer's certificate is not trusted (CA, host name, expiry or pinned fingerprint).
    public static let certificateRejected = ErrorCode(rawValue: "CERT_REJECTED")
    public static let handshakeFailed = ErrorCode(rawValue: "HANDSHAKE_FAILED")
    public static let handshakeTimeout = ErrorCode(rawValue: "HANDSHAKE_TIMEOUT")
    public static let tlsFailed = ErrorCode(rawValue: "TLS_FAILED")
    /// The TLS session was closed before the operation.
    public static let tlsClosed = ErrorCode(rawValue: "CLOSED")
    /// More bytes waited for TLS than the handler buffers.
    public static let tooMuchPending = ErrorCode(rawValue: "TOO_MUCH_PENDING")
    /// The peer closed without TLS's close_notify: what it sent may be cut short.
    public static let truncated = ErrorCode(rawValue: "TRUNCATED")

    // MARK: The client

    /// The server could not be reached, or the connection broke: nothing was lost, retry later.
    public static let unreachable = ErrorCode(rawValue: "UNREACHABLE")
    /// A server's reply did not follow the protocol.
    public static let badReply = ErrorCode(rawValue: "PROTOCOL")
    /// No client configuration in this home (`timeline init`).
    public static let notInitialized = ErrorCode(rawValue: "NOT_INITIALIZED")
    /// A command line that does not say what to do.
    public static let usage = ErrorCode(rawValue: "USAGE")
    /// The editor for a note could not be run, or left no note.
    public static let editor = ErrorCode(rawValue: "EDITOR")
    /// An edit still queued in the outbox, named where a sent one is needed.
    public static let notSent = ErrorCode(rawValue: "NOT_SENT")
    /// A short ID that names an annotation where an event is needed.
    public static let notAnEvent = ErrorCode(rawValue: "NOT_AN_EVENT")
    /// A short ID that names an event where an annotation is needed.
    public static let notAnAnnotation = ErrorCode(rawValue: "NOT_AN_ANNOTATION")
    /// A failure with no code of its own (shown, never sent).
    public static let unexpected = ErrorCode(rawValue: "ERROR")

    /// Codes that say the request itself was malformed, answered with `BAD` rather than `NO`.
    public var isMalformed: Bool { Self.malformed.contains(self) }
    private static let malformed: Set<ErrorCode> = [
        .lineTooLong, .badUTF8, .badTag, .badSyntax, .unknownVerb, .badArgument, .batchTooLarge, .expectedDone,
        .badJSON, .unknownOperation, .badField, .badVersion,
    ]

    /// Codes that say nothing about an edit, only about the moment or the connection's token: an edit refused
    /// with one stays queued and is sent again later.
    public var isTransient: Bool { Self.transient.contains(self) }
    private static let transient: Set<ErrorCode> = [
        .shuttingDown, .storeFailed, .storeUnavailable, .internalError, .upstreamUnavailable, .upstreamDiverged,
        .corrupt, .authRequired, .authFailed, .authRevoked,
    ]
}
