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
