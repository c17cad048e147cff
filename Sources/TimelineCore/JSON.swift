/// A JSON value restricted to what the timeline needs: integers only (no floating point), so that
/// every value has exactly one canonical encoding and hashes agree on every machine.
public enum JSON: Sendable, Hashable {
    case null
    case bool(Bool)
    case int(Int64)
    case string(String)
    case array([JSON])
    case object([String: JSON])
}

extension JSON {
    public subscript(key: String) -> JSON? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var intValue: Int64? {
        if case .int(let i) = self { return i }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    public var arrayValue: [JSON]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var objectValue: [String: JSON]? {
        if case .object(let o) = self { return o }
        return nil
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }
}

extension JSON: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral
{
    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: JSON...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSON)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
    public init(nilLiteral: ()) { self = .null }
}

// MARK: - Canonical encoding

extension JSON {
    /// The canonical encoding: no insignificant white space, object keys sorted by their UTF-8 bytes,
    /// strings escaped minimally (`"`, `\`, and control characters; `\n`, `\r`, `\t`, `\b`, `\f` in short form,
    /// others as `\u00XX` in lower-case hex), everything else as raw UTF-8. This is what hashes are taken over.
    public var canonicalBytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(into: &out)
        return out
    }

    /// The canonical encoding as a string (for the wire and for files).
    public var canonicalString: String {
        String(decoding: canonicalBytes, as: UTF8.self)
    }

    public func write(into out: inout [UInt8]) {
        switch self {
        // Literals and digits are written in place: an array literal or a String per value is an allocation, and
        // every edit's hashed body is written by this.
        case .null: JSON.writeLiteral("null", into: &out)
        case .bool(let b): JSON.writeLiteral(b ? "true" : "false", into: &out)
        case .int(let i): JSON.writeInt(i, into: &out)
        case .string(let s): JSON.writeString(s, into: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (index, item) in items.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                item.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            // The members are sorted as pairs: sorting the keys and looking each up again hashed every key twice.
            for (index, member) in members.sorted(by: { JSON.utf8Less($0.key, $1.key) }).enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                JSON.writeString(member.key, into: &out)
                out.append(UInt8(ascii: ":"))
                member.value.write(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// Writes an object given as key-value pairs (keys unique) in canonical order, without building a
    /// dictionary: the hot path for edits, which are hashed and stored one by one.
    public static func writeObject(_ pairs: [(String, JSON)], into out: inout [UInt8]) {
        let sorted = pairs.sorted { utf8Less($0.0, $1.0) }
        out.append(UInt8(ascii: "{"))
        for (index, pair) in sorted.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            writeString(pair.0, into: &out)
            out.append(UInt8(ascii: ":"))
            pair.1.write(into: &out)
        }
        out.append(UInt8(ascii: "}"))
    }

    static func writeLiteral(_ literal: StaticString, into out: inout [UInt8]) {
        literal.withUTF8Buffer { out.append(contentsOf: $0) }
    }

    /// A literal (a key with its punctuation) then a string value: the encoders that write members in key order.
    static func writeMember(_ literal: StaticString, _ value: String, into out: inout [UInt8]) {
        writeLiteral(literal, into: &out)
        writeString(value, into: &out)
    }

    /// Strings separated by commas, without the brackets.
    static func writeStringList(_ items: [String], into out: inout [UInt8]) {
        for (index, item) in items.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            writeString(item, into: &out)
        }
    }

    static func writeInt(_ value: Int64, into out: inout [UInt8]) {
        if value < 0 { out.append(UInt8(ascii: "-")) }
        var magnitude = value.magnitude
        if magnitude < 10 { return out.append(UInt8(ascii: "0") + UInt8(magnitude)) }
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var start = 20
            while magnitude > 0 {
                start -= 1
                digits[start] = UInt8(ascii: "0") + UInt8(magnitude % 10)
                magnitude /= 10
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: digits[start..<20]))
        }
    }

    /// Byte order of the UTF-8 encodings. Compared in place where the bytes are contiguous (native strings, small
    /// ones included): the generic sequence comparison costs more than writing the key.
    static func utf8Less(_ a: String, _ b: String) -> Bool {
        let inPlace = a.utf8.withContiguousStorageIfAvailable { pa in
            b.utf8.withContiguousStorageIfAvailable { pb in bytesLess(pa, pb) }
        }
        if let inPlace, let less = inPlace { return less }
        return a.utf8.lexicographicallyPrecedes(b.utf8)
    }

    static func bytesLess(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
        let n = Swift.min(a.count, b.count)
        var i = 0
        while i < n {
            if a[i] != b[i] { return a[i] < b[i] }
            i += 1
        }
        return a.count < b.count
    }

    /// Whether two object keys are equal, their lengths compared first: keys are short, and String's `==` goes out
    /// of line for every pair of unequal ones (a sixth of decoding a pulled edit went there).
    @inline(__always) static func sameKey(_ a: String, _ b: String) -> Bool { a.utf8.count == b.utf8.count && a == b }

    /// The high bit of each of eight bytes (the first byte lowest) that is below 0x20, except that a byte above a
    /// flagged one may be flagged wrongly: the borrow errs only upwards, so the lowest flag, and whether there is
    /// any, are exact. Strings and text are scanned eight bytes at a time with it.
    @inline(__always) static func controlBytes(_ word: UInt64) -> UInt64 {
        (word &- 0x2020_2020_2020_2020) & ~word & 0x8080_8080_8080_8080
    }

    /// The lower-case hex digit of a value below 16 (by arithmetic: a global table costs a lazy-initialization
    /// check on every access).
    @inline(__always) static func hexDigit(_ nibble: UInt8) -> UInt8 { nibble < 10 ? 0x30 + nibble : 0x57 + nibble }

    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        // Fast path: most strings need no escaping and are copied in one go.
        let plain = s.utf8.withContiguousStorageIfAvailable { buffer -> Bool in
            guard !buffer.contains(where: { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }) else {
                return false
            }
            out.append(contentsOf: buffer)
            return true
        }
        if plain == true {
            out.append(UInt8(ascii: "\""))
            return
        }
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: [0x5C, 0x22])
            case UInt8(ascii: "\\"): out.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: out.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: out.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: out.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0x08: out.append(contentsOf: [0x5C, UInt8(ascii: "b")])
            case 0x0C: out.append(contentsOf: [0x5C, UInt8(ascii: "f")])
            case 0x00..<0x20:
                out.append(contentsOf: [0x5C, UInt8(ascii: "u"), 0x30, 0x30])
                out.append(hexDigit(byte >> 4))
                out.append(hexDigit(byte & 0x0F))
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

