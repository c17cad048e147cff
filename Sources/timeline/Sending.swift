import ArgumentParser
import Foundation
import TimelineClient
import TimelineCore

/// After a local edit is stored: try to send the outbox at once; if the server cannot be reached the edit
/// stays queued for the next sync, and the command says so.
enum Sending {
    static func pushNow(_ client: TimelineClient, json: Bool, what: JSON) async throws {
        do {
            // Push and pull on one connection, so that what was just sent is in the replica when this returns.
            let report = try await client.sync().push
            let conflicts = try client.conflicts().count
            if json {
                Output.json([
                    "queued": false, "sent": .int(Int64(report.accepted)), "conflicts": .int(Int64(conflicts)),
                    "edit": what,
                ])
            } else {
                print("sent\(report.merged > 0 ? " (merged in part)" : "")")
                if conflicts > 0 {
                    print(
                        Output.warn("\(conflicts) conflict\(conflicts == 1 ? "" : "s") to resolve: timeline conflicts"))
                }
            }
            if conflicts > 0 { throw conflictsRemain }
        } catch let error as ClientError {
            let unreachable = error.code == ClientError.unreachable
            if json {
                Output.json(["queued": true, "reason": .string("\(error.code): \(error.message)"), "edit": what])
            } else {
                print(
                    "queued: \(unreachable ? "the server is unreachable" : error.message); it will be sent on the next sync"
                )
            }
            if !unreachable { throw ExitCode(1) }
        }
    }
}
