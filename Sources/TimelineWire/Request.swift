import NIOCore
import TimelineCore

/// The verbs of timeline/1.
public enum Verb: String, Sendable, CaseIterable {
    case auth = "AUTH"
    case ping = "PING"
    case caps = "CAPS"
    case pull = "PULL"
    case get = "GET"
    case log = "LOG"
    case history = "HISTORY"
    case propose = "PROPOSE"
    case batch = "BATCH"
    case watch = "WATCH"
    case conflicts = "CONFLICTS"
    case quit = "QUIT"
}

/// A request line: `TAG VERB [ARGS]`.
public struct Request: Sendable, Equatable {
    public var tag: String
    public var verb: Verb
    /// Everything after the verb and one space, verbatim (a JSON argument is the rest of the line).
    public var arguments: String

    public init(tag: String, verb: Verb, arguments: String) {
        self.tag = tag
        self.verb = verb
        self.arguments = arguments
    }

    /// The arguments split on spaces, for verbs whose arguments are words and numbers.
    public var words: [Substring] { arguments.split(separator: " ", omittingEmptySubsequences: true) }
}

/// A line refused before it became a request. `tag` is nil when the line has no valid tag to answer by.
public struct WireError: Error, Sendable, Equatable, CustomStringConvertible {
    public var tag: String?
    public var code: WireCode
    public var message: String

    public init(tag: String?, _ code: WireCode, _ message: String) {
        self.tag = tag
        self.code = code
        self.message = message
    }

    public var description: String { "\(tag ?? "*") BAD \(code.rawValue) \(message)" }
}

extension Request {
    public static let maxTagLength = 32

    /// A tag is 1 to 32 of letters, digits, `.`, `-`, `_`.
    public static func isValidTag<S: Collection<UInt8>>(_ bytes: S) -> Bool {
        guard !bytes.isEmpty, bytes.count <= maxTagLength else { return false }
        return bytes.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2E || b == 0x2D
                || b == 0x5F
        }
    }

    /// The tag at the start of a line, if it has a valid one (used to answer lines that are otherwise bad).
    public static func tag(of line: ByteBuffer) -> String? {
        let view = line.readableBytesView
        let end = view.firstIndex(of: 0x20) ?? view.endIndex
        let tagBytes = view[view.startIndex..<end]
        guard isValidTag(tagBytes) else { return nil }
        return String(decoding: tagBytes, as: UTF8.self)
    }

    /// Parses a request line. Refused: invalid UTF-8, NUL and other control bytes, a bad tag, an unknown verb.
    public static func parse(_ line: ByteBuffer) -> Result<Request, WireError> {
        let tag = Self.tag(of: line)
        let view = line.readableBytesView
        guard let text = String(validating: view, as: UTF8.self) else {
            return .failure(WireError(tag: tag, .badUTF8, "the line is not valid UTF-8"))
        }
        if view.contains(where: { $0 < 0x20 && $0 != 0x09 }) || view.contains(0x7F) {
            return .failure(WireError(tag: tag, .badSyntax, "the line contains control characters"))
        }
        guard let tag else {
            return .failure(
                WireError(tag: nil, .badTag, "a request starts with a tag of 1 to 32 letters, digits, '.', '-' or '_'"))
        }
        let afterTag = text.utf8.dropFirst(tag.utf8.count)
        guard afterTag.first == 0x20 else {
            return .failure(WireError(tag: tag, .badSyntax, "expected \"\(tag) VERB [ARGUMENTS]\""))
        }
        let rest = Substring(afterTag.dropFirst())
        let verbText = rest.prefix { $0 != " " }
        guard let verb = Verb(rawValue: verbText.uppercased()) else {
            let shown = verbText.prefix(32)
            return .failure(WireError(tag: tag, .unknownVerb, "unknown verb \"\(shown)\""))
        }
        let arguments = rest.dropFirst(verbText.count).drop { $0 == " " }
        return .success(Request(tag: tag, verb: verb, arguments: String(arguments)))
    }
}
