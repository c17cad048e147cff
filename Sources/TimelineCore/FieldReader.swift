// MARK: - Reading fields

/// Reads typed fields out of a JSON object and remembers which were read, so that unknown fields
/// (usually typos) are refused instead of being silently ignored.
struct FieldReader {
    /// An object's members: a parsed JSON object, or a top level's pairs in their order (`JSON.parseObject`,
    /// `JSON.parseCanonicalMembers`), where a dozen comparisons of short keys cost less than hashing each.
    enum Members {
        case dictionary([String: JSON])
        case pairs([(key: String, value: JSON)])
    }
    let members: Members
    let context: String
    /// Dictionary members: the keys asked for, and how many of them the object has (a handful of literals, where
    /// a Set's hashing cost more than the rest of reading an edit).
    var seen: [String] = []
    var seenPresent = 0
    /// Pairs: bit i is set once member i was read or consumed (at most 64 members; more are read as a
    /// dictionary).
    var read: UInt64 = 0

    init(_ json: JSON, context: String = "") {
        members = .dictionary(json.objectValue ?? [:])
        self.context = context
    }

    /// The pairs' keys must be distinct (as the parser leaves them).
    init(pairs: [(key: String, value: JSON)]) {
        members = pairs.count <= 64 ? .pairs(pairs) : .dictionary(Dictionary(pairs, uniquingKeysWith: { a, _ in a }))
        context = ""
    }

    var count: Int {
        switch members {
        case .dictionary(let d): d.count
        case .pairs(let pairs): pairs.count
        }
    }

    func name(_ key: String) -> String { context.isEmpty ? "\"\(key)\"" : "\"\(context).\(key)\"" }

    func bad(_ key: String, _ what: String) -> TimelineError {
        TimelineError(.badField, "field \(name(key)) \(what)")
    }

    /// Accepts `key` without reading its value. For dictionary members it is not looked up: when the fields read
    /// account for the whole object, rejectUnknown needs no more.
    mutating func consume(_ key: String) {
        switch members {
        case .dictionary: if !seen.contains(where: { JSON.sameKey($0, key) }) { seen.append(key) }
        case .pairs: _ = lookup(key)
        }
    }

    mutating func value(_ key: String) -> JSON? {
        guard let v = lookup(key), !v.isNull else { return nil }
        return v
    }

    private mutating func lookup(_ key: String) -> JSON? {
        switch members {
        case .dictionary(let d):
            let v = d[key]
            if !seen.contains(where: { JSON.sameKey($0, key) }) {
                seen.append(key)
                if v != nil { seenPresent += 1 }
            }
            return v
        case .pairs(let pairs):
            for i in pairs.indices where JSON.sameKey(pairs[i].key, key) {
                read |= 1 << UInt64(i)
                return pairs[i].value
            }
            return nil
        }
    }

    func rejectUnknown() throws(TimelineError) {
        let unknown: String?
        switch members {
        case .dictionary(let d):
            // Only when the fields read do not account for the object are its keys compared with them.
            guard seenPresent < d.count else { return }
            unknown = d.keys.filter { key in !seen.contains { JSON.sameKey($0, key) } }.min()
        case .pairs(let pairs):
            guard read.nonzeroBitCount < pairs.count else { return }
            unknown = pairs.indices.filter { read & (1 << UInt64($0)) == 0 }.map { pairs[$0].key }.min()
        }
        if let unknown { throw TimelineError(.badField, "unknown field \(name(unknown))") }
    }

