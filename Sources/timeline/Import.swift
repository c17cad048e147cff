import ArgumentParser
import Foundation
import TimelineClient
import TimelineCore
import TimelineStore

struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Propose a document's events to the server (seed-text or jsonl).",
        discussion: "Example: timeline import timeline.txt --format seed-text")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The document, or - for standard input.") var file: String
    @Option(help: "seed-text or jsonl.") var format = "seed-text"

    func validate() throws {
        guard Importer.Format(rawValue: format) != nil else { throw ValidationError("--format is seed-text or jsonl") }
    }

    func run() async throws {
        let client = try global.client()
        let bytes = try Batch.read(file)
        var texts: [String]
        var lines: [Int]
        switch Importer.Format(rawValue: format)! {
        case .seedText:
            let doc = try SeedDocument.parse(bytes)
            for w in doc.warnings { FileHandle.standardError.write(Data("warning: \(w)\n".utf8)) }
            let proposals = doc.proposals(
                author: "", time: WallClock.now(), idSeed: ULID.generate(at: WallClock.now()).string)
            texts = proposals.map { p in
                guard case .object(var o) = EditCodec.proposalJSON(p) else { return "" }
                o["author"] = nil
                o["time"] = nil
                return JSON.object(o).canonicalString
            }
            lines = [0] + doc.entries.map(\.line)
        case .jsonl:
            (texts, lines) = try Batch.checkedLines(bytes)
        }
        let report = try await client.sendBatches(texts, lineNumbers: lines, progress: Output.progress)
        await Output.refreshReplica(client)
        if global.json {
            Output.json([
                "edits": .int(Int64(report.edits)), "first": .int(report.firstVersion),
                "last": .int(report.lastVersion),
            ])
        } else {
            print("imported \(report.edits) edits, versions \(report.firstVersion)–\(report.lastVersion)")
        }
    }
}
