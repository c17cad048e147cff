import Foundation

/// systemd's readiness protocol (`sd_notify`), for a unit of `Type=notify`: one datagram of `KEY=value` lines to
/// the socket named by `NOTIFY_SOCKET`. Without that variable (not started by systemd) nothing is sent.
public enum SystemdNotify {
    /// Whether systemd started this process as a service (its output then goes to the journal).
    public static var isService: Bool { ProcessInfo.processInfo.environment["INVOCATION_ID"] != nil }

    /// Sends `state` (`READY=1`, `RELOADING=1`, `STOPPING=1`, `STATUS=…`, one per line); false when there is no
    /// socket to send to or the send failed.
    @discardableResult
    public static func send(_ state: String) -> Bool {
        guard let path = ProcessInfo.processInfo.environment["NOTIFY_SOCKET"], !path.isEmpty else { return false }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var name = Array(path.utf8)
        // A name starting with @ is in the abstract namespace: a leading NUL byte, no terminating one.
        if name.first == UInt8(ascii: "@") { name[0] = 0 }
        guard name.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: name) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + name.count + (name.first == 0 ? 0 : 1))
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let message = Array(state.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                message.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, socketAddress, length) }
            }
        }
        return sent == message.count
    }

    /// systemd's monotonic clock in microseconds, which `RELOADING=1` carries (`MONOTONIC_USEC`).
    public static var monotonicMicroseconds: UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1_000
    }
}
