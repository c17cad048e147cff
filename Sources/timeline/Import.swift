import ArgumentParser
import Foundation
import TimelineClient
import TimelineCore
import TimelineLink
import TimelineStore

struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Propose a document's events to the server (seed-text or jsonl).",
        discussion: """
            A seed-text document is kept under its name (the file's, or --name) with its own metadata and \
            references, beside the documents already there. Importing it again adds nothing; a changed version \
            updates the fields it changed, and leaves what analysts edited elsewhere. A jsonl file is sent as \
            it is, one edit per line.
            Example: timeline import q3-notes.txt
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The document, or - for standard input.") var file: String
    @Option(help: "seed-text or jsonl.") var format = "seed-text"
    @Option(help: "The document's name (default: the file's name without its extension).") var name: String?

    func validate() throws {
        guard Importer.Format(rawValue: format) != nil else { throw ValidationError("--format is seed-text or jsonl") }
        if format == "seed-text", file == "-", name == nil {
            throw ValidationError("name a document read from standard input with --name")
        }
    }

    func run() async throws {
        let client = try global.client()
        let bytes = try Batch.read(file)
        var texts: [String]
        var lines: [Int]
        var plan: DocumentImport.Plan?
        let documentName = name ?? Import.stem(file)
        switch Importer.Format(rawValue: format)! {
        case .seedText:
            let doc = try SeedDocument.parse(bytes)
            for w in doc.warnings { FileHandle.standardError.write(Data("warning: \(w)\n".utf8)) }
            // Planned against the timeline as it is now: the replica, brought up to date first.
            try await client.pull()
            let made = try await DocumentImport.plan(
                doc, name: documentName, store: client.replica, author: "", time: WallClock.now())
            // The role the server gave at the last connection: a document adds and edits events (editors).
            if let identity = try client.identity(),
                let op = made.proposals.map(\.change.operation).first(where: { !identity.role.mayPropose($0) })
            {
                throw TimelineError(
                    .forbidden,
                    "your token's role is \(identity.role.rawValue), which may not import documents (they add and change events: \(op.rawValue)); nothing was imported"
                )
            }
            plan = made
            texts = made.proposals.map { p in
                guard case .object(var o) = EditCodec.proposalJSON(p) else { return "" }
                o["author"] = nil
                o["time"] = nil
                return JSON.object(o).canonicalString
            }
            lines = Array(repeating: 0, count: texts.count)
        case .jsonl:
            (texts, lines) = try Batch.checkedLines(bytes)
        }
        if let plan, !plan.kept.isEmpty, !global.json {
            let short = try await client.shortForms(plan.kept.map(\.event.description))
            FileHandle.standardError.write(
                Data(
                    ("the document changed fields that someone changed in the timeline since the last import; their values are kept: "
                        + plan.kept.map {
                            "\(short[$0.event.description] ?? $0.event.description) (\($0.fields.joined(separator: ", ")))"
                        }
                        .joined(separator: ", ") + "\n").utf8))
        }
        if texts.isEmpty {
            if global.json {
                Output.json(["edits": 0, "name": .string(documentName)])
            } else {
                print("\(documentName) is already in the timeline as it is: 0 new edits")
            }
            return
        }
        let report: TimelineClient.BatchReport
        do {
            report = try await client.sendBatches(texts, lineNumbers: lines, progress: Output.progress)
        } catch var error as TimelineError where plan != nil {
            // A document's edits have no input lines of their own: say what became of the document.
            error.message = error.message.replacingOccurrences(of: #"^line 0: "#, with: "", options: .regularExpression)
                .replacingOccurrences(of: "(no input line was applied)", with: "(nothing was imported)")
            throw error
        }
        await Output.refreshReplica(client)
        if global.json {
            var o: [String: JSON] = [
                "edits": .int(Int64(report.edits)), "first": .int(report.firstVersion),
                "last": .int(report.lastVersion),
            ]
            if let plan {
                o["name"] = .string(documentName)
                o["created"] = .int(Int64(plan.created))
                o["updated"] = .int(Int64(plan.updated))
                o["adopted"] = .int(Int64(plan.adopted))
            }
            Output.json(.object(o))
        } else if let plan {
            var parts = ["\(plan.created) new event\(plan.created == 1 ? "" : "s")"]
            if plan.updated > 0 { parts.append("\(plan.updated) updated") }
            if plan.adopted > 0 { parts.append("\(plan.adopted) already in the timeline") }
            print(
                "imported \(documentName): \(parts.joined(separator: ", ")); \(report.edits) edit\(report.edits == 1 ? "" : "s"), versions \(report.firstVersion)–\(report.lastVersion)"
            )
            if !plan.gone.isEmpty {
                let short = try await client.shortForms(plan.gone.map(\.description))
                print(
                    "\(plan.gone.count) event\(plan.gone.count == 1 ? "" : "s") of its earlier version, no longer in it, kept: "
                        + plan.gone.map { short[$0.description] ?? $0.description }.joined(separator: ", "))
            }
        } else {
            print("imported \(report.edits) edits, versions \(report.firstVersion)–\(report.lastVersion)")
        }
    }

    static func stem(_ file: String) -> String {
        let base = (file as NSString).lastPathComponent
        let stem = (base as NSString).deletingPathExtension
        return stem.isEmpty ? base : stem
    }
}
