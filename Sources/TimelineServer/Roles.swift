import TimelineCore
import TimelineWire

extension Role {
    /// The least role a verb needs (edits are checked per operation as well).
    static func required(for verb: Verb) -> Role? {
        switch verb {
        case .auth, .ping, .caps, .quit: nil
        case .pull, .get, .log, .history, .watch, .conflicts: .reader
        case .propose, .batch: .annotator
        }
    }

    func may(_ verb: Verb) -> Bool {
        guard let needed = Self.required(for: verb) else { return true }
        if self == .replicator { return true }
        return rank >= needed.rank
    }
}
