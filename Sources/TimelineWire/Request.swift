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
    /// The verb with its arguments checked, or why they are wrong: answered only once the caller may use the
    /// verb at all, so that a client without AUTH learns that first.
    public var command: Result<Command, TimelineError>

    public init(tag: String, verb: Verb, arguments: String) {
        self.tag = tag
        self.verb = verb
        self.arguments = arguments
        command = Command.parse(verb, arguments)
    }

    public init(tag: String, _ command: Command) {
        let line = command.line
        let arguments = line.dropFirst(command.verb.rawValue.count).drop { $0 == " " }
        self.tag = tag
        verb = command.verb
        self.arguments = String(arguments)
        self.command = .success(command)
    }

    /// The line as a client sends it (without its LF).
    public var line: String { arguments.isEmpty ? "\(tag) \(verb.rawValue)" : "\(tag) \(verb.rawValue) \(arguments)" }
}

/// A line refused before it became a request: why (the one error type), and the tag to answer by, nil when the
/// line has no valid one.
public struct RefusedLine: Error, Sendable, Equatable, CustomStringConvertible {
    public var tag: String?
    public var error: TimelineError

    public init(tag: String?, _ code: ErrorCode, _ message: String) {
        self.tag = tag
        error = TimelineError(code, message)
    }

    public var description: String { "\(tag ?? "*") BAD \(error.code) \(error.message)" }
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

    /// Whether a line holds a C0 control character (U+0000 to U+001F): refused raw in every line a client sends,
    /// request or BATCH line alike, and escaped in every line the server sends (canonical JSON). DEL and the C1
    /// characters are text: JSON allows them raw, and canonical JSON sends them raw.
    /// Read where the line lies, eight bytes at a time: every BATCH line is checked, on the event loop that reads it.
    public static func hasControlCharacters(_ line: ByteBuffer) -> Bool {
        line.withUnsafeReadableBytes { raw in
            var i = 0
            while i + 8 <= raw.count {
                // A byte below 0x20 borrows in the subtraction and has its top bit clear: exact for "any".
                let word = raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                if (word &- 0x2020_2020_2020_2020) & ~word & 0x8080_8080_8080_8080 != 0 { return true }
                i += 8
            }
            while i < raw.count {
                if raw[i] < 0x20 { return true }
                i += 1
            }
            return false
        }
    }

    /// Parses a request line. Refused: invalid UTF-8, control characters, a bad tag, an unknown verb, spaces
    /// other than one between words.
    public static func parse(_ line: ByteBuffer) -> Result<Request, RefusedLine> {
        let tag = Self.tag(of: line)
        let view = line.readableBytesView
        guard let text = String(validating: view, as: UTF8.self) else {
            return .failure(RefusedLine(tag: tag, .badUTF8, "the line is not valid UTF-8"))
        }
        if hasControlCharacters(line) {
            return .failure(
                RefusedLine(tag: tag, .badSyntax, "the line contains control characters (U+0000 to U+001F)"))
        }
        guard let tag else {
            return .failure(
                RefusedLine(
                    tag: nil, .badTag, "a request starts with a tag of 1 to 32 letters, digits, '.', '-' or '_'"))
        }
        let afterTag = text.utf8.dropFirst(tag.utf8.count)
        guard afterTag.first == 0x20 else {
            return .failure(RefusedLine(tag: tag, .badSyntax, "expected \"\(tag) VERB [ARGUMENTS]\""))
        }
        let rest = Substring(afterTag.dropFirst())
        let verbText = rest.prefix { $0 != " " }
        guard !verbText.isEmpty else {
            return .failure(RefusedLine(tag: tag, .badSyntax, "expected one space, then the verb, after the tag"))
        }
        guard let verb = Verb(rawValue: verbText.uppercased()) else {
            let shown = verbText.prefix(32)
            return .failure(RefusedLine(tag: tag, .unknownVerb, "unknown verb \"\(shown)\""))
        }
        var arguments = rest.dropFirst(verbText.count)
        if arguments.first == " " {
            arguments = arguments.dropFirst()
            if arguments.isEmpty { return .failure(RefusedLine(tag: tag, .badSyntax, "a space ends the line")) }
        }
        // Words and numbers are separated by one space; a JSON argument (LOG, PROPOSE) is the rest of the line.
        if verb != .log, verb != .propose,
            arguments.first == " " || arguments.last == " " || arguments.contains("  ")
        {
            return .failure(RefusedLine(tag: tag, .badSyntax, "words are separated by exactly one space"))
        }
        return .success(Request(tag: tag, verb: verb, arguments: String(arguments)))
    }
}
