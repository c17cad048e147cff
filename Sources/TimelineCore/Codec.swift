/// Sizes an edit's fields may not exceed: one edit is one line on the wire and one row in the log.
public enum FieldLimits {
    public static let title = 1_000
    public static let text = 65_536
    public static let author = 128
    public static let tag = 64
    public static let tagCount = 64
    public static let references = 1_000
    public static let urlsPerReference = 32
    public static let metaKeys = 64
}

// MARK: - Values to JSON

extension EventDate {
    public var json: JSON {
        .object([
            "text": .string(text),
            "start": start.map { .string($0.iso) } ?? .null,
            "end": end.map { .string($0.iso) } ?? .null,
            "precision": .string(precision.rawValue),
        ])
    }
}

extension Reference {
    public var json: JSON {
        .object(["number": .int(Int64(number)), "text": .string(text), "urls": .array(urls.map { .string($0) })])
    }
}

extension Event {
    /// Content only (no revision): what the state hash covers.
    public var contentJSON: JSON {
        .object([
            "id": .string(id.description),
            "date": date.json,
            "title": .string(title),
            "summary": .string(summary),
            "references": .array(references.map(\.json)),
            "tags": .array(tags.map { .string($0) }),
            "deleted": .bool(deleted),
        ])
    }

    public var json: JSON {
        guard case .object(var o) = contentJSON else { return contentJSON }
        o["revision"] = .int(revision)
        return .object(o)
    }
}

