import TimelineCore
import TimelineStore

/// What a push did.
public struct PushReport: Sendable {
    public var accepted = 0
    /// Proposals of which some fields merged and went in while others became conflicts.
    public var merged = 0
    public var conflicts = 0
    public init() {}
}

extension Outbox {
    /// Sends the outbox in order over `conn`. Accepted edits leave it; a conflict keeps what merges (proposed
    /// again on the current revision) and records the rest; other refusals are recorded too. Nothing typed is
    /// dropped. A broken connection stops the push with the remaining items still queued.
    public func push(using conn: TimelineConnection) async throws -> PushReport {
        var report = PushReport()
        for item in try items() {
            var proposal = item.proposal
            var recorded: [Conflict] = []
            var attempts = 0
            while true {
                attempts += 1
                let reply = try await conn.send("PROPOSE \(proposal.canonicalString)")
                if reply.status == .ok {
                    report.accepted += 1
                    break
                }
                let op = proposal["op"]?.stringValue ?? ""
                if reply.code == "DUPLICATE_ID", op == "annotation.add" || op == "event.create" {
                    break  // an earlier push went in but its OK was lost: the edit is already there
                }
                guard reply.code == "CONFLICT", let detail = reply.json, attempts < 4 else {
                    recorded.append(
                        Conflict(
                            id: 0, created: WallClock.now(), event: item.event, field: "", ours: proposal,
                            theirs: .null,
                            theirAuthor: "", theirVersion: 0, code: reply.code, message: reply.message,
                            proposal: proposal))
                    break
                }
                let clashes = detail["conflicts"]?.arrayValue ?? []
                recorded += clashes.map { c in
                    Conflict(
                        id: 0, created: WallClock.now(), event: item.event, field: c["field"]?.stringValue ?? "",
                        ours: c["ours"] ?? .null, theirs: c["theirs"] ?? .null,
                        theirAuthor: c["their_author"]?.stringValue ?? "",
                        theirVersion: c["their_version"]?.intValue ?? 0,
                        code: "CONFLICT", message: reply.message, proposal: proposal)
                }
                // What did not clash is proposed again on the current revision.
                guard op == "event.update", case .object(var o) = proposal, var set = o["set"]?.objectValue else {
                    break
                }
                for c in clashes { if let field = c["field"]?.stringValue { set[field] = nil } }
                let hasTags =
                    !(o["tags"]?["add"]?.arrayValue ?? []).isEmpty || !(o["tags"]?["remove"]?.arrayValue ?? []).isEmpty
                guard !set.isEmpty || hasTags else { break }
                o["set"] = .object(set)
                o["base"] = detail["event"]?["revision"] ?? o["base"]
                proposal = .object(o)
                report.merged += 1
            }
            report.conflicts += recorded.count
            try settle(item.id, conflicts: recorded)
        }
        return report
    }
}
