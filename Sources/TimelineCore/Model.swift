/// A numbered source a timeline cites: `[4] Ministry of …, http://…`.
public struct Reference: Sendable, Hashable {
    public var number: Int
    /// The citation as written.
    public var text: String
    /// URLs found in the citation, in order.
    public var urls: [String]

    public init(number: Int, text: String, urls: [String]) {
        self.number = number
        self.text = text
        self.urls = urls
    }
}

/// A dated event: the unit that is edited, merged and replicated.
public struct Event: Sendable, Hashable {
    public var id: EventID
    /// Counts every edit to this event (field edits and annotation edits alike), starting at 1 on creation.
    public var revision: Int64
    public var date: EventDate
    public var title: String
    public var summary: String
    public var references: [Reference]
    /// Sorted, without duplicates.
    public var tags: [String]
    /// A deleted event is a tombstone: it stays in the log and replicates, but is no longer listed.
    public var deleted: Bool

    public init(
        id: EventID, revision: Int64, date: EventDate, title: String, summary: String,
        references: [Reference] = [], tags: [String] = [], deleted: Bool = false
    ) {
        self.id = id
        self.revision = revision
        self.date = date
        self.title = title
        self.summary = summary
        self.references = references
        self.tags = Tags.normalized(tags)
        self.deleted = deleted
    }
}

/// A note an analyst attaches to an event. Retraction is an edit, never a deletion.
public struct Annotation: Sendable, Hashable {
    public var id: AnnotationID
    public var event: EventID
    public var author: String
    public var text: String
    /// Sorted, without duplicates.
    public var tags: [String]
    public var created: Timestamp
    public var retracted: Bool

    public init(
        id: AnnotationID, event: EventID, author: String, text: String, tags: [String], created: Timestamp,
        retracted: Bool = false
    ) {
        self.id = id
        self.event = event
        self.author = author
        self.text = text
        self.tags = Tags.normalized(tags)
        self.created = created
        self.retracted = retracted
    }
}

/// An event with its annotations, as readers see it.
public struct EventView: Sendable, Hashable {
    public var event: Event
    /// Sorted by ID, which is creation order.
    public var annotations: [Annotation]

    public init(event: Event, annotations: [Annotation]) {
        self.event = event
        self.annotations = annotations.sorted { $0.id < $1.id }
    }
}

public enum Tags {
    /// Sorted and de-duplicated: tags are a set, and a set has one canonical order. Tags are compared by their
    /// bytes, as the protocol says (Swift's `Set` of `String` would merge tags that Unicode deems equivalent).
    /// Values are mostly built from tags normalized already (decoded, then copied into an annotation, an event,
    /// an edit): those come back as they are, without the sort, which was a per-edit allocation in the store's
    /// single writer.
    public static func normalized(_ tags: [String]) -> [String] {
        if zip(tags, tags.dropFirst()).allSatisfy({ JSON.utf8Less($0, $1) }) { return tags }
        var out: [String] = []
        for tag in tags.sorted(by: JSON.utf8Less) where out.last.map({ !$0.utf8.elementsEqual(tag.utf8) }) ?? true {
            out.append(tag)
        }
        return out
    }

    /// `tags` with `add` added and `remove` removed (a tag in both ends up present: adding wins).
    public static func applying(add: [String], remove: [String], to tags: [String]) -> [String] {
        let removed = Set(remove.map { Array($0.utf8) })
        return normalized(tags.filter { !removed.contains(Array($0.utf8)) } + add)
    }
}

/// Keys of the timeline's metadata (`timeline.meta`).
public enum MetaKeys {
    /// 1 to 64 of ASCII letters, digits, `.`, `_`, `-`, `:` and `/`.
    public static func isValid(_ key: String) -> Bool {
        !key.isEmpty && key.utf8.count <= 64
            && key.utf8.allSatisfy { b in
                (0x30...0x39).contains(b) || (0x41...0x5A).contains(b) || (0x61...0x7A).contains(b) || b == 0x2E
                    || b == 0x5F || b == 0x2D || b == 0x3A || b == 0x2F
            }
    }
}

/// The fields of a new event.
public struct EventFields: Sendable, Hashable {
    public var date: EventDate
    public var title: String
    public var summary: String
    public var references: [Reference]
    public var tags: [String]

    public init(date: EventDate, title: String, summary: String, references: [Reference] = [], tags: [String] = []) {
        self.date = date
        self.title = title
        self.summary = summary
        self.references = references
        self.tags = Tags.normalized(tags)
    }
}

/// A field patch: only the fields named change. Tags change as a set (adds and removes), so that two
/// people tagging one event at once both keep their tags.
public struct EventPatch: Sendable, Hashable {
    public var title: String?
    public var summary: String?
    public var date: EventDate?
    public var references: [Reference]?
    public var addTags: [String]
    public var removeTags: [String]

    public init(
        title: String? = nil, summary: String? = nil, date: EventDate? = nil, references: [Reference]? = nil,
        addTags: [String] = [], removeTags: [String] = []
    ) {
        self.title = title
        self.summary = summary
        self.date = date
        self.references = references
        self.addTags = Tags.normalized(addTags)
        self.removeTags = Tags.normalized(removeTags)
    }

