import ArgumentParser
import Dispatch
import Foundation
import TimelineClient
import TimelineCore
import TimelineLink
import TimelineStore

struct Batch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send JSONL edits in atomic batches (for scripts and bulk edits).",
        discussion: """
            One edit per line, as PROPOSE takes it (Protocol/PROTOCOL.md §6.5). Lines are checked before \
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
        // The lines are checked before the connection is opened: opened beside the check, it saved 10-20 ms,
        // but a bad line's report then raced the process's exit against OpenSSL setting the connection up
        // (a crash under TSan), or waited for a server that does not answer.
        var (sent, lines) = try Batch.checkedLines(try Batch.read(file))
        guard !sent.isEmpty else {
            if global.json {
                Output.json(["edits": 0, "batches": 0])
            } else {
                print("no edits in the input: nothing was sent")
            }
            return
        }
        try await Batch.fillBases(&sent, lines: lines, from: client)
        let report = try await client.sendBatches(sent, lineNumbers: lines, progress: Output.progress)
        if !noPull { await Output.refreshReplica(client) }
        if global.json {
            Output.json([
                "edits": .int(Int64(report.edits)), "batches": .int(Int64(report.batches)),
                "first": .int(report.firstVersion), "last": .int(report.lastVersion),
            ])
        } else {
            print(
                "\(report.edits) edit\(report.edits == 1 ? "" : "s") in \(report.batches) batch\(report.batches == 1 ? "" : "es"), versions \(report.firstVersion)–\(report.lastVersion)"
            )
        }
    }

    /// The JSONL document's edit lines as written (the server stamps author and time), each with its line
    /// number, after every line has been checked as the server will check it: a bad line stops everything here.
    ///
    /// The server waits while this runs (0.75 s for 100,000 lines here), so the lines are checked in one run per
    /// core, at the same time, and merged into what one pass would give.
    static func checkedLines(_ bytes: [UInt8]) throws -> (texts: [String], lines: [Int]) {
        let all = try TextLines.split(bytes)
        let time = WallClock.now()
        let cores = all.count < 4_096 ? 1 : max(1, ProcessInfo.processInfo.activeProcessorCount)
        let step = (all.count + cores - 1) / cores
        let runs = Array<JSONLines.CheckedRun>(unsafeUninitializedCapacity: cores) { buffer, count in
            // Each iteration initializes its own element only.
            nonisolated(unsafe) let base = buffer.baseAddress!
            DispatchQueue.concurrentPerform(iterations: cores) { i in
                let part = all[min(i * step, all.count)..<min((i + 1) * step, all.count)]
                (base + i).initialize(to: JSONLines.check(part, author: "me", time: time, trusted: false))
            }
            count = cores
        }
        let lines = try JSONLines.merged(runs)
        return (lines.map { all[$0 - 1] }, lines)
    }

    static func read(_ file: String) throws -> [UInt8] {
        if file == "-" { return Array(FileHandle.standardInput.readDataToEndOfFile()) }
        guard let handle = FileHandle(forReadingAtPath: (file as NSString).expandingTildeInPath) else {
            throw TimelineError(.notFound, "cannot read \(file): \(String(cString: strerror(errno)))")
        }
        defer { try? handle.close() }
        return Array((try? handle.readToEnd()) ?? Data())
    }

    /// Whether a line names an update, a deletion or a retraction and no base: only those are read again.
    static func mayNeedBase(_ text: String) -> Bool {
        var copy = text
        return copy.withUTF8 { bytes -> Bool in
            func has(_ needle: StaticString) -> Bool {
                let n = needle.utf8CodeUnitCount
                guard bytes.count >= n else { return false }
                let first = needle.utf8Start[0]
                var i = 0
                while i <= bytes.count - n {
                    if bytes[i] == first, memcmp(bytes.baseAddress! + i, needle.utf8Start, n) == 0 { return true }
                    i += 1
                }
                return false
            }
            return (has(".update\"") || has(".delete\"") || has(".retract\"")) && !has("\"base\"")
        }
    }

    /// A change of an event or an annotation made on what this replica shows: a line that gives no `base` gets
    /// the event's revision here, as `timeline edit` does. (Without one it was made on revision 0, and every field
    /// anyone ever changed would conflict.) Only such lines are read again.
    static func fillBases(_ texts: inout [String], lines: [Int], from client: TimelineClient) async throws {
        for i in texts.indices {
            let text = texts[i]
            // Bytes searched in place: String's contains went Character by Character, which for a bulk batch of
            // 100,000 annotations cost more than a third of the send (the bulk-batch benchmark).
            guard Self.mayNeedBase(text), case .object(var o) = try JSON(parsing: text),
                let op = o["op"]?.stringValue,
                ["event.update", "event.delete", "annotation.update", "annotation.retract"].contains(op),
                let event = o["event"]?.stringValue.flatMap(EventID.init)
            else { continue }
            guard let view = try await client.replica.event(event, asOf: nil) else {
                throw TimelineError(
                    .notFound, "line \(lines[i]): event \(event) is not in the replica (timeline pull?)")
            }
            o["base"] = .int(view.event.revision)
            texts[i] = JSON.object(o).canonicalString
        }
    }
}
