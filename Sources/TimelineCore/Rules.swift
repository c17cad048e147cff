/// What an edit leaves behind: the event's and the annotation's new state.
public struct Applied: Sendable, Hashable {
    /// The event after the edit (nil for `timeline.meta`).
    public var event: Event?
    /// The annotation after the edit, for annotation operations.
    public var annotation: Annotation?
    /// The event's new revision (0 for `timeline.meta`).
    public var revision: Int64 { event?.revision ?? 0 }
}

/// The rules every store and replica applies, so that the same log gives the same state everywhere.
public enum Rules {
    /// Admits a proposal against the current state: a stale change (base older than the event's revision) is
    /// merged with `Merge.merge` first and refused with `CONFLICT` when a field clashes. `since` fetches
    /// the event's edits after a revision; it is called only for stale proposals.
    public static func admit(
        _ proposal: Proposal, event: Event?, annotation: Annotation?, since: (Int64) throws -> [Edit]
    ) throws -> Applied {
        if proposal.ownAnnotationsOnly, let annotation, annotation.author != proposal.author,
            proposal.change.operation == .annotationUpdate || proposal.change.operation == .annotationRetract
        {
            throw TimelineError(
                .forbidden,
                "annotation \(annotation.id) is \(annotation.author)'s; only its author or an editor may change it")
        }
        if let event, event.deleted {
            // Nothing changes a deleted event, nor its annotations. Only an update made before the deletion and
            // sent after it is a conflict (§8): the two authors decided differently. Otherwise the proposer
            // acts on a deleted event, which is refused with who deleted it and when. No edit follows a
            // deletion, so the event's last edit is it.
            let op = proposal.change.operation
            if op != .eventCreate, op != .eventDelete, !(op == .eventUpdate && proposal.base < event.revision) {
                let deletion = try since(event.revision - 1).last
                throw TimelineError(
                    .invalidState,
                    "event \(event.id) was deleted\(deletion.map { " by \($0.author) at version \($0.version)" } ?? ""); "
                        + (op == .eventUpdate ? "it cannot be changed" : "its annotations cannot change"),
                    detail: .object([
                        "event": .string(event.id.description),
                        "deleted_by": .string(deletion?.author ?? ""), "deleted_version": .int(deletion?.version ?? 0),
                    ]))
            }
        }
        if let event {
            guard proposal.base <= event.revision else {
                throw TimelineError(
                    .badBase,
                    "base revision \(proposal.base) is newer than event \(event.id)'s revision \(event.revision)")
            }
            if proposal.base < event.revision, proposal.change.operation != .eventCreate {
                // Only these operations look at what changed since the base; the rest need no history.
                let op = proposal.change.operation
                let needsHistory = op == .eventUpdate || op == .eventDelete || op == .annotationUpdate
                let edits = needsHistory ? try since(proposal.base) : []
                if case .conflict(let conflicts) = Merge.merge(proposal: proposal, current: event, since: edits) {
                    throw TimelineError(
                        .conflict,
                        conflicts.map { "\($0.field) was changed by \($0.theirAuthor)" }.joined(separator: "; ")
                            + " since revision \(proposal.base) of event \(event.id)",
                        detail: .object(["event": event.json, "conflicts": .array(conflicts.map(\.json))]))
                }
            }
        }
        return try apply(proposal, event: event, annotation: annotation)
    }

    /// Applies a change without merging: for an edit already in a log, and for an admitted proposal.
    public static func apply(_ p: Proposal, event: Event?, annotation: Annotation?) throws(TimelineError) -> Applied {
        if case .setMeta = p.change { return Applied(event: nil, annotation: nil) }
        guard let id = p.event else { throw TimelineError(.badField, "\(p.change.operation.rawValue) needs an event") }
        if case .createEvent(let fields) = p.change {
            guard event == nil else { throw TimelineError(.duplicateID, "event \(id) already exists") }
            let created = Event(
                id: id, revision: 1, date: fields.date, title: fields.title, summary: fields.summary,
                references: fields.references, tags: fields.tags)
            return Applied(event: created, annotation: nil)
        }
        guard var e = event else { throw TimelineError(.notFound, "event \(id) does not exist") }
        guard !e.deleted else { throw TimelineError(.invalidState, "event \(id) is deleted") }
        e.revision += 1
        switch p.change {
        case .createEvent, .setMeta:
            preconditionFailure("handled above")
        case .updateEvent(let patch):
            if let v = patch.title { e.title = v }
            if let v = patch.summary { e.summary = v }
            if let v = patch.date { e.date = v }
            if let v = patch.references { e.references = v }
            e.tags = Tags.applying(add: patch.addTags, remove: patch.removeTags, to: e.tags)
            return Applied(event: e, annotation: nil)
        case .deleteEvent:
            e.deleted = true
            return Applied(event: e, annotation: nil)
        case .addAnnotation(let aid, _, _):
            guard annotation == nil else { throw TimelineError(.duplicateID, "annotation \(aid) already exists") }
            return Applied(event: e, annotation: p.addedAnnotation)
        case .updateAnnotation(let aid, let patch):
            guard var a = annotation, a.event == id else {
                throw TimelineError(.notFound, "annotation \(aid) does not exist on event \(id)")
            }
            guard !a.retracted else { throw TimelineError(.invalidState, "annotation \(aid) is retracted") }
            if let text = patch.text { a.text = text }
            a.tags = Tags.applying(add: patch.addTags, remove: patch.removeTags, to: a.tags)
            return Applied(event: e, annotation: a)
        case .retractAnnotation(let aid):
            guard var a = annotation, a.event == id else {
                throw TimelineError(.notFound, "annotation \(aid) does not exist on event \(id)")
            }
            guard !a.retracted else { throw TimelineError(.invalidState, "annotation \(aid) is already retracted") }
            a.retracted = true
            return Applied(event: e, annotation: a)
        }
    }
}

