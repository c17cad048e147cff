import ArgumentParser
import Dispatch
import Foundation
import TimelineClient
import TimelineCore
import TimelineLink

struct Watch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print edits as they happen, until Ctrl-C; reconnects by itself if the server goes away.",
        discussion: """
            Each line is written whole as its edit commits, also into a pipe or a file. Examples:
              timeline watch
              timeline watch --json | grep --line-buffered annotation.add
            """)
    @OptionGroup var global: GlobalOptions
    @Option(help: "Also print the edits after this version first (default: only edits from now on).")
    var since: Int64?

    func run() async throws {
        let client = try global.client()
        let out = LineWriter()
        // Ctrl-C or SIGTERM ends the watch between two lines, never inside one.
        let stop = StopSignals([SIGINT, SIGTERM]) { out.finish() }
        defer { withExtendedLifetime(stop) {} }
        // From now on: the server's head as it greets (edits committed since are shown, none before).
        let connection = try await client.connect()
        let head = connection.serverVersion
        await connection.close()
        if let since, since > head {
            throw ValidationError(
                "--since \(since) is after the server's last version (\(head)); give a version up to \(head), or leave --since out to watch from now on"
            )
        }
        var last = since ?? head
        var titles: [EventID: String] = [:]
        var delay = 1.0
        while true {
            do {
                for try await edit in client.watch(since: last) {
                    delay = 1.0
                    last = edit.version
                    if global.json {
                        out.write(EditCodec.json(edit).canonicalString)
                        continue
                    }
                    if let event = edit.event, titles[event] == nil {
                        titles[event] = (try? await client.replica.event(event, asOf: nil))?.event.title
                    }
                    switch edit.change {
                    case .createEvent(let f): titles[edit.event!] = f.title
                    case .updateEvent(let p): if let t = p.title { titles[edit.event!] = t }
                    default: break
                    }
                    let short = (try? await client.shortForms(Output.ids(of: edit))) ?? [:]
                    out.write(Output.editLine(edit, short: short, titles: titles))
                }
                return  // ended by DONE
            } catch let error as TimelineError {
                guard [.unreachable, .shutdown, .shuttingDown, .idleTimeout].contains(error.code)
                else { throw error }
                // The server went away (or is restarting): back off, then resume after the last edit shown.
                let reason = error.code == .shutdown ? "the server is shutting down" : error.message
                if global.json {
                    Output.error(
                        code: error.code, message: "\(reason); reconnecting",
                        extra: ["reconnecting_in": .int(Int64(delay)), "after_version": .int(last)])
                } else {
                    FileHandle.standardError.write(
                        Data(
                            "timeline watch: \(reason); reconnecting in \(Int(delay)) s (after version \(last))\n".utf8)
                    )
                }
                try await Task.sleep(nanoseconds: UInt64(delay * 1e9))
                delay = min(30, delay * 2)
            }
        }
    }
}

/// Writes whole lines to standard output, one `write(2)` each, so that a reader in a pipe gets each line as it
/// happens (stdio would hold them until 16 KiB had gathered) and a signal never leaves half a line.
final class LineWriter: Sendable {
    private let lock = NSLock()
    private nonisolated(unsafe) var finished = false

    func write(_ line: String) {
        lock.lock()
        defer { lock.unlock() }
        guard !finished else { return }
        var bytes = Array((line + "\n").utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes {
                Foundation.write(STDOUT_FILENO, $0.baseAddress! + offset, $0.count - offset)
            }
            if n < 0 {
                if errno == EINTR { continue }
                exit(errno == EPIPE ? 0 : 1)  // the reader went away: nothing more to say
            }
            offset += n
        }
        bytes.removeAll()
    }

    /// Ends the process once any line being written is complete.
    func finish() -> Never {
        lock.lock()
        finished = true
        exit(0)
    }
}

/// Handles signals on a dispatch queue instead of letting them kill the process at an arbitrary instruction.
final class StopSignals {
    private let sources: [any DispatchSourceSignal]

    init(_ signals: [Int32], _ handler: @escaping @Sendable () -> Void) {
        sources = signals.map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler(handler: handler)
            source.resume()
            return source
        }
    }
}
