import Dispatch
import GRDB
import NIOConcurrencyHelpers
import TimelineCore

/// Reads handed over by callers on event loops, run on at most `width` threads at a time, in the order submitted.
///
/// A GET awaited through a task crossed threads four times (event loop, task executor, GRDB's reader queue, the
/// executor again, the event loop); a lane takes it from the event loop and answers it from the reader's thread.
/// The width bounds the threads blocked in SQLite: a plain dispatch to the global queue would start another
/// thread for every read waiting for one of the pool's readers.
final class ReadLanes: Sendable {
    private struct State {
        var pending: [@Sendable () -> Void] = []
        var head = 0
        var running = 0
    }

    let width: Int
    private let state = NIOLockedValueBox(State())
    private let queue = DispatchQueue(label: "timeline.store.reads", attributes: .concurrent)

    init(width: Int) {
        self.width = max(1, width)
    }

    func submit(_ work: @escaping @Sendable () -> Void) {
        let start = state.withLockedValue { s in
            s.pending.append(work)
            guard s.running < width else { return false }
            s.running += 1
            return true
        }
        if start { queue.async { self.drain() } }
    }

    private func drain() {
        while true {
            let next = state.withLockedValue { s -> (@Sendable () -> Void)? in
                guard s.head < s.pending.count else {
                    s.pending.removeAll(keepingCapacity: true)
                    s.head = 0
                    s.running -= 1
                    return nil
                }
                let work = s.pending[s.head]
                s.head += 1
                // Taken reads leave the array in halves, so that a lane that never runs dry does not keep them all.
                if s.head >= 64, s.head * 2 >= s.pending.count {
                    s.pending.removeFirst(s.head)
                    s.head = 0
                }
                return work
            }
            guard let next else { return }
            next()
        }
    }
}

extension SQLiteStore {
    public func event(
        _ id: EventID, asOf version: Int64?, completion: @escaping @Sendable (Result<EventView?, Error>) -> Void
    ) {
        lanes.submit {
            completion(
                Result {
                    do {
                        return try self.pool.unsafeRead { db in try Self.event(db, id, asOf: version) }
                    } catch let error as DatabaseError {
                        throw StoreErrors.map(error, doing: "read an event")
                    }
                })
        }
    }
}
