// Stored edits to wire bytes and back, without building a JSON tree: the paths PULL and replication take.
extension EditCodec {
    /// Decodes an edit stored as its canonical body plus its hash.
    /// A stored edit as the wire carries it (`json(_:)`, canonical), built from the stored canonical body by
    /// splicing `"hash":"…"` in among its top-level keys, in key order: no JSON tree is built. Nil when the body is
    /// not a canonical object of the expected shape; the caller then decodes it instead.
    public static func wireBytes(body: [UInt8], hash: Digest) -> [UInt8]? {
        body.withUnsafeBufferPointer { body in
            hash.bytes.withUnsafeBytes { wireBytes(body: body, hashBytes: $0) }
        }
    }

    /// `wireBytes(body:hash:)` over a row's columns where SQLite holds them (PULL reads thousands a page: copying
    /// each body and hash into arrays, and the hash into hex text, cost more allocations than the splice).
    /// `hashBytes` must be 32 bytes.
    public static func wireBytes(body: UnsafeBufferPointer<UInt8>, hashBytes: UnsafeRawBufferPointer) -> [UInt8]? {
        precondition(hashBytes.count == 32, "a hash is 32 bytes")
        let key: StaticString = "hash"
        let keyBytes = UnsafeBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount)
        guard body.count >= 2, body.first == UInt8(ascii: "{"), body.last == UInt8(ascii: "}") else { return nil }
        var i = 1
        var insertAt = body.count - 1
        var atEnd = true
        while i < body.count - 1 {
            // A key: canonical top-level keys are plain ASCII, without escapes.
            guard body[i] == UInt8(ascii: "\"") else { return nil }
            let keyStart = i + 1
            var j = keyStart
            while j < body.count, body[j] != UInt8(ascii: "\"") {
                if body[j] == UInt8(ascii: "\\") { return nil }
                j += 1
            }
            guard j + 1 < body.count, body[j + 1] == UInt8(ascii: ":") else { return nil }
            let name = UnsafeBufferPointer(rebasing: body[keyStart..<j])
            if name.elementsEqual(keyBytes) { return nil }
            if !name.lexicographicallyPrecedes(keyBytes) {
                insertAt = i
                atEnd = false
                break
            }
            guard let end = skipValue(body, from: j + 2) else { return nil }
            if body[end] == UInt8(ascii: ",") {
                i = end + 1
            } else if end == body.count - 1 {
                break
            } else {
                return nil
            }
        }
        let head = UnsafeBufferPointer(rebasing: body[..<insertAt])
        let tail = UnsafeBufferPointer(rebasing: body[insertAt...])
        let separator = atEnd && body.count > 2 ? 1 : 0
        let member = #""hash":""#.utf8.count + 64 + 1 + (atEnd ? 0 : 1)
        return [UInt8](unsafeUninitializedCapacity: body.count + separator + member) { out, count in
            var n = 0
            func put(_ byte: UInt8) {
                out[n] = byte
                n += 1
            }
            for byte in head { put(byte) }
            if separator == 1 { put(UInt8(ascii: ",")) }
            for byte in #""hash":""#.utf8 { put(byte) }
            for byte in hashBytes {
                put(JSON.hexDigit(byte >> 4))
                put(JSON.hexDigit(byte & 0x0F))
            }
            put(UInt8(ascii: "\""))
            if !atEnd { put(UInt8(ascii: ",")) }
            for byte in tail { put(byte) }
            count = n
        }
    }

    /// The index just past the JSON value starting at `start` (at a `,` or the closing bracket); nil if it runs out.
    private static func skipValue(_ b: UnsafeBufferPointer<UInt8>, from start: Int) -> Int? {
        var i = start
        var depth = 0
        var inString = false
        while i < b.count {
            let c = b[i]
            if inString {
                if c == UInt8(ascii: "\\") {
                    i += 1
                } else if c == UInt8(ascii: "\"") {
                    inString = false
                }
            } else {
                switch c {
                case UInt8(ascii: "\""): inString = true
                case UInt8(ascii: "{"), UInt8(ascii: "["): depth += 1
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    if depth == 0 { return i }
                    depth -= 1
                case UInt8(ascii: ","):
                    if depth == 0 { return i }
                default: break
                }
            }
            i += 1
        }
        return nil
    }

    /// Decodes an edit line's JSON as the wire carries it (`PULL`, `WATCH`), which must be canonical (§6.6), and
    /// says where its `"hash"` member lies: the line without that range is the body the hash covers. A line that
    /// parses as canonical is exactly the encoding of what it decodes to, so the body is hashed as received, not
    /// encoded again (most of the cost of checking a pulled edit).
    public static func decodeWireEdit(_ bytes: UnsafeBufferPointer<UInt8>) throws(TimelineError) -> (
        edit: Edit, hashMember: Range<Int>
    ) {
        let parsed: (members: [(key: String, value: JSON)], excised: Range<Int>?)?
        do { parsed = try JSON.parseCanonicalMembers(bytes, excising: "hash") } catch {
            throw TimelineError(.badJSON, "an edit line is refused (PROTOCOL.md §6.6): \(error)")
        }
        guard let parsed else { throw TimelineError(.badJSON, "an edit must be a JSON object") }
        let edit = try decodeEdit(FieldReader(pairs: parsed.members))
        guard let member = parsed.excised else { throw TimelineError(.badField, "missing field \"hash\"") }
        return (edit, member)
    }

    /// The proposal of a stored body (an edit's canonical JSON without its hash), for a reader that needs what
    /// the edit did and not the edit: an annotation read from the log row that added it.
    public static func decodeStoredProposal(body: [UInt8]) throws(TimelineError) -> Proposal {
        let result = body.withUnsafeBufferPointer { buffer in
            Result { () throws(TimelineError) in try decodeStoredProposal(body: buffer) }
        }
        return try result.get()
    }

    /// `decodeStoredProposal(body:)` of bytes where they lie (a column SQLite holds).
    public static func decodeStoredProposal(body: UnsafeBufferPointer<UInt8>) throws(TimelineError) -> Proposal {
        let json: JSON
        do { json = try JSON(parsing: body) } catch {
            throw TimelineError(.corrupt, "a stored edit is not valid JSON: \(error)")
        }
        guard case .object = json else { throw TimelineError(.corrupt, "a stored edit is not an object") }
        var r = FieldReader(json)
        let stamps = try readStamps(&r)
        return try decodeProposal(r, author: stamps.author, time: stamps.time)
    }

    public static func decodeStored(body: [UInt8], hash: Digest) throws(TimelineError) -> Edit {
        let json: JSON
        do { json = try JSON(parsingBytes: body) } catch {
            throw TimelineError(.corrupt, "a stored edit is not valid JSON: \(error)")
        }
        guard case .object(var o) = json else { throw TimelineError(.corrupt, "a stored edit is not an object") }
        o["hash"] = .string(hash.hex)
        return try decodeEdit(.object(o))
    }
}
