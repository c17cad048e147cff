import Dispatch
import GRDB
import NIOConcurrencyHelpers

/// Copies the write-ahead log back into the database file beside the writer, not inside it.
///
/// SQLite's automatic checkpoint runs in the connection that commits: every 1,000 WAL pages, one of the writer's
/// commits also copied the log into the file and synced it, while every append waited behind it (64 in-process
/// writers: 6,600 edits/s with it, about 10,000 without). Here the writer's automatic checkpoint waits for a 64 MiB
/// log (a safety net for bulk imports and short-lived processes), and a
/// PASSIVE checkpoint runs on a connection of its own after every few thousand committed edits (PASSIVE never
/// blocks the writer or readers). SQLite rewinds the log only when a write begins with every frame already
/// copied, which a checkpoint running beside a busy writer never sees; so once one has finished, the writer
/// copies the few frames committed since (`finishOnWriter`), and its next transaction starts the log afresh.
final class Checkpointer: Sendable {
    /// Committed edits between checkpoints: the WAL stays at a few MiB to a few dozen.
    static let everyEdits = 2_000

    private let connection: DatabaseQueue
    private let queue = DispatchQueue(label: "timeline.store.checkpoint")
    private let state = NIOLockedValueBox((sinceLast: 0, running: false, finished: false))

    init(path: String) throws {
        var config = Configuration()
        config.label = "timeline.checkpoint"
        config.busyMode = .timeout(10)
        config.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        connection = try DatabaseQueue(path: path, configuration: config)
    }

    /// Called by the writer after each commit; starts a checkpoint when enough has accumulated and none runs.
    func committed(_ edits: Int) {
        let start = state.withLockedValue { s -> Bool in
            s.sinceLast += edits
            guard s.sinceLast >= Self.everyEdits, !s.running else { return false }
            s.sinceLast = 0
            s.running = true
            return true
        }
        if start { queue.async { self.run() } }
    }

    /// Called by the writer on its connection after a commit: when a checkpoint beside it has finished, copies
    /// what was committed meanwhile (a few frames), so that the writer's next transaction rewinds the log.
    func finishOnWriter(_ db: Database) {
        guard
            state.withLockedValue({ s in
                defer { s.finished = false }; return s.finished
            })
        else { return }
        _ = try? db.checkpoint(.passive)
    }

    private func run() {
        // A failure (a busy reader, a full disk) leaves the WAL as it is; the next run tries again.
        let done = (try? connection.writeWithoutTransaction { db in try db.checkpoint(.passive) }) != nil
        state.withLockedValue {
            $0.running = false
            $0.finished = done
        }
    }
}
