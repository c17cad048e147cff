import TimelineCore
import TimelineStore

/// What a push did, in all and to each item.
public struct PushReport: Sendable {
    public var accepted = 0
    /// Proposals of which some fields merged and went in while others became conflicts.
    public var merged = 0
    public var conflicts = 0
    /// Items the server refused (kept in the outbox, marked, no longer sent).
    public var refused = 0
    /// What became of each item sent, by outbox ID.
    public var outcomes: [Int64: Outcome] = [:]
    /// Why the push stopped before the end of the queue (the connection broke, or the server refused for a
    /// reason about the moment, not the edit): the items not in `outcomes` are still queued.
    public var stopped: TimelineError?
    public init() {}

    public enum Outcome: Sendable, Equatable {
        /// In the log at this version (the last, for an edit that was proposed again after a partial merge).
        case accepted(version: Int64)
        /// An earlier push went in but its OK was lost: the edit was already there.
        case alreadyThere
        /// A true merge conflict (§8): `conflicts` fields are recorded; the rest went in at `version`, if any did.
        case conflicted(conflicts: Int, version: Int64?)
        /// Refused for a reason that sending it again would not change; kept in the outbox, marked.
        case refused(code: ErrorCode, message: String)
    }
}

extension Outbox {
    /// Sends the queued items in order over `conn`. Accepted edits leave the outbox; a conflict keeps what merges
    /// (proposed again on the current revision) and records the rest; a refusal keeps the edit in the outbox,
    /// marked with the server's reason, and no longer sends it. Nothing typed is dropped. A broken connection, or
    /// a refusal that is about the moment rather than the edit (`ErrorCode.isTransient`), stops the push with the
    /// remaining items still queued, and says why in `stopped`: what was sent before is reported either way.
    public func push(using conn: TimelineConnection) async throws -> PushReport {
        var report = PushReport()
        do {
            try await push(using: conn, into: &report)
        } catch let error as TimelineError {
            report.stopped = error
        }
        return report
    }

    private func push(using conn: TimelineConnection, into report: inout PushReport) async throws {
        for item in try queued() {
            var proposal = item.proposal
            var recorded: [Conflict] = []
            var attempts = 0
            var outcome: PushReport.Outcome?
            var lastVersion: Int64?
            while outcome == nil {
                attempts += 1
                let reply = try await conn.send(.propose(edit: proposal.canonicalString))
                if reply.status == .ok {
                    lastVersion = reply.json?["version"]?.intValue ?? lastVersion
                    outcome =
                        recorded.isEmpty
                        ? .accepted(version: lastVersion ?? 0)
                        : .conflicted(conflicts: recorded.count, version: lastVersion)
                    break
                }
                let op = proposal["op"]?.stringValue ?? ""
                if reply.code == .duplicateID, op == "annotation.add" || op == "event.create", attempts == 1 {
                    outcome = .alreadyThere
                    break
                }
                if reply.code?.isTransient == true {
                    // Whatever merged already went in; the rest waits.
                    if !recorded.isEmpty { try settle(item.id, conflicts: recorded) }
                    throw reply.error
                }
                guard reply.code == .conflict, let detail = reply.json, attempts < 4 else {
                    if recorded.isEmpty {
                        let code = reply.code ?? .badReply
                        try markRefused(item.id, code: code, message: reply.message)
                        outcome = .refused(code: code, message: reply.message)
                    } else {
                        // Part of it went in and part conflicted; what is left was refused on its own.
                        outcome = .conflicted(conflicts: recorded.count, version: lastVersion)
                    }
                    break
                }
                let clashes = detail["conflicts"]?.arrayValue ?? []
                recorded += clashes.map { c in
                    Conflict(
                        id: 0, created: WallClock.now(), event: item.event, field: c["field"]?.stringValue ?? "",
                        ours: c["ours"] ?? .null, theirs: c["theirs"] ?? .null,
                        theirAuthor: c["their_author"]?.stringValue ?? "",
                        theirVersion: c["their_version"]?.intValue ?? 0,
                        code: .conflict, message: reply.message, proposal: proposal)
                }
                // What did not clash is proposed again on the current revision; nothing merges into a deleted event.
                let deleted = clashes.contains { $0["field"]?.stringValue == "deleted" }
                guard !deleted, op == "event.update", case .object(var o) = proposal, var set = o["set"]?.objectValue
                else {
                    outcome = .conflicted(conflicts: recorded.count, version: lastVersion)
                    break
                }
                for c in clashes { if let field = c["field"]?.stringValue { set[field] = nil } }
                let hasTags =
                    !(o["tags"]?["add"]?.arrayValue ?? []).isEmpty || !(o["tags"]?["remove"]?.arrayValue ?? []).isEmpty
                guard !set.isEmpty || hasTags else {
                    outcome = .conflicted(conflicts: recorded.count, version: lastVersion)
                    break
                }
                o["set"] = .object(set)
                o["base"] = detail["event"]?["revision"] ?? o["base"]
                proposal = .object(o)
            }
            let result = outcome!
            report.outcomes[item.id] = result
            switch result {
            case .accepted, .alreadyThere: report.accepted += 1
            case .conflicted(_, let version):
                report.conflicts += recorded.count
                // Merged in part: what did not clash went in.
                if version != nil { report.merged += 1 }
            case .refused:
                report.refused += 1
                continue  // marked, and kept
            }
            try settle(item.id, conflicts: recorded)
        }
    }
}
