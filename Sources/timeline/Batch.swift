import ArgumentParser
import Foundation
import TimelineClient
import TimelineCore
import TimelineStore

struct Batch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send JSONL edits in atomic batches (for scripts and bulk edits).",
        discussion: """
            One edit per line, as PROPOSE takes it (Protocol/PROTOCOL.md §6.5). Lines are checked before
            anything is sent; each batch of up to the server's limit is all or nothing.
            Example:
              jq -c '{op:"annotation.add",event:.id,text:"reviewed",tags:["q3"]}' < events.jsonl | timeline batch -
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "A JSONL file, or - for standard input.") var file: String
    @Flag(help: "Do not pull into the local replica afterwards (a script that only writes saves the download).")
    var noPull = false

    func run() async throws {
        let client = try global.client()
        let (sent, lines) = try Batch.checkedLines(try Batch.read(file))
        let report = try await client.sendBatches(sent, lineNumbers: lines, progress: Output.progress)
        if !noPull { await Output.refreshReplica(client) }
        if global.json {
            Output.json([
                "edits": .int(Int64(report.edits)), "batches": .int(Int64(report.batches)),
                "first": .int(report.firstVersion), "last": .int(report.lastVersion),
            ])
        } else {
            print(
                "\(report.edits) edits in \(report.batches) batch\(report.batches == 1 ? "" : "es"), versions \(report.firstVersion)–\(report.lastVersion)"
            )
        }
    }

    /// The JSONL document's edit lines as written (the server stamps author and time), each with its line
    /// number, after every line has been checked as the server will check it: a bad line stops everything here.
    static func checkedLines(_ bytes: [UInt8]) throws -> (texts: [String], lines: [Int]) {
        let all = try TextLines.split(bytes)
        let lines = try JSONLines.check(all, author: "me", time: WallClock.now(), trusted: false)
        return (lines.map { all[$0 - 1] }, lines)
    }

    static func read(_ file: String) throws -> [UInt8] {
        if file == "-" { return Array(FileHandle.standardInput.readDataToEndOfFile()) }
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ClientError("NOT_FOUND", "cannot read \(file)")
        }
        return Array(data)
    }
}
