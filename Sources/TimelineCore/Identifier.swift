import CTimelineShims

/// A ULID: 48 bits of milliseconds since the Unix epoch then 80 random bits, written as 26 characters of
/// Crockford base32. Any office or offline client can mint one without coordination, and they sort by time.
public struct ULID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Always 26 upper-case Crockford base32 characters.
    public let string: String

    /// Parses a ULID, accepting lower case and Crockford's aliases (I and L for 1, O for 0).
    public init?(_ text: String) {
        guard text.utf8.count == 26 else { return nil }
        // Nearly every ULID read is already canonical (it came from a log or from `generate`): keep its string.
        // Read in place: walking the UTF8View byte by byte cost about as much as the checks.
        var copy = text
        let checked = copy.withUTF8 { bytes -> Bool? in
            // Canonical text is checked with two bit masks; only other text is decoded digit by digit.
            if bytes[0] <= UInt8(ascii: "7"), bytes.allSatisfy(ULID.isCanonicalDigit) { return true }
            var canonical = true
            for (index, byte) in bytes.enumerated() {
                guard let value = ULID.decodeDigit(byte) else { return nil }
                // The first character carries only 3 bits (128 bits in 26 characters): above 7 overflows.
                if index == 0 && value > 7 { return nil }
                if ULID.encodeDigit(value) != byte { canonical = false }
            }
            return canonical
        }
        guard let canonical = checked else { return nil }
        if canonical {
            string = text
        } else {
            string = String(decoding: text.utf8.map { ULID.encodeDigit(ULID.decodeDigit($0)!) }, as: UTF8.self)
        }
    }

    /// Whether `byte` is a digit of the canonical alphabet: 0-9 and the capitals but I, L, O and U.
    @inline(__always) static func isCanonicalDigit(_ byte: UInt8) -> Bool {
        switch byte {
        case 0..<64: (0x03FF_0000_0000_0000 as UInt64) >> byte & 1 == 1
        case 64..<128: (0x07DF_6DFE as UInt64) >> (byte - 64) & 1 == 1
        default: false
        }
    }

    /// The digit of a value below 32, read from the alphabet literal's bytes: no lazy initialization as a global
    /// table has, and no branches for random digits to mispredict (a switch cost a quarter of minting an ID).
    static func encodeDigit(_ value: UInt8) -> UInt8 {
        let alphabet: StaticString = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
        return alphabet.utf8Start[Int(value & 31)]
    }

    /// Builds a ULID from its 16 bytes (big-endian).
    public init(bytes: [UInt8]) {
        precondition(bytes.count == 16, "a ULID has 16 bytes")
        var high: UInt64 = 0
        var low: UInt64 = 0
        for i in 0..<8 {
            high = high << 8 | UInt64(bytes[i])
            low = low << 8 | UInt64(bytes[8 + i])
        }
        self.init(high: high, low: low)
    }

    /// The 128 bits as 26 five-bit groups, most significant first (the first group holds 3 bits). Written in
    /// place: one is minted for every annotation added without an ID, by the client checking a batch and again
    /// by the server, and the bit-by-bit version with its arrays cost a tenth of the client's check.
    init(high: UInt64, low: UInt64) {
        string = String(unsafeUninitializedCapacity: 26) { out in
            for i in 0..<26 {
                let shift = 5 * (25 - i)
                let group: UInt64
                if shift >= 64 {
                    group = high >> UInt64(shift - 64)
                } else if shift > 59 {
                    group = low >> UInt64(shift) | high << UInt64(64 - shift)
                } else {
                    group = low >> UInt64(shift)
                }
                out[i] = ULID.encodeDigit(UInt8(truncatingIfNeeded: group))
            }
            return 26
        }
    }

    /// A ULID for the given time with the given 10 random bytes.
    public init(milliseconds: UInt64, randomness: [UInt8]) {
        precondition(randomness.count == 10, "a ULID has 80 random bits")
        self = randomness.withUnsafeBufferPointer { ULID(milliseconds: milliseconds, randomness: $0) }
    }

    init(milliseconds: UInt64, randomness r: UnsafeBufferPointer<UInt8>) {
        let high = (milliseconds & 0xFFFF_FFFF_FFFF) << 16 | UInt64(r[0]) << 8 | UInt64(r[1])
        var low: UInt64 = 0
        for i in 2..<10 { low = low << 8 | UInt64(r[i]) }
        self.init(high: high, low: low)
    }

    /// A new ULID for the given time, with randomness from OpenSSL's DRBG.
    public static func generate(at time: Timestamp) -> ULID {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 10) { random in
            let ok = timeline_random_id_bytes(random.baseAddress, 10)
            precondition(ok == 1, "OpenSSL's random generator failed")
            return ULID(milliseconds: UInt64(max(0, time.milliseconds)), randomness: UnsafeBufferPointer(random))
        }
    }

    /// A ULID derived from a seed: the same seed always gives the same ID. Used where a build must be
    /// reproducible (the bundled sample timeline), never for IDs that people mint.
    public static func derived(at time: Timestamp, seed: String) -> ULID {
        let digest = SHA256.hash(Array(seed.utf8))
        return ULID(milliseconds: UInt64(max(0, time.milliseconds)), randomness: Array(digest.bytes.prefix(10)))
    }

    static func decodeDigit(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "z"): return decodeDigit(byte - 32)
        case UInt8(ascii: "O"): return 0
        case UInt8(ascii: "I"), UInt8(ascii: "L"): return 1
        case UInt8(ascii: "U"): return nil
        case UInt8(ascii: "A")...UInt8(ascii: "H"): return byte - UInt8(ascii: "A") + 10
        case UInt8(ascii: "J")...UInt8(ascii: "K"): return byte - UInt8(ascii: "J") + 18
        case UInt8(ascii: "M")...UInt8(ascii: "N"): return byte - UInt8(ascii: "M") + 20
        case UInt8(ascii: "P")...UInt8(ascii: "T"): return byte - UInt8(ascii: "P") + 22
        case UInt8(ascii: "V")...UInt8(ascii: "Z"): return byte - UInt8(ascii: "V") + 27
        default: return nil
        }
    }

    public var description: String { string }
    public static func < (lhs: ULID, rhs: ULID) -> Bool { lhs.string < rhs.string }
}

