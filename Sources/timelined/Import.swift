import ArgumentParser
import Foundation
import TimelineCore
import TimelineServer
import TimelineStore

struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load a document into the store offline, all or nothing.",
        discussion: """
            seed-text: the bullet-and-reference timeline style of the sample; jsonl: one edit per line, as \
            `timelined export` writes (authors and times in the file are kept).

            Example:
              timelined import timeline.txt --data ./data --format seed-text
            """)

    @Argument(help: "The file to import, or - for standard input.")
    var file: String

    @OptionGroup var data: DataOptions

    @Option(help: "seed-text or jsonl.")
    var format = "seed-text"

    @Option(help: "Author of the imported edits.")
    var author = "import"

    @Option(
        help:
            "The document's name (seed-text): the same name again updates it. Default: the file's name without its extension."
    )
    var name: String?

    func run() async throws {
        guard let format = Importer.Format(rawValue: format) else { fail("unknown --format \(format)", code: 2) }
        let bytes: [UInt8]
        if file == "-" {
            bytes = Array(FileHandle.standardInput.readDataToEndOfFile())
        } else {
            guard let data = FileManager.default.contents(atPath: file) else { fail("cannot read \(file)") }
            bytes = Array(data)
        }
        do {
            let store: any TimelineStore
            var lock: FileLock?
            if data.data != nil, try data.choice(for: DataDirectory(path: data.directory)) == .sqlite {
                // One process writes a SQLite store: refused while a server has the folder. A PostgreSQL store takes
                // writes from any number of processes; the import is one more.
                let dir = DataDirectory(path: data.directory)
                lock = try dir.lockForWriting()
                store = try SQLiteStore(path: dir.storePath)
            } else {
                store = try await data.openStore().store
            }
            defer { withExtendedLifetime(lock) {} }
            let report: ImportReport
            if format == .seedText {
                guard let name = name ?? DocumentName.of(file) else {
                    fail("name the document read from standard input with --name", code: 2)
                }
                report = try await Importer.loadDocument(
                    bytes, name: name, into: store, author: author, time: WallClock.now())
            } else {
                report = try await Importer.load(
                    bytes, format: format, into: store, author: author, time: WallClock.now(), trusted: true)
            }
            for warning in report.warnings {
                FileHandle.standardError.write(Data("warning: \(warning)\n".utf8))
            }
            print(DocumentName.summary(report, name: name ?? DocumentName.of(file) ?? file))
        } catch {
            fail(describe(error))
        }
    }
}

struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the timeline as it is now as JSONL edits (imports back to the identical state hash).",
        discussion: """
            Events, annotations and metadata, one edit per line: importing them elsewhere gives the same state and \
            state hash, not the same history (versions, and who changed what when, stay in this log).
            """)

    @OptionGroup var data: DataOptions

    func run() async throws {
        do {
            let (_, store, _, live) = try await data.openStore()
            if let live {
                FileHandle.standardError.write(
                    Data(
                        "timelined: exporting a snapshot at version \(try await store.currentVersion()) while timelined pid \(live) serves this folder\n"
                            .utf8))
            }
            try await Exporter.jsonl(from: store) { line in print(line) }
        } catch {
            fail(describe(error))
        }
    }
}

/// How a document is named when no --name is given, and what its import did, in one sentence.
enum DocumentName {
    /// The file's name without its directory and extension; nil for standard input.
    static func of(_ file: String) -> String? {
        guard file != "-" else { return nil }
        let base = (file as NSString).lastPathComponent
        let stem = (base as NSString).deletingPathExtension
        return stem.isEmpty ? base : stem
    }

    static func summary(_ report: ImportReport, name: String) -> String {
        guard let plan = report.plan else {
            return
                "imported \(report.events) events in \(report.edits) edits, versions \(report.firstVersion)-\(report.lastVersion)"
        }
        if report.edits == 0 { return "\(name) is already in the timeline as it is: 0 new edits" }
        var parts = ["\(plan.created) new event\(plan.created == 1 ? "" : "s")"]
        if plan.updated > 0 { parts.append("\(plan.updated) updated") }
        if plan.adopted > 0 { parts.append("\(plan.adopted) already in the timeline") }
        var text =
            "imported \(name) (\(plan.key)): \(parts.joined(separator: ", ")); \(report.edits) edit\(report.edits == 1 ? "" : "s"), versions \(report.firstVersion)-\(report.lastVersion)"
        if !plan.kept.isEmpty {
            text +=
                "; kept the timeline's value of \(plan.kept.map { "\($0.event) (\($0.fields.joined(separator: ", ")))" }.joined(separator: ", ")), which someone changed since the last import"
        }
        if !plan.gone.isEmpty {
            text +=
                "; \(plan.gone.count) event\(plan.gone.count == 1 ? "" : "s") of its earlier version, no longer in it, kept"
        }
        return text
    }
}
