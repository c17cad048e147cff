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
    /// Told, under the watchers' lock, when the first watcher arrives (true) and the last leaves (false): the store
    /// then reads other nodes' commits only while someone watches (`TimelineStore.wantOthersCommits`).
    private let demand: @Sendable (Bool) -> Void

    init(demand: @escaping @Sendable (Bool) -> Void = { _ in }) {
        self.demand = demand
    }

    /// Adds a watcher; it gets every commit after the head the store reports once this returned.
    func add(_ watcher: @escaping Watcher) -> UInt64 {
        let id = nextID.wrappingAdd(1, ordering: .relaxed).oldValue
        watchers.withLockedValue { watchers in
            watchers[id] = watcher
            if watchers.count == 1 { demand(true) }
        }
        return id
    }

    func remove(_ id: UInt64) {
        watchers.withLockedValue { watchers in
            if watchers.removeValue(forKey: id) != nil, watchers.isEmpty { demand(false) }
        }
    }

    var count: Int { watchers.withLockedValue { $0.count } }

    func publish(_ units: [[Edit]]) {
        let current = watchers.withLockedValue { Array($0.values) }
        for watcher in current { watcher(units) }
    }
}