    static func validText(_ s: String) -> Bool {
        // NUL and other C0 controls (but tab and newline) have no place in timeline text. In UTF-8 they are single
        // bytes that never occur inside a multi-byte sequence, so the bytes tell. Read in place: walking the
        // UTF8View byte by byte cost a tenth of decoding a pulled edit. (`withUTF8` copies only a bridged string.)
        var copy = s
        return copy.withUTF8 { bytes in
            // Eight bytes at a time up to the first word holding any byte below 0x20 (then byte by byte).
            var start = 0
            while start + 8 <= bytes.count {
                let word = UnsafeRawPointer(bytes.baseAddress! + start).loadUnaligned(as: UInt64.self)
                if JSON.controlBytes(word) != 0 { break }
                start += 8
            }
            for byte in bytes[start...] where byte < 0x20 && byte != 0x0A && byte != 0x09 && byte != 0x0D {
                return false
            }
            return true
        }
    }

    mutating func optionalString(_ key: String, max: Int, nonEmpty: Bool = false) throws(TimelineError) -> String? {
        guard let v = value(key) else { return nil }
        guard let s = v.stringValue else { throw bad(key, "must be a string") }
        guard s.utf8.count <= max else { throw bad(key, "is longer than \(max) bytes") }
        guard FieldReader.validText(s) else { throw bad(key, "contains control characters") }
        if nonEmpty && TextLines.isBlank(s) { throw bad(key, "must not be empty") }
        return s
    }

    mutating func string(_ key: String, max: Int, nonEmpty: Bool = false) throws(TimelineError) -> String {
        guard let s = try optionalString(key, max: max, nonEmpty: nonEmpty) else { throw bad(key, "is required") }
        return s
    }

    mutating func optionalInt(_ key: String, min: Int64) throws(TimelineError) -> Int64? {
        guard let v = value(key) else { return nil }
        guard let i = v.intValue else { throw bad(key, "must be an integer") }
        guard i >= min else { throw bad(key, "must be at least \(min)") }
        return i
    }

    mutating func int(_ key: String, min: Int64) throws(TimelineError) -> Int64 {
        guard let i = try optionalInt(key, min: min) else { throw bad(key, "is required") }
        return i
    }

    mutating func object(_ key: String, required: Bool) throws(TimelineError) -> JSON? {
        guard let v = value(key) else {
            if required { throw bad(key, "is required") }
            return nil
        }
        guard case .object = v else { throw bad(key, "must be an object") }
        return v
    }

    mutating func eventID(_ key: String) throws(TimelineError) -> EventID {
        let s = try string(key, max: 64)
        guard let id = EventID(s) else { throw bad(key, "is not an event ID (26 characters of Crockford base32)") }
        return id
    }

    mutating func annotationID(_ key: String, required: Bool) throws(TimelineError) -> AnnotationID? {
        guard let s = try optionalString(key, max: 64) else {
            if required { throw bad(key, "is required") }
            return nil
        }
        guard let id = AnnotationID(s) else {
            throw bad(key, "is not an annotation ID (26 characters of Crockford base32)")
        }
        return id
    }

    mutating func optionalDate(_ key: String) throws(TimelineError) -> EventDate? {
        guard let v = value(key) else { return nil }
        // A proposal may give the date as text (the server parses it) or as the full object (a log or export).
        if let text = v.stringValue {
            guard !text.isEmpty, text.utf8.count <= 200, FieldReader.validText(text) else {
                throw bad(key, "must be 1 to 200 bytes of text")
            }
            return EventDate(parsing: text)
        }
        var d = FieldReader(v, context: key)
        guard case .object = v else { throw bad(key, "must be a string or a date object") }
        let text = try d.string("text", max: 200, nonEmpty: true)
        let precisionText = try d.string("precision", max: 16)
        guard let precision = DatePrecision(rawValue: precisionText) else {
            throw bad(key, "has an unknown precision \"\(precisionText)\"")
        }
        let start = try d.optionalString("start", max: 10).map { s throws(TimelineError) -> CivilDay in
            guard let day = CivilDay(iso: s) else { throw bad(key, "has a start that is not YYYY-MM-DD") }
            return day
        }
        let end = try d.optionalString("end", max: 10).map { s throws(TimelineError) -> CivilDay in
            guard let day = CivilDay(iso: s) else { throw bad(key, "has an end that is not YYYY-MM-DD") }
            return day
        }
        try d.rejectUnknown()
        if (start == nil) != (end == nil) || (precision == .unknown) != (start == nil) {
            throw bad(key, "must have both start and end, or neither with precision \"unknown\"")
        }
        if let start, let end, end < start { throw bad(key, "ends before it starts") }
        return EventDate(text: text, start: start, end: end, precision: precision)
    }

