import Foundation
import TimelineCore

/// An advisory lock on a file (`flock`), which the kernel drops with the process however it ends: how the
/// processes working on one folder (a server's data folder, a client's home) take turns. The file holds the
/// process ID of its last exclusive holder, so that a refusal can say who holds it.
public final class FileLock: Sendable {
    public let path: String
    private let fd: Int32

    /// Opens the lock file (creating it with mode 0600); takes no lock yet.
    public init(path: String) throws {
        self.path = path
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw TimelineError(.storeFailed, "cannot open \(path): \(String(cString: strerror(errno)))")
        }
    }

    deinit { close(fd) }

    /// Takes the lock if no other process holds it (for `exclusive`, or an exclusive one for a shared lock);
    /// false at once otherwise.
    public func tryLock(exclusive: Bool) throws -> Bool {
        while flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0 {
            if errno == EINTR { continue }
            if errno == EWOULDBLOCK { return false }
            throw TimelineError(.storeFailed, "cannot lock \(path): \(String(cString: strerror(errno)))")
        }
        if exclusive {
            let pid = "\(getpid())\n"
            _ = ftruncate(fd, 0)
            _ = pwrite(fd, pid, pid.utf8.count, 0)
        }
        return true
    }

    /// Waits for the lock.
    public func lock(exclusive: Bool) throws {
        while flock(fd, exclusive ? LOCK_EX : LOCK_SH) != 0 {
            if errno == EINTR { continue }
            throw TimelineError(.storeFailed, "cannot lock \(path): \(String(cString: strerror(errno)))")
        }
        if exclusive {
            let pid = "\(getpid())\n"
            _ = ftruncate(fd, 0)
            _ = pwrite(fd, pid, pid.utf8.count, 0)
        }
    }

    public func unlock() { flock(fd, LOCK_UN) }

    /// The process ID written by the last exclusive holder (who holds it now, when it is held).
    public var owner: Int32? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        return Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}

/// What root writes into a folder another user owns stays that user's: run with sudo, a command must not leave a
/// service's tokens, store or lock readable by root alone.
public enum FolderOwner {
    /// Gives `path` the owner of `folder` when this process is root and the folder is not root's.
    public static func match(_ path: String, folder: String) {
        var owner = stat()
        guard getuid() == 0, stat(folder, &owner) == 0, owner.st_uid != 0 else { return }
        _ = chown(path, owner.st_uid, owner.st_gid)
    }
}