// MARK: - Parsing

/// Why a JSON text was refused, with the byte offset where the problem was found.
public struct JSONParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public var offset: Int
    public var reason: String
    public var description: String { "\(reason) at byte \(offset)" }
}

extension JSON {
    /// Limits that keep a hostile document from exhausting the stack or memory.
    public struct ParseLimits: Sendable {
        /// Deepest nesting of arrays and objects accepted.
        public var maxDepth: Int = 32
        public init(maxDepth: Int = 32) { self.maxDepth = maxDepth }
    }

    /// Parses one complete JSON text. Floating-point numbers, duplicate keys, invalid UTF-8 and
    /// trailing bytes are refused; integers must fit in 64 bits.
    public init(parsing text: String, limits: ParseLimits = ParseLimits()) throws(JSONParseError) {
        var utf8 = text
        let result = utf8.withUTF8 { buffer in
            Result { () throws(JSONParseError) in try JSON(parsing: buffer, limits: limits) }
        }
        self = try result.get()
    }

    public init(parsingBytes bytes: [UInt8], limits: ParseLimits = ParseLimits()) throws(JSONParseError) {
        let result = bytes.withUnsafeBufferPointer { buffer in
            Result { () throws(JSONParseError) in try JSON(parsing: buffer, limits: limits) }
        }
        self = try result.get()
    }

    public init(parsing buffer: UnsafeBufferPointer<UInt8>, limits: ParseLimits = ParseLimits())
        throws(JSONParseError)
    {
        var parser = JSONParser(bytes: buffer, maxDepth: limits.maxDepth)
        self = try parser.parseDocument()
    }

    /// Parses a text that must already be in canonical form (`canonicalBytes`): no white space, object keys in
    /// strictly increasing UTF-8 order, strings escaped minimally with lower-case hex, no `-0`. What it accepts
    /// encodes back to exactly the bytes it was given, so a canonical line can be hashed as it came instead of
    /// being encoded again. Also returns where the top-level member named `excising` lies, with the comma that
    /// separates it from its neighbour: the bytes without that range are the canonical object without the member.
    public static func parseCanonical(
        _ buffer: UnsafeBufferPointer<UInt8>, excising key: String, limits: ParseLimits = ParseLimits()
    ) throws(JSONParseError) -> (value: JSON, excised: Range<Int>?) {
        var parser = JSONParser(bytes: buffer, maxDepth: limits.maxDepth, canonical: true)
        parser.excisedKey = key
        let value = try parser.parseDocument()
        return (value, parser.excised)
    }

    /// `parseCanonical` for a text that should be an object, whose top-level members come back in their (byte)
    /// order rather than as a dictionary; nil when the text is canonical but not an object.
    public static func parseCanonicalMembers(
        _ buffer: UnsafeBufferPointer<UInt8>, excising key: String, limits: ParseLimits = ParseLimits()
    ) throws(JSONParseError) -> (members: [(key: String, value: JSON)], excised: Range<Int>?)? {
        var parser = JSONParser(bytes: buffer, maxDepth: limits.maxDepth, canonical: true)
        guard buffer.first == UInt8(ascii: "{") else {
            _ = try parser.parseDocument()
            return nil
        }
        parser.excisedKey = key
        var members = OrderedMembers()
        try parser.parseMembers(depth: 1, into: &members)
        if parser.index != buffer.count { throw parser.fail("not canonical: bytes after the JSON value") }
        return (members.pairs, parser.excised)
    }
}

