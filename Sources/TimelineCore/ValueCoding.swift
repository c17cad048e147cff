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
