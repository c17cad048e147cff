import NIOCore
import TimelineCore

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
    case no(tag: String, code: ErrorCode, message: String, detail: JSON?)
    /// `TAG BAD CODE text`, or `* BAD CODE text` for a line without a usable tag.
    case bad(tag: String?, code: ErrorCode, message: String)
    /// `* BYE CODE text`: the server closes the connection after this line.
    case bye(code: ErrorCode, message: String)

    /// The reply for a refused request: `BAD` for malformed input, `NO` otherwise.
    public static func refusal(tag: String, _ error: TimelineError) -> Reply {
        let code = error.code
        if code.isMalformed { return .bad(tag: tag, code: code, message: error.message) }
        return .no(tag: tag, code: code, message: error.message, detail: error.detail)
    }

    public static func refusal(_ line: RefusedLine) -> Reply {
        .bad(tag: line.tag, code: line.error.code, message: line.error.message)
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

extension Reply {
    /// Reads a line the server sent (without its LF): the inverse of `write(into:)`, for clients. A data line
    /// keeps its JSON as bytes (`.encoded`): a PULL page's thousands of edits are decoded by whoever needs them.
    /// Nil for a line that is none of the protocol's.
    public static func parse(_ line: String) -> Reply? {
        var rest = Substring(line)
        let tag = rest.prefix { $0 != " " }
        guard !tag.isEmpty, rest.dropFirst(tag.count).first == " " else { return nil }
        rest = rest.dropFirst(tag.count + 1)
        let word = rest.prefix { $0 != " " }
        let afterWord = rest.dropFirst(word.count).dropFirst()
        if tag == "*" {
            switch word {
            case "HELLO":
                guard afterWord.hasPrefix("timeline/1 "),
                    let json = try? JSON(parsing: String(afterWord.dropFirst("timeline/1 ".count)))
                else { return nil }
                return .hello(json)
            case "BYE":
                let (code, message) = codeAndText(afterWord)
                return code.map { .bye(code: $0, message: message) }
            case "BAD":
                let (code, message) = codeAndText(afterWord)
                return code.map { .bad(tag: nil, code: $0, message: message) }
            default:
                guard !word.isEmpty, !afterWord.isEmpty else { return nil }
                return .encoded(kind: String(word), Array(afterWord.utf8))
            }
        }
        guard Request.isValidTag(tag.utf8) else { return nil }
        switch word {
        case "OK":
            if afterWord.isEmpty { return rest.count == 2 ? .ok(tag: String(tag), nil) : nil }
            guard let json = try? JSON(parsing: String(afterWord)) else { return nil }
            return .ok(tag: String(tag), json)
        case "NO":
            let (code, text) = codeAndText(afterWord)
            guard let code else { return nil }
            if text.hasPrefix("{"), let json = try? JSON(parsing: text), case .object(var o) = json {
                let message = o.removeValue(forKey: "message")?.stringValue ?? ""
                return .no(tag: String(tag), code: code, message: message, detail: .object(o))
            }
            return .no(tag: String(tag), code: code, message: text, detail: nil)
        case "BAD":
            let (code, message) = codeAndText(afterWord)
            return code.map { .bad(tag: String(tag), code: $0, message: message) }
        default:
            return nil
        }
    }

    /// `CODE text`: the code (upper-case letters, digits and `_`) and the text after one space.
    private static func codeAndText(_ s: Substring) -> (ErrorCode?, String) {
        let code = s.prefix { $0 != " " }
        guard !code.isEmpty,
            code.utf8.allSatisfy({ ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F })
        else { return (nil, "") }
        return (ErrorCode(rawValue: String(code)), String(s.dropFirst(code.count).dropFirst()))
    }
}