extension Annotation {
    /// The canonical encoding of `json`: its members written in key order, without building and sorting pairs
    /// of JSON values (one is encoded per annotation stored, beside the writer).
    public var canonicalBytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(160 + author.utf8.count + text.utf8.count + tags.count * 16)
        JSON.writeMember(#"{"author":"#, author, into: &out)
        JSON.writeMember(#","created":"#, created.rfc3339, into: &out)
        JSON.writeMember(#","event":"#, event.description, into: &out)
        JSON.writeMember(#","id":"#, id.description, into: &out)
        JSON.writeLiteral(retracted ? #","retracted":true,"tags":["# : #","retracted":false,"tags":["#, into: &out)
        JSON.writeStringList(tags, into: &out)
        JSON.writeMember(#"],"text":"#, text, into: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    public var json: JSON {
        .object([
            "id": .string(id.description),
            "event": .string(event.description),
            "author": .string(author),
            "text": .string(text),
            "tags": .array(tags.map { .string($0) }),
            "created": .string(created.rfc3339),
            "retracted": .bool(retracted),
        ])
    }
}

extension EventView {
    /// The event's fields plus its `annotations`: the shape readers (`GET`, `--json`) see.
    public var json: JSON {
        guard case .object(var o) = event.json else { return event.json }
        o["annotations"] = .array(annotations.map(\.json))
        return .object(o)
    }
}

extension Proposal {
    /// The annotation an `annotation.add` creates. It depends on the proposal alone, so a store can encode its
    /// row before the writer admits the edit.
    public var addedAnnotation: Annotation? {
        guard case .addAnnotation(let id, let text, let tags) = change, let event else { return nil }
        return Annotation(id: id, event: event, author: author, text: text, tags: tags, created: time)
    }
}

// MARK: - Edits

/// Encodes and decodes edits and proposals. A proposal is a flat JSON object with its `op`; an edit is the
/// same object plus `version`, `revision`, `author`, `time` and `hash`.
public enum EditCodec {
    /// The fields of the change, flat, as proposals and edits carry them.
    public static func changeFields(_ change: Change) -> [String: JSON] {
        Dictionary(uniqueKeysWithValues: changePairs(change))
    }

    static func changePairs(_ change: Change) -> [(String, JSON)] {
        var o: [(String, JSON)] = [("op", .string(change.operation.rawValue))]
        o.reserveCapacity(12)
        switch change {
        case .createEvent(let f):
            o.append(("date", f.date.json))
            o.append(("title", .string(f.title)))
            o.append(("summary", .string(f.summary)))
            o.append(("references", .array(f.references.map(\.json))))
            o.append(("tags", .array(f.tags.map { .string($0) })))
        case .updateEvent(let p):
            o.append(("set", .object(Dictionary(uniqueKeysWithValues: p.setFields))))
            if !p.addTags.isEmpty || !p.removeTags.isEmpty {
                o.append(("tags", tagDelta(p.addTags, p.removeTags)))
            }
        case .deleteEvent:
            break
        case .addAnnotation(let id, let text, let tags):
            o.append(("annotation", .string(id.description)))
            o.append(("text", .string(text)))
            o.append(("tags", .array(tags.map { .string($0) })))
        case .updateAnnotation(let id, let p):
            o.append(("annotation", .string(id.description)))
            var set: [String: JSON] = [:]
            if let text = p.text { set["text"] = .string(text) }
            o.append(("set", .object(set)))
            if !p.addTags.isEmpty || !p.removeTags.isEmpty { o.append(("tags", tagDelta(p.addTags, p.removeTags))) }
        case .retractAnnotation(let id):
            o.append(("annotation", .string(id.description)))
        case .setMeta(let meta):
            o.append(("set", .object(meta)))
        }
        return o
    }

    static func proposalPairs(_ p: Proposal) -> [(String, JSON)] {
        var o = changePairs(p.change)
        o.append(("event", p.event.map { .string($0.description) } ?? .null))
        o.append(("base", .int(p.base)))
        o.append(("author", .string(p.author)))
        o.append(("time", .string(p.time.rfc3339)))
        return o
    }

    static func tagDelta(_ add: [String], _ remove: [String]) -> JSON {
        .object(["add": .array(add.map { .string($0) }), "remove": .array(remove.map { .string($0) })])
    }

    public static func proposalJSON(_ p: Proposal) -> JSON {
        .object(Dictionary(uniqueKeysWithValues: proposalPairs(p)))
    }

    /// The bytes the hash chain covers: the edit's canonical JSON without its `hash`.
    public static func canonicalBody(version: Int64, revision: Int64, proposal: Proposal) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(512)
        writeBody(proposal, version: version, revision: revision, into: &out)
        return out
    }

    /// Writes the edit's canonical body; with no `version` and `revision`, leaves their values out and returns
    /// where they go (the revision's place comes first: keys are in byte order).
    @discardableResult
    static func writeBody(_ proposal: Proposal, version: Int64?, revision: Int64?, into out: inout [UInt8]) -> (
        revisionAt: Int, versionAt: Int
    ) {
        if case .addAnnotation(let id, let text, let tags) = proposal.change {
            return writeAddedAnnotationBody(proposal, id, text, tags, version: version, revision: revision, into: &out)
        }
        var pairs = proposalPairs(proposal)
        pairs.append(("revision", .null))
        pairs.append(("version", .null))
        pairs.sort { JSON.utf8Less($0.0, $1.0) }
        var revisionAt = 0
        var versionAt = 0
        out.append(UInt8(ascii: "{"))
        for (index, pair) in pairs.enumerated() {
            if index > 0 { out.append(UInt8(ascii: ",")) }
            JSON.writeString(pair.0, into: &out)
            out.append(UInt8(ascii: ":"))
            switch pair.0 {
            case "revision":
                revisionAt = out.count
                if let revision { JSON.writeInt(revision, into: &out) }
            case "version":
                versionAt = out.count
                if let version { JSON.writeInt(version, into: &out) }
            default: pair.1.write(into: &out)
            }
        }
        out.append(UInt8(ascii: "}"))
        return (revisionAt, versionAt)
    }

    /// `writeBody` for the edit bulk writes bring, its members written in key order without building and sorting
    /// pairs of JSON values: that had cost 3 µs of each `annotation.add` a server took in (B1, perf).
    static func writeAddedAnnotationBody(
        _ proposal: Proposal, _ id: AnnotationID, _ text: String, _ tags: [String], version: Int64?,
        revision: Int64?, into out: inout [UInt8]
    ) -> (revisionAt: Int, versionAt: Int) {
        out.reserveCapacity(out.count + 220 + proposal.author.utf8.count + text.utf8.count + tags.count * 16)
        JSON.writeMember(#"{"annotation":"#, id.description, into: &out)
        JSON.writeMember(#","author":"#, proposal.author, into: &out)
        JSON.writeLiteral(#","base":"#, into: &out)
        JSON.writeInt(proposal.base, into: &out)
        JSON.writeLiteral(#","event":"#, into: &out)
        if let event = proposal.event {
            JSON.writeString(event.description, into: &out)
        } else {
            JSON.writeLiteral("null", into: &out)
        }
        JSON.writeLiteral(#","op":"annotation.add","revision":"#, into: &out)
        let revisionAt = out.count
        if let revision { JSON.writeInt(revision, into: &out) }
        JSON.writeLiteral(#","tags":["#, into: &out)
        JSON.writeStringList(tags, into: &out)
        JSON.writeMember(#"],"text":"#, text, into: &out)
        JSON.writeMember(#","time":"#, proposal.time.rfc3339, into: &out)
        JSON.writeLiteral(#","version":"#, into: &out)
        let versionAt = out.count
        if let version { JSON.writeInt(version, into: &out) }
        out.append(UInt8(ascii: "}"))
        return (revisionAt, versionAt)
    }

    /// An edit's canonical body written before its version and revision are known, with the places they go.
    ///
    /// A store's single writer learns them only when it admits the edit; everything else in the body depends on
    /// the proposal alone, so it is encoded beside the writer (where the proposal is decoded) and the writer only
    /// splices two integers in.
    public struct BodyTemplate: Sendable {
        /// The body with the values of `revision` and `version` left out.
        let bytes: [UInt8]
        /// Where in `bytes` each value goes.
        let revisionAt: Int
        let versionAt: Int

        public init(_ proposal: Proposal) {
            var out: [UInt8] = []
            out.reserveCapacity(512)
            (revisionAt, versionAt) = writeBody(proposal, version: nil, revision: nil, into: &out)
            bytes = out
        }

        /// The same bytes as `canonicalBody(version:revision:proposal:)`.
        public func body(version: Int64, revision: Int64) -> [UInt8] {
            var out: [UInt8] = []
            out.reserveCapacity(bytes.count + 40)
            bytes.withUnsafeBufferPointer { b in
                out.append(contentsOf: UnsafeBufferPointer(rebasing: b[..<revisionAt]))
                JSON.writeInt(revision, into: &out)
                out.append(contentsOf: UnsafeBufferPointer(rebasing: b[revisionAt..<versionAt]))
                JSON.writeInt(version, into: &out)
                out.append(contentsOf: UnsafeBufferPointer(rebasing: b[versionAt...]))
            }
            return out
        }
    }

    public static func json(_ edit: Edit) -> JSON {
        guard case .object(var o) = proposalJSON(edit.proposal) else { return .null }
        o["version"] = .int(edit.version)
        o["revision"] = .int(edit.revision)
        o["hash"] = .string(edit.hash.hex)
        return .object(o)
    }

    /// Decodes an edit as written by `json(_:)` (from a log or a peer), without checking its hash.
    public static func decodeEdit(_ json: JSON) throws(TimelineError) -> Edit {
        guard case .object = json else { throw TimelineError(.badJSON, "an edit must be a JSON object") }
        return try decodeEdit(FieldReader(json))
    }

    /// One reader for the edit's own fields and its proposal's: each is looked up once, and the time parsed once.
    static func decodeEdit(_ reader: FieldReader) throws(TimelineError) -> Edit {
        var r = reader
        let stamps = try readStamps(&r)
        let hashText = try r.string("hash", max: 64)
        guard let hash = Digest(hex: hashText) else {
            throw TimelineError(.badField, "field \"hash\" is not 64 hex digits")
        }
        // The author and time just read are the proposal's stamps (allowAuthorFields would read them again).
        let proposal = try decodeProposal(r, author: stamps.author, time: stamps.time)
        return Edit(version: stamps.version, revision: stamps.revision, proposal: proposal, hash: hash)
    }

    /// The fields an edit adds to its proposal, but its hash.
    private static func readStamps(_ r: inout FieldReader) throws(TimelineError) -> (
        version: Int64, revision: Int64, author: String, time: Timestamp
    ) {
        let version = try r.int("version", min: 1)
        let revision = try r.int("revision", min: 0)
        let author = try r.string("author", max: FieldLimits.author)
        let timeText = try r.string("time", max: 40)
        guard let time = Timestamp(rfc3339: timeText) else {
            throw TimelineError(.badField, "field \"time\" is not an RFC 3339 UTC time")
        }
        return (version, revision, author, time)
    }

    /// Decodes a proposal (a `PROPOSE` argument or a JSONL line). `author` and `time` are the ones the
    /// caller stamps; `allowAuthorFields` lets a trusted importer keep the `author` and `time` in the line.
    public static func decodeProposal(
        _ json: JSON, author: String, time: Timestamp, allowAuthorFields: Bool = false, allowOnBehalf: Bool = false
    ) throws(TimelineError) -> Proposal {
        guard case .object = json else { throw TimelineError(.badJSON, "an edit must be a JSON object") }
        return try decodeProposal(
            FieldReader(json), author: author, time: time, allowAuthorFields: allowAuthorFields,
            allowOnBehalf: allowOnBehalf, fresh: !allowAuthorFields)
    }

    /// `decodeProposal` for an object parsed by `JSON.parseObject`, as `PROPOSE`, `BATCH` and JSONL lines are.
    public static func decodeProposal(
        _ members: JSONMembers, author: String, time: Timestamp, allowAuthorFields: Bool = false,
        allowOnBehalf: Bool = false
    ) throws(TimelineError) -> Proposal {
        try decodeProposal(
            FieldReader(pairs: members.pairs), author: author, time: time, allowAuthorFields: allowAuthorFields,
            allowOnBehalf: allowOnBehalf, fresh: !allowAuthorFields)
    }

    /// `fresh`: a new edit a person or a script proposes now, held to the rules that were added over time (a title
    /// is not empty); an edit already in a log, or replayed from an export, is held only to those it was made
    /// under, so that no log once written becomes unreadable.
    static func decodeProposal(
        _ reader: FieldReader, author: String, time: Timestamp, allowAuthorFields: Bool = false,
        allowOnBehalf: Bool = false, fresh: Bool = false
    ) throws(TimelineError) -> Proposal {
        var r = reader
        let opText = try r.string("op", max: 64)
        // An office replica forwards its analysts' edits and names them, qualified by the office: "ana@office-b".
        var author = author
        if let behalf = try r.optionalString("on_behalf_of", max: FieldLimits.author) {
            guard allowOnBehalf else {
                throw TimelineError(.badField, "field \"on_behalf_of\" is for replicator tokens only")
            }
            let parts = behalf.split(separator: "@", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty,
                behalf.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-@".contains($0)) })
            else { throw TimelineError(.badField, "field \"on_behalf_of\" must be USER@OFFICE") }
            author = behalf
        }
        guard let op = Operation(rawValue: opText) else {
            throw TimelineError(.unknownOperation, "unknown operation \"\(opText)\"")
        }
        var time = time
        if allowAuthorFields {
            if let a = try r.optionalString("author", max: FieldLimits.author) { author = a }
            if let t = try r.optionalString("time", max: 40) {
                guard let parsed = Timestamp(rfc3339: t) else {
                    throw TimelineError(.badField, "field \"time\" is not an RFC 3339 UTC time")
                }
                time = parsed
            }
        }
        let base = try r.optionalInt("base", min: 0) ?? 0
        let event: EventID?
        if op == .timelineMeta {
            guard r.value("event") == nil else { throw r.bad("event", "must be absent for timeline.meta") }
            event = nil
        } else if op == .eventCreate, r.value("event") == nil {
            // A new event without an ID gets one minted here; clients that want to refer to it at once mint their own.
            event = EventID(ULID.generate(at: time))
        } else {
            event = try r.eventID("event")
        }
        let change: Change
        switch op {
        case .eventCreate:
            change = .createEvent(
                EventFields(
                    date: try r.date("date"),
                    title: try r.string("title", max: FieldLimits.title, nonEmpty: fresh),
                    summary: try r.optionalString("summary", max: FieldLimits.text) ?? "",
                    references: try r.optionalReferences("references") ?? [],
                    tags: try r.optionalTags("tags") ?? []
                ))
        case .eventUpdate:
            var set = FieldReader(try r.object("set", required: false) ?? .object([:]), context: "set")
            let (add, remove) = try r.tagDelta("tags")
            let patch = EventPatch(
                title: try set.optionalString("title", max: FieldLimits.title, nonEmpty: fresh),
                summary: try set.optionalString("summary", max: FieldLimits.text),
                date: try set.optionalDate("date"),
                references: try set.optionalReferences("references"),
                addTags: add, removeTags: remove)
            try set.rejectUnknown()
            guard !patch.isEmpty else {
                throw TimelineError(.badField, "event.update changes nothing: give \"set\" fields or \"tags\"")
            }
            change = .updateEvent(patch)
        case .eventDelete:
            change = .deleteEvent
        case .annotationAdd:
            let id = try r.annotationID("annotation", required: false)
            change = .addAnnotation(
                id ?? AnnotationID(ULID.generate(at: time)),
                text: try r.string("text", max: FieldLimits.text, nonEmpty: true),
                tags: try r.optionalTags("tags") ?? [])
        case .annotationUpdate:
            let id = try r.annotationID("annotation", required: true)!
            var set = FieldReader(try r.object("set", required: false) ?? .object([:]), context: "set")
            let (add, remove) = try r.tagDelta("tags")
            let patch = AnnotationPatch(
                text: try set.optionalString("text", max: FieldLimits.text, nonEmpty: true), addTags: add,
                removeTags: remove)
            try set.rejectUnknown()
            guard patch.text != nil || !add.isEmpty || !remove.isEmpty else {
                throw TimelineError(.badField, "annotation.update changes nothing: give \"set\" or \"tags\"")
            }
            change = .updateAnnotation(id, patch)
        case .annotationRetract:
            change = .retractAnnotation(try r.annotationID("annotation", required: true)!)
        case .timelineMeta:
            guard let set = try r.object("set", required: true)?.objectValue, !set.isEmpty,
                set.count <= FieldLimits.metaKeys
            else {
                throw TimelineError(.badField, "timeline.meta needs \"set\" with 1 to \(FieldLimits.metaKeys) keys")
            }
            // Keys are names a program reads ("source", "updated"): ASCII, so that keys Unicode deems equivalent but
            // whose bytes differ cannot both be set (a replay and the store would keep one and two of them).
            if fresh, let key = set.keys.first(where: { !MetaKeys.isValid($0) }) {
                throw TimelineError(
                    .badField,
                    "timeline.meta key \(JSON.string(key).canonicalString) is not 1 to 64 of A-Z a-z 0-9 . _ - : /")
            }
            change = .setMeta(set)
        }
        // A reference is cited by its number: two with one number in one list could not be told apart.
        if fresh {
            let references: [Reference]? =
                switch change {
                case .createEvent(let f): f.references
                case .updateEvent(let p): p.references
                default: nil
                }
            if let references, Set(references.map(\.number)).count != references.count {
                let dup = Dictionary(grouping: references, by: \.number).first { $0.value.count > 1 }!.key
                throw TimelineError(.badField, "field \"references\" holds two references numbered \(dup)")
            }
        }
        // Edits coming from a log carry these; proposals may not set them (the server assigns them).
        for key in ["version", "revision", "hash"] { r.consume(key) }
        if !allowAuthorFields { r.consume("author"); r.consume("time") }
        try r.rejectUnknown()
        return Proposal(event: event, change: change, base: base, author: author, time: time)
    }
}

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

// MARK: - Decoding state

extension Event {
    /// Decodes `json` or `contentJSON` (then `revision` gives the revision).
    public init(json: JSON, revision: Int64? = nil) throws(TimelineError) {
        var r = FieldReader(json, context: "event")
        let idText = try r.string("id", max: 64)
        guard let id = EventID(idText) else { throw TimelineError(.badField, "event id \"\(idText)\" is not an ID") }
        let rev: Int64
        if let revision { rev = revision } else { rev = try r.int("revision", min: 1) }
        r.consume("revision")
        r.consume("annotations")
        self.init(
            id: id, revision: rev, date: try r.date("date"), title: try r.string("title", max: FieldLimits.title),
            summary: try r.string("summary", max: FieldLimits.text),
            references: try r.optionalReferences("references") ?? [], tags: try r.optionalTags("tags") ?? [],
            deleted: r.value("deleted")?.boolValue ?? false)
        try r.rejectUnknown()
    }
}

extension Annotation {
    public init(json: JSON) throws(TimelineError) {
        var r = FieldReader(json, context: "annotation")
        guard let id = try r.annotationID("id", required: true) else { throw r.bad("id", "is required") }
        let event = try r.eventID("event")
        let createdText = try r.string("created", max: 40)
        guard let created = Timestamp(rfc3339: createdText) else { throw r.bad("created", "is not a time") }
        self.init(
            id: id, event: event, author: try r.string("author", max: FieldLimits.author),
            text: try r.string("text", max: FieldLimits.text), tags: try r.optionalTags("tags") ?? [],
            created: created, retracted: r.value("retracted")?.boolValue ?? false)
        try r.rejectUnknown()
    }
}

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