    mutating func date(_ key: String) throws(TimelineError) -> EventDate {
        guard let d = try optionalDate(key) else { throw bad(key, "is required") }
        return d
    }

    mutating func optionalTags(_ key: String) throws(TimelineError) -> [String]? {
        guard let v = value(key) else { return nil }
        return try FieldReader.tags(v, name: name(key))
    }

    static func tags(_ v: JSON, name: String) throws(TimelineError) -> [String] {
        guard let items = v.arrayValue else { throw TimelineError(.badField, "field \(name) must be an array") }
        guard items.count <= FieldLimits.tagCount else {
            throw TimelineError(.badField, "field \(name) has more than \(FieldLimits.tagCount) tags")
        }
        var out: [String] = []
        for item in items {
            guard let s = item.stringValue, Tags.isValid(s) else {
                throw TimelineError(
                    .badField,
                    "field \(name) holds an invalid tag: tags are 1 to \(FieldLimits.tag) bytes without spaces")
            }
            out.append(s)
        }
        return out
    }

    mutating func tagDelta(_ key: String) throws(TimelineError) -> (add: [String], remove: [String]) {
        guard let v = value(key) else { return ([], []) }
        var d = FieldReader(v, context: key)
        guard case .object = v else { throw bad(key, "must be an object with \"add\" and \"remove\"") }
        let add = try d.optionalTags("add") ?? []
        let remove = try d.optionalTags("remove") ?? []
        try d.rejectUnknown()
        return (add, remove)
    }

    mutating func optionalReferences(_ key: String) throws(TimelineError) -> [Reference]? {
        guard let v = value(key) else { return nil }
        guard let items = v.arrayValue, items.count <= FieldLimits.references else {
            throw bad(key, "must be an array of at most \(FieldLimits.references) references")
        }
        var out: [Reference] = []
        for (i, item) in items.enumerated() {
            var r = FieldReader(item, context: "\(key)[\(i)]")
            guard case .object = item else { throw bad(key, "must hold objects") }
            let number = try r.int("number", min: 0)
            guard number <= 1_000_000 else { throw bad(key, "has a reference number above 1000000") }
            let text = try r.optionalString("text", max: FieldLimits.text) ?? ""
            var urls: [String] = []
            if let u = r.value("urls") {
                guard let list = u.arrayValue, list.count <= FieldLimits.urlsPerReference else {
                    throw bad(key, "has \"urls\" that is not an array of at most \(FieldLimits.urlsPerReference)")
                }
                for url in list {
                    guard let s = url.stringValue, !s.isEmpty, s.utf8.count <= 2048, FieldReader.validText(s) else {
                        throw bad(key, "has a URL that is not 1 to 2048 bytes of text")
                    }
                    urls.append(s)
                }
            }
            try r.rejectUnknown()
            out.append(Reference(number: Int(number), text: text, urls: urls))
        }
        return out
    }
}

extension Tags {
    /// 1 to 64 bytes, no white space or control characters: a tag is a word people type.
    public static func isValid(_ tag: String) -> Bool {
        guard !tag.isEmpty, tag.utf8.count <= FieldLimits.tag else { return false }
        // An ASCII tag (nearly all) is judged by its bytes: printable and not a space. Unicode's properties cost a
        // table lookup per scalar.
        if tag.utf8.allSatisfy({ $0 < 0x80 }) { return tag.utf8.allSatisfy { $0 > 0x20 && $0 != 0x7F } }
        return !tag.unicodeScalars.contains { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F }
    }
}
