import ArgumentParser
import TimelineClient
import TimelineCore
import TimelineLink

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replica version and state hash, queued and refused edits, conflicts.",
        discussion: "Example: timeline status --json")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let client = try global.client()
        let s = try await client.status()
        let state = try await client.replica.stateHash().hex
        let identity = try client.identity()
        let refused = try client.outbox().filter { $0.refusal != nil }
        if global.json {
            Output.json([
                "version": .int(s.version), "queued": .int(Int64(s.pending)), "pending": .int(Int64(s.pending)),
                "refused": .int(Int64(s.refused)),
                "conflicts": .int(Int64(s.conflicts)), "dataset": .string(s.dataset), "state": .string(state),
                "server": .string("\(client.config.host):\(client.config.port)"),
                "user": identity.map { .string($0.user) } ?? .null,
                "role": identity.map { .string($0.role.rawValue) } ?? .null,
            ])
            return
        }
        print("server    \(client.config.host):\(client.config.port)")
        if let identity { print("you       \(identity.user) (\(identity.role.rawValue))") }
        print("dataset   \(s.dataset)")
        print("version   \(s.version)")
        print("state     \(state)")
        print(
            "queued    \(s.pending) edit\(s.pending == 1 ? "" : "s")\(s.pending > 0 ? " (sent by timeline sync)" : "")")
        print("refused   \(s.refused) edit\(s.refused == 1 ? "" : "s")")
        let short = try await client.shortForms(refused.compactMap { $0.event?.description })
        for item in refused {
            let r = item.refusal!
            let on = item.event.map { " on \(short[$0.description] ?? $0.description)" } ?? ""
            print(
                "  \(Output.bold("\(item.id)"))  \(Output.proposalSummary(item.proposal))\(on): \(r.code) \(r.message)")
        }
        if !refused.isEmpty { print("  retry or drop them: timeline outbox retry N | timeline outbox drop N") }
        print("conflicts \(s.conflicts)\(s.conflicts > 0 ? " (timeline conflicts)" : "")")
    }
}