/// A ULID with a meaning: events and annotations get distinct types so that one cannot be passed for the other.
public protocol ULIDIdentifier: Hashable, Comparable, Sendable, CustomStringConvertible {
    var ulid: ULID { get }
    init(_ ulid: ULID)
}

extension ULIDIdentifier {
    public init?(_ text: String) {
        guard let ulid = ULID(text) else { return nil }
        self.init(ulid)
    }
    public var description: String { ulid.string }
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.ulid < rhs.ulid }
}

/// Identifies an event for its whole life, across every office and replica.
public struct EventID: ULIDIdentifier {
    public let ulid: ULID
    public init(_ ulid: ULID) { self.ulid = ulid }
}

/// Identifies an annotation; keyed by its own ID, concurrent annotations never collide.
public struct AnnotationID: ULIDIdentifier {
    public let ulid: ULID
    public init(_ ulid: ULID) { self.ulid = ulid }
}

/// The short form of an ID, for people: the start of its random part, long enough to name one object.
///
/// A ULID's first 10 characters are its time in milliseconds, so IDs minted together (all of an imported
/// document's events, a burst of annotations) share them, and prefixes of the whole ID must grow past them before
/// they tell two IDs apart. The 16 characters after them are random: their first few already do. A short form is
/// therefore the first `minimum` or more characters of the random part, as long as it takes to be unique among
/// every event and annotation a replica holds (not only among those printed beside it), so that whatever filter
/// printed it, it names the same one object when pasted back. The whole ID, and any unique prefix of it, are
/// accepted wherever a short form is.
public enum ShortID {
    /// The fewest characters a short form has, as git abbreviates hashes to 7: 35 random bits, so that short
    /// forms seldom need to grow as a timeline does.
    public static let minimum = 7

    /// Where the random part starts: characters 0–9 hold the 48-bit time.
    public static let timeCharacters = 10

    /// The random part of a canonical 26-character ID.
    public static func tail(of id: String) -> Substring {
        id.dropFirst(timeCharacters)
    }

    /// Text typed as (part of) an ID in canonical form: upper case, with Crockford's aliases (I and L for 1, O
    /// for 0) read as their digits, surrounding whitespace ignored; nil when it holds a character no ID has.
    public static func normalize(_ text: String) -> String? {
        let bytes = Array(text.utf8)
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }
        guard let first = bytes.firstIndex(where: { !isSpace($0) }), let last = bytes.lastIndex(where: { !isSpace($0) })
        else { return nil }
        let trimmed = bytes[first...last]
        guard trimmed.count <= 26 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(trimmed.count)
        for byte in trimmed {
            guard let value = ULID.decodeDigit(byte) else { return nil }
            out.append(ULID.encodeDigit(value))
        }
        return String(decoding: out, as: UTF8.self)
    }
}
