/// One field changed to two different values since a common base.
public struct FieldConflict: Sendable, Hashable {
    public var event: EventID
    /// `title`, `summary`, `date`, `references`, `deleted`, or `annotation.<ID>.text`.
    public var field: String
    public var ours: JSON
    public var theirs: JSON
    public var ourAuthor: String
    public var theirAuthor: String
    /// The version of the edit that set `theirs`.
    public var theirVersion: Int64

    public var json: JSON {
        .object([
            "event": .string(event.description), "field": .string(field), "ours": ours, "theirs": theirs,
            "our_author": .string(ourAuthor), "their_author": .string(theirAuthor),
            "their_version": .int(theirVersion),
        ])
    }
}

/// The result of merging a proposed change into an event that moved on since the proposal's base.
public enum MergeResult: Sendable, Hashable {
    /// The change applies as it is: nothing it sets was changed by anyone else to something else.
    case clean
    case conflict([FieldConflict])
}

/// The three-way merge by event ID. Pure and deterministic: the same inputs give the same result anywhere.
public enum Merge {
    /// Merges `proposal` (made on revision `proposal.base`) into `current`, given `since`: the edits to this
    /// event after that base, in version order.
    ///
    /// - A field only one side changed merges cleanly.
    /// - Tags are sets: adds and removes from both sides are all honoured.
    /// - Annotations are keyed by their own IDs: adding never conflicts.
    /// - The same scalar field changed by both sides to different values is a conflict naming both values and
    ///   both authors; the same value on both sides is no conflict.
    public static func merge(proposal: Proposal, current: Event, since: [Edit]) -> MergeResult {
        guard let eventID = proposal.event else { return .clean }
        // Who last changed each field since the base, and in which version.
        var touched: [String: (author: String, version: Int64)] = [:]
        for edit in since {
            switch edit.change {
            case .updateEvent(let p):
                for (key, _) in p.setFields { touched[key] = (edit.author, edit.version) }
            case .deleteEvent:
                touched["deleted"] = (edit.author, edit.version)
            case .updateAnnotation(let id, let p) where p.text != nil:
                touched["annotation.\(id).text"] = (edit.author, edit.version)
            case .retractAnnotation(let id):
                touched["annotation.\(id).retracted"] = (edit.author, edit.version)
            default:
                break
            }
        }
        var conflicts: [FieldConflict] = []
        func conflict(_ field: String, ours: JSON, theirs: JSON) {
            let who = touched[field] ?? (author: "", version: 0)
            conflicts.append(
                FieldConflict(
                    event: eventID, field: field, ours: ours, theirs: theirs, ourAuthor: proposal.author,
                    theirAuthor: who.author, theirVersion: who.version))
        }
        // An update made before a deletion that others committed since: the deletion's author and version are in
        // `since`. (Rules refuses every other change of a deleted event before merging.)
        if current.deleted, proposal.change.operation != .eventDelete {
            conflict("deleted", ours: .bool(false), theirs: .bool(true))
            return .conflict(conflicts)
        }
        switch proposal.change {
        case .updateEvent(let patch):
            let currentFields = Merge.fieldValues(current)
            for (key, ours) in patch.setFields where touched[key] != nil && currentFields[key] != ours {
                conflict(key, ours: ours, theirs: currentFields[key] ?? .null)
            }
        case .deleteEvent:
            // Deleting an event that others changed since is a decision a person must take.
            let changed = since.filter { edit in
                if case .updateEvent = edit.change { return true }
                return false
            }
            if let last = changed.last {
                touched["deleted"] = (last.author, last.version)
                conflict("deleted", ours: .bool(true), theirs: .bool(false))
            }
        case .updateAnnotation(let id, let patch):
            let key = "annotation.\(id).text"
            if let text = patch.text, touched[key] != nil {
                // The current text comes from the latest edit that set it.
                let theirs = since.reversed().lazy.compactMap { edit -> String? in
                    if case .updateAnnotation(id, let p) = edit.change { return p.text }
                    return nil
                }.first
                if let theirs, theirs != text { conflict(key, ours: .string(text), theirs: .string(theirs)) }
            }
        default:
            break
        }
        return conflicts.isEmpty ? .clean : .conflict(conflicts)
    }

    /// An event's scalar fields by wire name, as a patch would set them.
    public static func fieldValues(_ event: Event) -> [String: JSON] {
        [
            "title": .string(event.title), "summary": .string(event.summary), "date": event.date.json,
            "references": .array(event.references.map(\.json)),
        ]
    }
}
