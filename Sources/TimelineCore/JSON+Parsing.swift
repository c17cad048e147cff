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