/// A JSON object's top-level members in the order written (`JSON.parseObject`). Edits and proposals are read by
/// a dozen known keys, and comparing short keys costs less than hashing each into a dictionary: hashing had been a
/// tenth of decoding a `BATCH` line.
public struct JSONMembers: Sendable {
    public let pairs: [(key: String, value: JSON)]

    /// The value of `key`, compared as `JSON.sameKey` does (keys that differ only by canonical equivalence are
    /// different here; none of the keys the timeline reads has such a twin).
    public subscript(key: String) -> JSON? {
        for pair in pairs where JSON.sameKey(pair.key, key) { return pair.value }
        return nil
    }
}

extension JSON {
    /// Parses a text that should hold one JSON object, and gives its top-level members in their order; nil when
    /// the text is JSON but not an object. Refuses exactly what `init(parsing:)` refuses, with the same errors
    /// (a duplicate key included).
    public static func parseObject(_ text: String, limits: ParseLimits = ParseLimits()) throws(JSONParseError)
        -> JSONMembers?
    {
        var utf8 = text
        let result = utf8.withUTF8 { buffer in
            Result { () throws(JSONParseError) -> JSONMembers? in
                var parser = JSONParser(bytes: buffer, maxDepth: limits.maxDepth)
                parser.skipWhitespace()
                guard parser.index < buffer.count, buffer[parser.index] == UInt8(ascii: "{") else {
                    _ = try parser.parseDocument()
                    return nil
                }
                var members = WrittenMembers()
                try parser.parseMembers(depth: 1, into: &members)
                parser.skipWhitespace()
                if parser.index != buffer.count { throw parser.fail("unexpected bytes after the JSON value") }
                return JSONMembers(pairs: members.pairs)
            }
        }
        return try result.get()
    }
}

/// An object's members in the order written, refusing a duplicate key as a dictionary does: by String equality,
/// which equates canonically equivalent keys ("K" and KELVIN SIGN). Keys are compared one by one (a handful for an
/// edit); an object with many members gets a dictionary of its keys, so that a hostile line is not quadratic.
struct WrittenMembers: MemberSink {
    var pairs: [(key: String, value: JSON)] = []
    /// Whether every key so far was plain ASCII: then an ASCII key is a duplicate only of equal bytes.
    var allASCII = true
    var index: [String: Int]?

    init() { pairs.reserveCapacity(12) }

    mutating func add(_ key: String, _ value: JSON, keyIsASCII: Bool) -> Bool {
        if index != nil {
            guard index!.updateValue(pairs.count, forKey: key) == nil else { return false }
        } else if keyIsASCII && allASCII {
            if pairs.contains(where: { JSON.sameKey($0.key, key) }) { return false }
        } else {
            allASCII = false
            if pairs.contains(where: { $0.key == key }) { return false }
        }
        pairs.append((key, value))
        if index == nil, pairs.count == 32 {
            index = Dictionary(pairs.indices.map { (pairs[$0].key, $0) }, uniquingKeysWith: { a, _ in a })
        }
        return true
    }

    var count: Int { pairs.count }
}

/// Where `JSONParser.parseMembers` puts an object's members: a dictionary (`JSON.object`), or pairs in their order.
protocol MemberSink {
    /// Adds a member; false when the key is already there. `keyIsASCII` may be false for an ASCII key.
    mutating func add(_ key: String, _ value: JSON, keyIsASCII: Bool) -> Bool
    var count: Int { get }
}

extension Dictionary: MemberSink where Key == String, Value == JSON {
    mutating func add(_ key: String, _ value: JSON, keyIsASCII: Bool) -> Bool {
        updateValue(value, forKey: key) == nil
    }
}

/// A canonical object's members in their (strictly increasing) key order.
struct OrderedMembers: MemberSink {
    var pairs: [(key: String, value: JSON)] = []

    init() { pairs.reserveCapacity(12) }

    mutating func add(_ key: String, _ value: JSON, keyIsASCII: Bool) -> Bool {
        // Keys in strict byte order differ as bytes; Swift's String equality (as a dictionary's) also equates
        // canonically equivalent non-ASCII keys, which a dictionary refuses as duplicates: so is done here. The
        // parser says whether the key was ASCII (it read every byte): asking the key again cost 7 % of a decode.
        if !keyIsASCII, pairs.contains(where: { $0.key == key }) { return false }
        pairs.append((key, value))
        return true
    }

    var count: Int { pairs.count }
}

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
