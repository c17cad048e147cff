import Foundation

/// Long output through a pager on a terminal, as git does: `$PAGER` (`less -FRX` if unset: it quits at once when
/// everything fits, and keeps colours), never in a pipe, never with `--no-pager` or `--json`.
enum Pager {
    nonisolated(unsafe) private static var pid: pid_t = 0

    static func start(_ global: GlobalOptions) {
        guard !global.noPager, !global.json, Output.isTTY, pid == 0 else { return }
        // Decided now, while standard output is still the terminal.
        _ = Output.colour
        _ = Output.width
        let env = ProcessInfo.processInfo.environment
        let command = env["TIMELINE_PAGER"] ?? env["PAGER"] ?? "less -FRX"
        guard !command.isEmpty, command != "cat" else { return }
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return }
        var actions: posix_spawn_file_actions_t = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, fds[0], STDIN_FILENO)
        posix_spawn_file_actions_addclose(&actions, fds[1])
        var child: pid_t = 0
        let args = ["/bin/sh", "-c", command]
        var argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        var envp: [UnsafeMutablePointer<CChar>?] =
            env.merging(["LESS": env["LESS"] ?? "FRX"]) { a, _ in a }.map { strdup("\($0.key)=\($0.value)") } + [nil]
        let spawned = posix_spawn(&child, "/bin/sh", &actions, nil, &argv, &envp)
        posix_spawn_file_actions_destroy(&actions)
        for p in argv + envp { free(p) }
        close(fds[0])
        guard spawned == 0 else {
            close(fds[1])
            return
        }
        fflush(nil)
        dup2(fds[1], STDOUT_FILENO)
        close(fds[1])
        pid = child
        // A reader who quits the pager early must not see an error from a write into the closed pipe.
        signal(SIGPIPE, SIG_IGN)
        atexit { Pager.finish() }
    }

    /// Hands the pager the end of the output and waits for the reader to quit it.
    static func finish() {
        guard pid != 0 else { return }
        fflush(nil)
        close(STDOUT_FILENO)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        pid = 0
    }
}
