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

    /// A proposal as a client sends it: the change's fields, the event, and the revision it was made on (the
    /// server stamps the author and the time).
    public static func proposal(_ change: Change, event: EventID?, base: Int64) -> JSON {
        var o = changeFields(change)
        if let event { o["event"] = .string(event.description) }
        o["base"] = .int(base)
        return .object(o)
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
    /// pairs of JSON values: that had cost 3 µs of each `annotation.add` a server took in (the bulk-batch benchmark in docs/PERFORMANCE.md, under perf).
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
    static func readStamps(_ r: inout FieldReader) throws(TimelineError) -> (
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