/// The whole timeline held in memory and built by replaying a log: the reference that stores are checked
/// against (`verify`), and the model the merge tests run on.
public struct TimelineState: Sendable, Hashable {
    public var events: [EventID: Event] = [:]
    public var annotations: [AnnotationID: Annotation] = [:]
    public var meta: [String: JSON] = [:]
    public var version: Int64 = 0

    public init() {}

    /// Admits and applies a proposal as a store would; returns what changed.
    @discardableResult
    public mutating func admit(_ p: Proposal, history: (EventID, Int64) -> [Edit] = { _, _ in [] }) throws
        -> Applied
    {
        let applied = try Rules.admit(
            p, event: p.event.flatMap { events[$0] }, annotation: p.change.annotationID.flatMap { annotations[$0] },
            since: { base in history(p.event!, base) })
        store(p, applied)
        version += 1
        return applied
    }

    /// Applies an edit from a log; its version must be the next one and its revision the event's next.
    public mutating func apply(_ edit: Edit) throws(TimelineError) {
        guard edit.version == version + 1 else {
            throw TimelineError(.corrupt, "version \(edit.version) follows version \(version)")
        }
        let applied = try Rules.apply(
            edit.proposal, event: edit.event.flatMap { events[$0] },
            annotation: edit.change.annotationID.flatMap { annotations[$0] })
        guard applied.revision == edit.revision else {
            throw TimelineError(
                .corrupt, "version \(edit.version) says revision \(edit.revision), replay gives \(applied.revision)")
        }
        store(edit.proposal, applied)
        version = edit.version
    }

    mutating func store(_ p: Proposal, _ applied: Applied) {
        if case .setMeta(let set) = p.change {
            for (key, value) in set {
                if value.isNull { meta.removeValue(forKey: key) } else { meta[key] = value }
            }
        }
        if let e = applied.event { events[e.id] = e }
        if let a = applied.annotation { annotations[a.id] = a }
    }

    /// The state hash of this state (see `StateHasher`).
    public var stateHash: Digest {
        let hasher = StateHasher(meta: meta)
        var byEvent: [EventID: [Annotation]] = [:]
        for a in annotations.values { byEvent[a.event, default: []].append(a) }
        for id in events.keys.sorted() {
            hasher.add(event: events[id]!, annotations: (byEvent[id] ?? []).sorted { $0.id < $1.id })
        }
        return hasher.finalize()
    }
}

/// The state hash: SHA-256 over the canonical current content: the metadata, then each event in ID order
/// followed by its annotations in ID order, one canonical JSON line each. Revisions and versions are not
/// part of it (they are log coordinates), so a JSONL export imported elsewhere gives the same hash.
public final class StateHasher {
    let hasher = SHA256.Hasher()

    public init(meta: [String: JSON]) {
        hasher.update(Array("timeline/1 state\nM ".utf8) + JSON.object(meta).canonicalBytes + [0x0A])
    }

    /// Events must come in ID order, each with its annotations sorted by ID.
    public func add(event: Event, annotations: [Annotation]) {
        hasher.update([UInt8(ascii: "E"), 0x20] + event.contentJSON.canonicalBytes + [0x0A])
        for a in annotations { hasher.update([UInt8(ascii: "A"), 0x20] + a.json.canonicalBytes + [0x0A]) }
    }

    public func finalize() -> Digest { hasher.finalize() }
}
