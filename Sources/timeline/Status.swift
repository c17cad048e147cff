import ArgumentParser
import TimelineClient

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replica version, queued edits and conflicts.",
        discussion: "Example: timeline status --json")
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let client = try global.client()
        let s = try await client.status()
        if global.json {
            Output.json([
                "version": .int(s.version), "pending": .int(Int64(s.pending)), "conflicts": .int(Int64(s.conflicts)),
                "dataset": .string(s.dataset), "server": .string("\(client.config.host):\(client.config.port)"),
            ])
        } else {
            print("server    \(client.config.host):\(client.config.port)")
            print("dataset   \(s.dataset)")
            print("version   \(s.version)")
            print("pending   \(s.pending) edit\(s.pending == 1 ? "" : "s") queued")
            print("conflicts \(s.conflicts)")
        }
    }
}
