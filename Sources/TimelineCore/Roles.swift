/// What a token may do. Each role includes the one before it, but `replicator`, which reads only.
public enum Role: String, Sendable, CaseIterable, Comparable {
    /// PULL, GET, LOG, HISTORY, WATCH.
    case reader
    /// + annotation.add, annotation.update, annotation.retract.
    case annotator
    /// + event.create, event.update, event.delete, timeline.meta.
    case editor
    /// Reads everything and forwards its office's edits, naming their authors (`on_behalf_of`).
    case replicator
    /// Everything.
    case admin

    public var rank: Int {
        switch self {
        case .reader, .replicator: 0
        case .annotator: 1
        case .editor: 2
        case .admin: 3
        }
    }

    public static func < (a: Role, b: Role) -> Bool { a.rank < b.rank }

    /// Whether this role may make edits of this operation.
    public func mayPropose(_ op: Operation) -> Bool {
        // An office replica has already checked its own analysts' roles.
        if self == .replicator { return true }
        switch op {
        case .annotationAdd, .annotationUpdate, .annotationRetract: return rank >= Role.annotator.rank
        case .eventCreate, .eventUpdate, .eventDelete, .timelineMeta: return rank >= Role.editor.rank
        }
    }

    /// Whether this role may change (update or retract) an annotation by another author: editors and admins may.
    public var mayChangeOthersAnnotations: Bool { self == .replicator || rank >= Role.editor.rank }
}
