import Dispatch
import GRDB
import NIOConcurrencyHelpers

/// Copies the write-ahead log back into the database file beside the writer, not inside it.
///
/// SQLite's automatic checkpoint runs in the connection that commits: every 1,000 WAL pages, one of the writer's
/// commits also copied the log into the file and synced it, while every append waited behind it (64 in-process
/// writers: 6,600 edits/s with it, about 10,000 without). Here the writer's automatic checkpoint waits for a 64 MiB
/// log (a safety net for bulk imports and short-lived processes), and a
/// PASSIVE checkpoint runs on a connection of its own once the log has grown by `everyFrames` pages since the last
/// one (PASSIVE never blocks the writer or readers). SQLite rewinds the log only when a write begins with every
/// frame already copied, which a checkpoint running beside a busy writer never sees; so once one has finished,
/// the writer copies the few frames committed since (`finishOnWriter`), and its next transaction starts the log
/// afresh.
///
/// The log's growth is counted in pages, as the writer's WAL hook reports them (`timeline_sqlite_watch_wal`). It
/// was counted in edits (one checkpoint per 2,000), but what an edit writes varies twentyfold: a single PROPOSE
/// among 64 rewrites the index pages of the events it touches (about 3 pages an edit in B2), while a pull's page of
/// 10,000 appended edits fills about 0.2 pages an edit. The replica of a pull copied its log to the file every
/// 1.4 MiB, each time with a sync of the file.
final class Checkpointer: Sendable {
    private let connection: DatabaseQueue
    private let queue = DispatchQueue(label: "timeline.store.checkpoint")
    /// Pages the log may gain between checkpoints.
    let everyFrames: Int
    /// `atStart`: the log's length in pages when the last checkpoint started (0 once the log was rewound).
    private let state = NIOLockedValueBox((atStart: 0, running: false, finished: false))

    init(path: String, everyFrames: Int) throws {
        self.everyFrames = max(1, everyFrames)
        var config = Configuration()
        config.label = "timeline.checkpoint"
        config.busyMode = .timeout(10)
        config.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        connection = try DatabaseQueue(path: path, configuration: config)
    }

    /// Called by the writer after each commit with the log's length in pages; starts a checkpoint when the log
    /// has grown by `everyFrames` since the last one started and none runs.
    func committed(walFrames frames: Int) {
        let start = state.withLockedValue { s -> Bool in
            // A log shorter than at the last start was rewound: its pages are all new.
            if frames < s.atStart { s.atStart = 0 }
            guard frames - s.atStart >= everyFrames, !s.running else { return false }
            s.atStart = frames
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
