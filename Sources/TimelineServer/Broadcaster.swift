import NIOConcurrencyHelpers
import Synchronization
import TimelineCore

/// Hands committed edits to every watching connection. Called on the store's writer thread, so it only
/// enqueues: each watcher hops to its own event loop and decides there what to send.
final class Broadcaster: Sendable {
    /// Gets a commit's edits, one array per append it held (`TimelineStore.observeCommits`).
    typealias Watcher = @Sendable ([[Edit]]) -> Void

    private let watchers = NIOLockedValueBox<[UInt64: Watcher]>([:])
    private let nextID = Atomic<UInt64>(1)

    func add(_ watcher: @escaping Watcher) -> UInt64 {
        let id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        watchers.withLockedValue { $0[id] = watcher }
        return id
    }

    func remove(_ id: UInt64) {
        _ = watchers.withLockedValue { $0.removeValue(forKey: id) }
    }

    var count: Int { watchers.withLockedValue { $0.count } }

    func publish(_ units: [[Edit]]) {
        let current = watchers.withLockedValue { Array($0.values) }
        for watcher in current { watcher(units) }
    }
}
