struct JSONParser {
    let bytes: UnsafeBufferPointer<UInt8>
    let maxDepth: Int
    /// Only the canonical form is accepted (`JSON.parseCanonical`).
    let canonical: Bool
    var index = 0
    /// Whether the last string parsed had an escape: two keys without one compare as their raw bytes.
    var lastStringEscaped = false
    /// Whether the last string parsed was plain ASCII without escapes (false says nothing).
    var lastStringASCII = false
    /// The top-level key whose member's range `excised` records.
    var excisedKey: String?
    var excised: Range<Int>?

    init(bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int, canonical: Bool = false) {
        self.bytes = bytes
        self.maxDepth = maxDepth
        self.canonical = canonical
    }

    func fail(_ reason: String) -> JSONParseError {
        // Canonical text skips no white space, so whatever expected the next token stopped at it: say so.
        if canonical, index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) {
            return JSONParseError(offset: index, reason: "not canonical: white space")
        }
        return JSONParseError(offset: index, reason: reason)
    }

    mutating func parseDocument() throws(JSONParseError) -> JSON {
        skipWhitespace()
        let value = try parseValue(depth: 0)
        skipWhitespace()
        if index != bytes.count {
            throw fail(
                canonical ? "not canonical: bytes after the JSON value" : "unexpected bytes after the JSON value")
        }
        return value
    }

    /// Canonical text has no white space at all: there, a space is refused by whatever expected the next token.
    mutating func skipWhitespace() {
        if canonical { return }
        while index < bytes.count {
            switch bytes[index] {
            case 0x20, 0x09, 0x0A, 0x0D: index += 1
            default: return
            }
        }
    }

    mutating func parseValue(depth: Int) throws(JSONParseError) -> JSON {
        guard index < bytes.count else { throw fail("unexpected end of JSON") }
        switch bytes[index] {
        case UInt8(ascii: "{"): return try parseObject(depth: depth + 1)
        case UInt8(ascii: "["): return try parseArray(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .int(try parseInteger())
        default: throw fail("unexpected character")
        }
    }

    mutating func expectLiteral(_ literal: StaticString) throws(JSONParseError) {
        let count = literal.utf8CodeUnitCount
        guard bytes.count - index >= count else { throw fail("unexpected end of JSON") }
        let start = literal.utf8Start
        for offset in 0..<count where bytes[index + offset] != start[offset] {
            throw fail("invalid literal")
        }
        index += count
    }

    mutating func parseInteger() throws(JSONParseError) -> Int64 {
        let start = index
        var negative = false
        if bytes[index] == UInt8(ascii: "-") {
            negative = true
            index += 1
        }
        guard index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) else {
            throw fail("invalid number")
        }
        if bytes[index] == UInt8(ascii: "0"), index + 1 < bytes.count,
            (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index + 1])
        {
            throw fail("leading zero in number")
        }
        // Accumulate negatively so that Int64.min parses.
        var value: Int64 = 0
        while index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) {
            let digit = Int64(bytes[index] - UInt8(ascii: "0"))
            let (m, o1) = value.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.subtractingReportingOverflow(digit)
            if o1 || o2 {
                index = start
                throw fail("integer out of 64-bit range")
            }
            value = s
            index += 1
        }
        if index < bytes.count,
            bytes[index] == UInt8(ascii: ".") || bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E")
        {
            throw fail("only integers are accepted")
        }
        if negative {
            if canonical, value == 0 {
                index = start
                throw fail("not canonical: -0")
            }
            return value
        }
        guard value != Int64.min else {
            index = start
            throw fail("integer out of 64-bit range")
        }
        return -value
    }

    mutating func parseArray(depth: Int) throws(JSONParseError) -> JSON {
        guard depth <= maxDepth else { throw fail("JSON nested deeper than \(maxDepth) levels") }
        index += 1
        var items: [JSON] = []
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "]") {
            index += 1
            return .array(items)
        }
        while true {
            skipWhitespace()
            items.append(try parseValue(depth: depth))
            skipWhitespace()
            guard index < bytes.count else { throw fail("unexpected end of JSON") }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
            } else if bytes[index] == UInt8(ascii: "]") {
                index += 1
                return .array(items)
            } else {
                throw fail("expected ',' or ']'")
            }
        }
    }

    mutating func parseObject(depth: Int) throws(JSONParseError) -> JSON {
        // Room for a typical edit's fields at once: growing from empty rehashes every key three times.
        var members = [String: JSON](minimumCapacity: 12)
        try parseMembers(depth: depth, into: &members)
        return .object(members)
    }

    /// The members of the object at `index` (its `{` not yet read), into `members`.
    mutating func parseMembers<Sink: MemberSink>(depth: Int, into members: inout Sink) throws(JSONParseError) {
        guard depth <= maxDepth else { throw fail("JSON nested deeper than \(maxDepth) levels") }
        index += 1
        skipWhitespace()
        if index < bytes.count, bytes[index] == UInt8(ascii: "}") {
            index += 1
            return
        }
        var previousKey: (raw: Range<Int>, key: String, escaped: Bool)?
        while true {
            skipWhitespace()
            guard index < bytes.count else { throw fail("unexpected end of JSON") }
            guard bytes[index] == UInt8(ascii: "\"") else { throw fail("expected a key") }
            let keyOffset = index
            let key = try parseString()
            let keyIsASCII = lastStringASCII
            if canonical {
                let raw = keyOffset + 1..<index - 1
                if let previous = previousKey, !keyFollows(previous, raw: raw, key: key, escaped: lastStringEscaped) {
                    throw JSONParseError(offset: keyOffset, reason: "not canonical: key \"\(key)\" out of order")
                }
                previousKey = (raw, key, lastStringEscaped)
            }
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw fail("expected ':'") }
            index += 1
            skipWhitespace()
            let value = try parseValue(depth: depth)
            guard members.add(key, value, keyIsASCII: keyIsASCII) else {
                throw JSONParseError(offset: keyOffset, reason: "duplicate key \"\(key)\"")
            }
            skipWhitespace()
            guard index < bytes.count else { throw fail("unexpected end of JSON") }
            let excise = depth == 1 && excisedKey.map { JSON.sameKey($0, key) } ?? false
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
                if excise { excised = keyOffset..<index }
            } else if bytes[index] == UInt8(ascii: "}") {
                // The last member goes with the comma before it; an only member leaves "{}".
                if excise { excised = (members.count > 1 ? keyOffset - 1 : keyOffset)..<index }
                index += 1
                return
            } else {
                throw fail("expected ',' or '}'")
            }
        }
    }

    /// Whether `key` sorts strictly after the previous key by UTF-8 bytes. Keys without escapes compare in place.
    func keyFollows(
        _ previous: (raw: Range<Int>, key: String, escaped: Bool), raw: Range<Int>, key: String,
        escaped: Bool
    ) -> Bool {
        if previous.escaped || escaped { return JSON.utf8Less(previous.key, key) }
        return JSON.bytesLess(
            UnsafeBufferPointer(rebasing: bytes[previous.raw]), UnsafeBufferPointer(rebasing: bytes[raw]))
    }

    /// After `\u` in canonical text: `00` and two lower-case hex digits, for a control character that has no
    /// short escape.
    mutating func canonicalControlEscape() throws(JSONParseError) -> UInt8 {
        // A lower-case digit is one the encoder writes back.
        func digit(_ byte: UInt8) -> UInt8? {
            let value = Digest.nibble(byte)
            return value < 16 && JSON.hexDigit(value) == byte ? value : nil
        }
        guard bytes.count - index >= 4, bytes[index] == UInt8(ascii: "0"), bytes[index + 1] == UInt8(ascii: "0"),
            let high = digit(bytes[index + 2]), high < 2, let low = digit(bytes[index + 3])
        else { throw fail("not canonical: \\u escape of a character that needs none") }
        let byte = high << 4 | low
        if byte == 0x08 || byte == 0x09 || byte == 0x0A || byte == 0x0C || byte == 0x0D {
            throw fail("not canonical: \\u escape of a character with a short escape")
        }
        index += 4
        return byte
    }

    mutating func parseHex4() throws(JSONParseError) -> UInt32 {
        guard bytes.count - index >= 4 else { throw fail("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[index]
            let digit: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw fail("invalid \\u escape")
            }
            value = value << 4 | digit
            index += 1
        }
        return value
    }

    /// As `JSON.controlBytes`, the bytes that are `"`, `\\`, below 0x20 or above 0x7F: a quote or backslash is a
    /// byte that XOR with it makes zero, that is, below 0x01.
    @inline(__always) static func specialBytes(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        func zeroBytes(_ v: UInt64) -> UInt64 { (v &- ones) & ~v & highs }
        return (word & highs) | JSON.controlBytes(word) | zeroBytes(word ^ (ones &* 0x22))
            | zeroBytes(word ^ (ones &* 0x5C))
    }

    mutating func parseString() throws(JSONParseError) -> String {
        index += 1  // opening quote
        let start = index
        lastStringEscaped = false
        lastStringASCII = false
        // Fast path: no escapes. Validate UTF-8 on the way, since String(decoding:) would repair it silently; ASCII
        // needs no validating, and String(validating:) is a generic call that costs more than the rest of the parse.
        var ascii = true
        while index < bytes.count {
            // Eight bytes at a time up to the first that ends the fast path or needs a look: a quote, a backslash,
            // a control character or non-ASCII (a pulled edit's strings are a quarter of its bytes; this loop
            // was a sixth of decoding one, most of it spent byte by byte).
            if index + 8 <= bytes.count {
                let special = JSONParser.specialBytes(
                    UnsafeRawPointer(bytes.baseAddress! + index).loadUnaligned(as: UInt64.self))
                if special == 0 {
                    index += 8
                    continue
                }
                index += special.trailingZeroBitCount >> 3
            }
            let c = bytes[index]
            if c == UInt8(ascii: "\"") {
                let slice = UnsafeBufferPointer(rebasing: bytes[start..<index])
                let s: String
                if ascii {
                    s = String(decoding: slice, as: UTF8.self)
                    lastStringASCII = true
                } else {
                    guard let valid = String(validating: slice, as: UTF8.self) else {
                        index = start
                        throw fail("invalid UTF-8 in string")
                    }
                    s = valid
                }
                index += 1
                return s
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw fail("control character in string") }
            if c >= 0x80 { ascii = false }
            index += 1
        }
        lastStringEscaped = true
        var out: [UInt8] = Array(bytes[start..<index])
        while index < bytes.count {
            let c = bytes[index]
            switch c {
            case UInt8(ascii: "\""):
                index += 1
                guard let s = String(validating: out, as: UTF8.self) else {
                    throw JSONParseError(offset: start, reason: "invalid UTF-8 in string")
                }
                return s
            case UInt8(ascii: "\\"):
                index += 1
                guard index < bytes.count else { throw fail("unexpected end of JSON") }
                let e = bytes[index]
                index += 1
                switch e {
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "/"):
                    if canonical { throw fail("not canonical: escaped '/'") }
                    out.append(0x2F)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    if canonical {
                        out.append(try canonicalControlEscape())
                        continue
                    }
                    var scalar = try parseHex4()
                    if (0xD800...0xDBFF).contains(scalar) {
                        guard bytes.count - index >= 6, bytes[index] == UInt8(ascii: "\\"),
                            bytes[index + 1] == UInt8(ascii: "u")
                        else { throw fail("unpaired surrogate") }
                        index += 2
                        let low = try parseHex4()
                        guard (0xDC00...0xDFFF).contains(low) else { throw fail("unpaired surrogate") }
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00...0xDFFF).contains(scalar) {
                        throw fail("unpaired surrogate")
                    }
                    guard let u = Unicode.Scalar(scalar) else { throw fail("invalid \\u escape") }
                    out.append(contentsOf: Array(String(Character(u)).utf8))
                default: throw fail("invalid escape")
                }
            default:
                if c < 0x20 { throw fail("control character in string") }
                out.append(c)
                index += 1
            }
        }
        throw fail("unterminated string")
    }
}
