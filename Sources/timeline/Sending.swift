import ArgumentParser
import Foundation
import TimelineClient
import TimelineCore
import TimelineLink

/// After a local edit is queued: sends the outbox at once and says exactly what became of that edit. Sent,
/// merged with conflicts, refused by the server, or still queued because the server cannot be reached: each is
/// said as what it is, with its own exit code.
enum Sending {
    /// `item`: the outbox item this command queued; `describe`: how to name it to a person ("annotation K3F7QAB on
    /// EPPCEN5 …"), asked once the replica holds what was sent, so that the short IDs it prints are its; `edit`:
    /// how to name it to a script.
    ///
    /// A new edit the server refuses is reported and not kept (its author is here to read why); a refused edit
    /// retried (`keepRefused`) stays in the outbox, marked again.
    static func sendNow(
        _ client: TimelineClient, item: Int64, json: Bool, edit: JSON, keepRefused: Bool = false,
        describe: () async -> String
    ) async throws {
        let push: PushReport
        do {
            push = try await client.connect().closing { conn in
                let push = try await client.push(using: conn)
                // What was just sent goes into the replica on the same connection; failing that is only a warning.
                if push.stopped == nil { await Output.refreshReplica(client, using: conn) }
                return push
            }
        } catch let error as TimelineError {
            try queued(client, item: item, error: error, json: json, what: await describe(), edit: edit)
            return
        }
        let what = await describe()
        if push.outcomes[item] == nil, let stopped = push.stopped {
            try queued(client, item: item, error: stopped, json: json, what: what, edit: edit)
            return
        }
        let others = push.outcomes.filter { $0.key != item }
        switch push.outcomes[item] {
        case .accepted(let version)?, .conflicted(_, let version?)?:
            var conflicts = 0
            if case .conflicted(let n, _)? = push.outcomes[item] { conflicts = n }
            if json {
                Output.json([
                    "state": conflicts > 0 ? "conflict" : "sent", "version": .int(version),
                    "conflicts": .int(Int64(conflicts)), "edit": edit,
                ])
            } else if conflicts > 0 {
                print("sent \(what) in part, version \(version)")
                print(
                    Output.warn(
                        "\(conflicts) field\(conflicts == 1 ? "" : "s") changed by someone else meanwhile: see timeline conflicts"
                    ))
            } else {
                print("sent \(what): version \(version)")
            }
            try reportOthers(others, json: json)
            if conflicts > 0 { throw conflictsRemain }
        case .conflicted(let n, nil)?:
            if json {
                Output.json(["state": "conflict", "conflicts": .int(Int64(n)), "edit": edit])
            } else {
                print(
                    Output.warn(
                        "\(what) was not applied: \(n) field\(n == 1 ? "" : "s") changed by someone else meanwhile; see timeline conflicts"
                    ))
            }
            try reportOthers(others, json: json)
            throw conflictsRemain
        case .alreadyThere?:
            if json {
                Output.json(["state": "sent", "edit": edit, "already": true])
            } else {
                print("\(what) was already in the timeline (an earlier send went in)")
            }
            try reportOthers(others, json: json)
        case .refused(let code, let message)?:
            try refused(
                client, item: item, code: code, message: message, json: json, what: what, edit: edit, keep: keepRefused)
            try reportOthers(others, json: json)
            throw ExitCode(1)
        case nil:
            // Not in this push's report: another command on this home sent the queue while this one waited for its
            // turn (and may have had it refused), or an earlier edit stopped the push before it.
            let mine = try client.outbox().first { $0.id == item }
            if let refusal = mine?.refusal {
                try refused(
                    client, item: item, code: refusal.code, message: refusal.message, json: json, what: what,
                    edit: edit,
                    keep: keepRefused)
                throw ExitCode(1)
            } else if mine == nil {
                if json {
                    Output.json(["state": "sent", "edit": edit])
                } else {
                    print("sent \(what) (by another timeline command on this home, at the same time)")
                }
            } else if json {
                Output.json(["state": "queued", "edit": edit])
            } else {
                print("queued \(what) behind earlier edits; it will be sent by the next timeline sync")
            }
            try reportOthers(others, json: json)
        }
    }

    /// Says that the server refused the edit, and that it is dropped or (`keep`) kept in the outbox.
    static func refused(
        _ client: TimelineClient, item: Int64, code: ErrorCode, message: String, json: Bool, what: String, edit: JSON,
        keep: Bool
    ) throws {
        if !keep { try client.drop(item) }
        let fate = keep ? "kept in timeline outbox as \(item)" : "nothing was kept"
        if json {
            Output.error(
                code: code, message: message, extra: ["state": "refused", "kept": .bool(keep), "edit": edit])
        } else {
            FileHandle.standardError.write(Data("timeline: refused by the server: \(code): \(message); \(fate)\n".utf8))
        }
    }

    /// The edit could not be sent: nothing of it reached the server, or its answer did not come back. It is
    /// still queued, and the next sync sends it (an annotation or event that did go in is known by its ID).
    static func queued(
        _ client: TimelineClient, item: Int64, error: TimelineError, json: Bool, what: String, edit: JSON
    ) throws {
        guard try client.outbox().contains(where: { $0.id == item && $0.refusal == nil }) else { throw error }
        if json {
            Output.json([
                "state": "queued", "code": .string(error.code.rawValue), "message": .string(error.message),
                "edit": edit,
            ])
        } else if error.code == .unreachable {
            print("queued \(what): \(error.message); it will be sent by the next timeline sync")
        } else if error.code == .authFailed || error.code == .authRevoked {
            print("queued \(what), not sent: \(Output.describe(error))")
        } else {
            print("queued \(what), not sent: \(Output.describe(error)); it will be sent by the next timeline sync")
        }
        // An unreachable server is what offline work is for; anything else needs a person.
        if error.code != .unreachable { throw ExitCode(1) }
    }

    /// Earlier queued edits that this push sent as well: said in one line each for those not simply accepted.
    static func reportOthers(_ others: [Int64: PushReport.Outcome], json: Bool) throws {
        guard !others.isEmpty, !json else { return }
        let sent = others.values.filter {
            if case .accepted = $0 { return true }
            if case .alreadyThere = $0 { return true }
            return false
        }.count
        if sent > 0 { print("also sent \(sent) other queued edit\(sent == 1 ? "" : "s")") }
        let refused = others.values.filter {
            if case .refused = $0 { return true }
            return false
        }.count
        if refused > 0 {
            print(
                Output.warn(
                    "\(refused) other queued edit\(refused == 1 ? " was" : "s were") refused by the server and kept: see timeline outbox"
                ))
        }
    }
}
