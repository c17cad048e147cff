import Foundation
import TimelineCore
import TimelineLink
import TimelineStore

/// One lock per client home (`HOME/lock`), taken by whatever sends the outbox or writes the replica: commands
/// run side by side on one home (a script's `xargs -P`) take turns there, so that no edit is sent twice and no
/// pulled edit is applied by two processes. Readers do not take it: they read SQLite snapshots.
final class HomeLock: Sendable {
    let path: String

    init(home: String) { path = home + "/lock" }

    /// Runs `body` holding the lock, waiting for another command to finish first; says so on standard error if
    /// the wait is noticeable, naming the process that holds it.
    func withLock<T: Sendable>(_ body: () async throws -> T) async throws -> T {
        let lock = try FileLock(path: path)
        var waited = 0
        while try !lock.tryLock(exclusive: true) {
            if waited == 20 {
                FileHandle.standardError.write(
                    Data(
                        "waiting for another timeline command on this home\(lock.owner.map { " (pid \($0))" } ?? "") to finish…\n"
                            .utf8))
            }
            waited += 1
            // Polled rather than waited for in the kernel: a blocked thread would be one of the few the
            // concurrency runtime has.
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        defer { lock.unlock() }
        return try await body()
    }
}
