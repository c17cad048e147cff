import ArgumentParser
import TimelineClient
import TimelineCore
import TimelineLink

struct Push: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send queued local edits; conflicts are recorded (exit 3 if any remain).",
        discussion: "Example: timeline push --json")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let client = try global.client()
        let report = try await client.push()
        try PushSummary.say(report, pulled: nil, client: client, json: global.json)
    }
}

struct Sync: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Push local edits, merging by event ID, then pull (exit 3 if conflicts remain).",
        discussion: "Example: timeline sync && timeline status")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let client = try global.client()
        let conn: TimelineConnection
        do {
            conn = try await client.connect()
        } catch var error as TimelineError where error.code == .unreachable {
            let queued = try client.outbox().filter { $0.refusal == nil }.count
            if queued > 0 { error.message += "; \(queued) edit\(queued == 1 ? " stays" : "s stay") queued" }
            throw error
        }
        let (pushed, pulled) = try await conn.closing { conn in
            let pushed = try await client.push(using: conn)
            // After a push that stopped (the connection broke), pulling would most likely fail the same way.
            let pulled = pushed.stopped == nil ? try await client.pull(using: conn, progress: Output.progress) : nil
            return (pushed, pulled)
        }
        try PushSummary.say(pushed, pulled: pulled, client: client, json: global.json)
    }
}

/// What a push (and the pull after it) did, said once for `push` and `sync`: sent, merged, refused (kept in the
/// outbox), still queued and why; exit 1 if the push stopped or an edit was refused, else 3 if conflicts remain.
enum PushSummary {
    static func say(
        _ report: PushReport, pulled: TimelineClient.PullReport?, client: TimelineClient, json: Bool
    ) throws {
        let conflicts = try client.conflicts().count
        let queued = try client.outbox().filter { $0.refusal == nil }.count
        if json {
            var o: [String: JSON] = [
                "sent": .int(Int64(report.accepted)), "merged": .int(Int64(report.merged)),
                "refused": .int(Int64(report.refused)), "queued": .int(Int64(queued)),
                "conflicts": .int(Int64(conflicts)),
            ]
            if let pulled {
                o["pulled"] = .int(Int64(pulled.applied))
                o["version"] = .int(pulled.version)
            }
            if let stopped = report.stopped {
                o["code"] = .string(stopped.code.rawValue)
                o["message"] = .string(stopped.message)
            }
            Output.json(.object(o))
        } else {
            var parts = ["sent \(report.accepted) edit\(report.accepted == 1 ? "" : "s")"]
            if report.merged > 0 { parts.append("\(report.merged) merged in part") }
            if let pulled { parts.append("pulled \(pulled.applied); at version \(pulled.version)") }
            print(parts.joined(separator: ", "))
            if report.refused > 0 {
                print(
                    Output.warn(
                        "\(report.refused) edit\(report.refused == 1 ? " was" : "s were") refused by the server, and kept in timeline outbox:"
                    ))
                for (id, outcome) in report.outcomes.sorted(by: { $0.key < $1.key }) {
                    if case .refused(let code, let message) = outcome { print("  \(id)  \(code): \(message)") }
                }
            }
            if let stopped = report.stopped {
                print(
                    Output.warn(
                        "stopped: \(Output.describe(stopped)); \(queued) edit\(queued == 1 ? "" : "s") still queued"))
            }
            if conflicts > 0 {
                print(Output.warn("\(conflicts) conflict\(conflicts == 1 ? "" : "s") to resolve: timeline conflicts"))
            }
        }
        if report.stopped != nil || report.refused > 0 { throw ExitCode(1) }
        if conflicts > 0 { throw conflictsRemain }
    }
}