    /// The scalar fields this patch sets, by their wire names, with their values.
    public var setFields: [(String, JSON)] {
        var out: [(String, JSON)] = []
        if let date { out.append(("date", date.json)) }
        if let references { out.append(("references", .array(references.map(\.json)))) }
        if let summary { out.append(("summary", .string(summary))) }
        if let title { out.append(("title", .string(title))) }
        return out
    }

    public var isEmpty: Bool { setFields.isEmpty && addTags.isEmpty && removeTags.isEmpty }
}

/// A patch to an annotation's text and tags.
public struct AnnotationPatch: Sendable, Hashable {
    public var text: String?
    public var addTags: [String]
    public var removeTags: [String]

    public init(text: String? = nil, addTags: [String] = [], removeTags: [String] = []) {
        self.text = text
        self.addTags = Tags.normalized(addTags)
        self.removeTags = Tags.normalized(removeTags)
    }
}

/// The operation names, exactly as on the wire and in the log.
public enum Operation: String, Sendable, CaseIterable {
    case eventCreate = "event.create"
    case eventUpdate = "event.update"
    case eventDelete = "event.delete"
    case annotationAdd = "annotation.add"
    case annotationUpdate = "annotation.update"
    case annotationRetract = "annotation.retract"
    /// Timeline-level metadata (source organisation, last updated, the document's full reference list).
    case timelineMeta = "timeline.meta"
}

/// What an edit does.
public enum Change: Sendable, Hashable {
    case createEvent(EventFields)
    case updateEvent(EventPatch)
    case deleteEvent
    case addAnnotation(AnnotationID, text: String, tags: [String])
    case updateAnnotation(AnnotationID, AnnotationPatch)
    case retractAnnotation(AnnotationID)
    /// Keys set to `.null` are removed.
    case setMeta([String: JSON])

    public var operation: Operation {
        switch self {
        case .createEvent: .eventCreate
        case .updateEvent: .eventUpdate
        case .deleteEvent: .eventDelete
        case .addAnnotation: .annotationAdd
        case .updateAnnotation: .annotationUpdate
        case .retractAnnotation: .annotationRetract
        case .setMeta: .timelineMeta
        }
    }

    /// The annotation this change is about, if any.
    public var annotationID: AnnotationID? {
        switch self {
        case .addAnnotation(let id, _, _), .updateAnnotation(let id, _), .retractAnnotation(let id): id
        default: nil
        }
    }
}

/// An edit not yet in the log: what a client proposes, with the author and time the server stamps on it.
public struct Proposal: Sendable, Hashable {
    /// Absent only for `timeline.meta`.
    public var event: EventID?
    public var change: Change
    /// The event revision the author saw when making the change (0 for a new event).
    public var base: Int64
    public var author: String
    public var time: Timestamp
    /// The author may update or retract only annotations they wrote (an annotator's proposal); not part of
    /// the edit, checked when the proposal is admitted.
    public var ownAnnotationsOnly = false

    public init(event: EventID?, change: Change, base: Int64, author: String, time: Timestamp) {
        self.event = event
        self.change = change
        self.base = base
        self.author = author
        self.time = time
    }
}

/// An edit in the log: a proposal with its place (global version, the event's new revision) and its
/// link in the hash chain.
public struct Edit: Sendable, Hashable {
    public var version: Int64
    /// The event's revision after this edit (0 for `timeline.meta`).
    public var revision: Int64
    public var proposal: Proposal
    /// SHA-256 over the previous edit's hash followed by this edit's canonical bytes.
    public var hash: Digest

    public init(version: Int64, revision: Int64, proposal: Proposal, hash: Digest) {
        self.version = version
        self.revision = revision
        self.proposal = proposal
        self.hash = hash
    }

    public var event: EventID? { proposal.event }
    public var change: Change { proposal.change }
    public var author: String { proposal.author }
    public var time: Timestamp { proposal.time }
    public var base: Int64 { proposal.base }
    public var operation: Operation { proposal.change.operation }

    /// Builds the edit that follows `previous` in the chain.
    public static func chained(
        after previous: Digest, version: Int64, revision: Int64, proposal: Proposal
    ) -> (edit: Edit, body: [UInt8]) {
        let body = EditCodec.canonicalBody(version: version, revision: revision, proposal: proposal)
        return (chained(after: previous, version: version, revision: revision, proposal: proposal, body: body), body)
    }

    /// The same, when `body` (its `EditCodec.canonicalBody`) was encoded already.
    public static func chained(
        after previous: Digest, version: Int64, revision: Int64, proposal: Proposal, body: [UInt8]
    ) -> Edit {
        Edit(version: version, revision: revision, proposal: proposal, hash: SHA256.chain(prefix: previous.bytes, body))
    }
}

/// The first link of a dataset's chain: each dataset starts from its own genesis, so that logs of two
/// datasets can never be mistaken for one another.
public enum Genesis {
    public static func hash(dataset: String) -> Digest {
        SHA256.hash(Array("timeline/1 genesis \(dataset)".utf8))
    }
}
