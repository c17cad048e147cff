import ArgumentParser
import Foundation
import TimelineCore
import TimelineServer
import TimelineStore

struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load a document into the store offline, all or nothing.",
        discussion: """
            seed-text: the bullet-and-reference timeline style of the sample; jsonl: one edit per line, as
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
            let dir = DataDirectory(path: data.directory)
            let lock = try dir.lockForWriting()
            defer { withExtendedLifetime(lock) {} }
            let store = try SQLiteStore(path: dir.storePath)
            let report = try await Importer.load(
                bytes, format: format, into: store, author: author, time: WallClock.now(), trusted: true)
            for warning in report.warnings {
                FileHandle.standardError.write(Data("warning: \(warning)\n".utf8))
            }
            print(
                "imported \(report.events) events in \(report.edits) edits, versions \(report.firstVersion)-\(report.lastVersion)"
            )
        } catch {
            fail(describe(error))
        }
    }
}

struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the whole timeline as JSONL (imports back to the identical state hash).")

    @OptionGroup var data: DataOptions

    func run() async throws {
        do {
            let (_, store, live) = try data.openStore()
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
