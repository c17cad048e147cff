import NIOCore
import TimelineCore

/// The stable codes of `NO`, `BAD` and `BYE` lines (Protocol/PROTOCOL.md, "Error codes").
public struct WireCode: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    // BAD: the request is malformed.
    public static let lineTooLong = WireCode(rawValue: "LINE_TOO_LONG")
    public static let badUTF8 = WireCode(rawValue: "BAD_UTF8")
    public static let badTag = WireCode(rawValue: "BAD_TAG")
    public static let badSyntax = WireCode(rawValue: "BAD_SYNTAX")
    public static let unknownVerb = WireCode(rawValue: "UNKNOWN_VERB")
    public static let badArgument = WireCode(rawValue: "BAD_ARGUMENT")
    public static let batchTooLarge = WireCode(rawValue: "BATCH_TOO_LARGE")
    public static let expectedDone = WireCode(rawValue: "EXPECTED_DONE")
    // NO: the request is well formed but refused.
    public static let authRequired = WireCode(rawValue: "AUTH_REQUIRED")
    public static let authFailed = WireCode(rawValue: "AUTH_FAILED")
    /// The connection's token was revoked since it authenticated.
    public static let authRevoked = WireCode(rawValue: "AUTH_REVOKED")
    /// AUTH on a connection that is authenticated already.
    public static let alreadyAuthenticated = WireCode(rawValue: "ALREADY_AUTHENTICATED")
    public static let forbidden = WireCode(rawValue: "FORBIDDEN")
    public static let ambiguous = WireCode(rawValue: "AMBIGUOUS")
    public static let resync = WireCode(rawValue: "RESYNC")
    public static let shuttingDown = WireCode(rawValue: "SHUTTING_DOWN")
    public static let internalError = WireCode(rawValue: "INTERNAL")
    // BYE: the server closes the connection.
    public static let goodbye = WireCode(rawValue: "GOODBYE")
    public static let idleTimeout = WireCode(rawValue: "IDLE_TIMEOUT")
    public static let authTimeout = WireCode(rawValue: "AUTH_TIMEOUT")
    public static let tooManyConnections = WireCode(rawValue: "TOO_MANY_CONNECTIONS")
    public static let slowConsumer = WireCode(rawValue: "SLOW_CONSUMER")
    public static let shutdown = WireCode(rawValue: "SHUTDOWN")
    public static let protocolError = WireCode(rawValue: "PROTOCOL_ERROR")

    /// A timeline error's code on the wire (the same words).
    public init(_ code: TimelineError.Code) { rawValue = code.rawValue }

    /// Codes that say the request itself was malformed, answered with `BAD` rather than `NO`.
    public var isMalformed: Bool {
        [
            "LINE_TOO_LONG", "BAD_UTF8", "BAD_TAG", "BAD_SYNTAX", "UNKNOWN_VERB", "BAD_ARGUMENT", "BATCH_TOO_LARGE",
            "EXPECTED_DONE", "BAD_JSON", "UNKNOWN_OP", "BAD_FIELD", "BAD_VERSION",
        ].contains(rawValue)
    }
}

/// A line the server sends.
public enum Reply: Sendable, Equatable {
    /// `* HELLO timeline/1 {…}`
    case hello(JSON)
    /// `* KIND {…}`: data belonging to the request being answered.
    case data(kind: String, JSON)
    /// `* KIND {…}` with the JSON already encoded (canonically) by the caller.
    case encoded(kind: String, [UInt8])
    /// `TAG OK [{…}]`
    case ok(tag: String, JSON?)
    /// `TAG NO CODE text`, or `TAG NO CODE {"message":…,…}` when there are structured details.
    case no(tag: String, code: WireCode, message: String, detail: JSON?)
    /// `TAG BAD CODE text`, or `* BAD CODE text` for a line without a usable tag.
    case bad(tag: String?, code: WireCode, message: String)
    /// `* BYE CODE text`: the server closes the connection after this line.
    case bye(code: WireCode, message: String)

    /// The reply for a refused request: `BAD` for malformed input, `NO` otherwise.
    public static func refusal(tag: String, _ error: TimelineError) -> Reply {
        let code = WireCode(error.code)
        if code.isMalformed { return .bad(tag: tag, code: code, message: error.message) }
        return .no(tag: tag, code: code, message: error.message, detail: error.detail)
    }

    public static func refusal(_ error: WireError) -> Reply {
        .bad(tag: error.tag, code: error.code, message: error.message)
    }

    /// Writes the line, LF-terminated. Data lines go straight into the buffer: a PULL page is thousands of them.
    public func write(into buffer: inout ByteBuffer) {
        switch self {
        case .data(let kind, let json):
            buffer.writeStaticString("* ")
            buffer.writeString(kind)
            buffer.writeInteger(UInt8(ascii: " "))
            var bytes: [UInt8] = []
            json.write(into: &bytes)
            buffer.writeBytes(bytes)
        case .encoded(let kind, let json):
            buffer.writeStaticString("* ")
            buffer.writeString(kind)
            buffer.writeInteger(UInt8(ascii: " "))
            buffer.writeBytes(json)
        default:
            var bytes: [UInt8] = []
            writeOther(into: &bytes)
            buffer.writeBytes(bytes)
        }
        buffer.writeInteger(UInt8(ascii: "\n"))
    }

    private func writeOther(into bytes: inout [UInt8]) {
        switch self {
        case .hello(let json):
            bytes.append(contentsOf: "* HELLO timeline/1 ".utf8)
            json.write(into: &bytes)
        case .data, .encoded:
            preconditionFailure("written by write(into:)")
        case .ok(let tag, let json):
            bytes.append(contentsOf: "\(tag) OK".utf8)
            if let json {
                bytes.append(0x20)
                json.write(into: &bytes)
            }
        case .no(let tag, let code, let message, let detail):
            bytes.append(contentsOf: "\(tag) NO \(code.rawValue) ".utf8)
            if case .object(var o)? = detail {
                o["message"] = .string(message)
                JSON.object(o).write(into: &bytes)
            } else {
                bytes.append(contentsOf: Reply.oneLine(message).utf8)
            }
        case .bad(let tag, let code, let message):
            bytes.append(contentsOf: "\(tag ?? "*") BAD \(code.rawValue) \(Reply.oneLine(message))".utf8)
        case .bye(let code, let message):
            bytes.append(contentsOf: "* BYE \(code.rawValue) \(Reply.oneLine(message))".utf8)
        }
    }

    public var line: String {
        var buffer = ByteBuffer()
        write(into: &buffer)
        return String(buffer: buffer)
    }

    /// Human text on one line, without control characters, and never starting with `{` (which would read as JSON).
    static func oneLine(_ message: String) -> String {
        var s = String(message.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? " " : Character($0) })
        if s.first == "{" { s = "(" + s.dropFirst() }
        return s
    }
}
