import Foundation
import Testing
import TimelineCore
import TimelineLink
import TimelineStore
import TimelineTLS

@testable import TimelineClient

/// The client library and the `timeline` CLI against a real `timelined`, with several client homes.
@Suite(.serialized) struct ClientTests {
    let eventID = EventID("019ECZQW007TKPA8XK03963NRD")!

    final class Homes: @unchecked Sendable {
        let root = ServerProcess.newDataFolder()
        init() { try? FileManager.default.createDirectory(at: root, withIntermediateDirectories: true) }
        func home(_ name: String) -> ClientHome { ClientHome(path: root.appendingPathComponent(name).path) }
        deinit { ServerProcess.removeData(root) }
    }

    func client(_ server: ServerProcess, _ homes: Homes, _ name: String, role: String = "editor") async throws
        -> TimelineClient
    {
        let config = ClientConfig(
            host: "127.0.0.1", port: server.port, token: try server.addToken(name, role: role),
            fingerprint: server.fingerprint, caFile: nil)
        let client = try await TimelineClient.initialize(home: homes.home(name), config: config)
        try await client.pull()
        return client
    }

    func update(_ client: TimelineClient, _ set: JSON) async throws {
        try client.enqueue([
            "op": "event.update", "event": .string(eventID.description),
            "base": .int(try await client.base(of: eventID)),
            "set": set,
        ])
    }

    @Test func offlineEditsOfDifferentFieldsAreBothKeptAndReplicasConverge() async throws {
        let homes = Homes()
        var server = try ServerProcess()
        let a = try await client(server, homes, "ana")
        let b = try await client(server, homes, "ben")
        let port = server.port
        let data = server.stopKeepingData()
        defer { ServerProcess.removeData(data) }
        // Both offline: the edits are stored, pushing says the server is unreachable, nothing is lost.
        try await update(a, ["title": "Ana's title"])
        try await update(b, ["summary": "Ben's summary"])
        _ = try await b.annotate(eventID, text: "Ben's note while offline", tags: ["offline"])
        await #expect { try await a.push() } throws: { ($0 as? TimelineError)?.code == .unreachable }
        #expect(try a.outbox().count == 1)
        #expect(try b.outbox().count == 2)
        server = try ServerProcess(data: data, port: port)
        _ = try await a.sync()
        _ = try await b.sync()
        _ = try await a.sync()
        let event = try await a.event(eventID)
        #expect(event.event.title == "Ana's title")
        #expect(event.event.summary == "Ben's summary")
        #expect(event.annotations.map(\.text) == ["Ben's note while offline"])
        #expect(event.annotations.first?.author == "ben")
        #expect(try await a.replica.stateHash() == b.replica.stateHash())
        #expect(try await a.replica.head() == b.replica.head())
        #expect(try a.conflicts().isEmpty && b.conflicts().isEmpty)
        _ = server
    }

    @Test func sameFieldIsAConflictThatResolvesAndConverges() async throws {
        let homes = Homes()
        let server = try ServerProcess()
        let a = try await client(server, homes, "ana")
        let b = try await client(server, homes, "ben")
        try await update(a, ["title": "Ana's title"])
        try await update(b, ["title": "Ben's title", "summary": "Ben's summary"])
        #expect(try await a.sync().conflicts == 0)
        let report = try await b.sync()
        #expect(report.conflicts == 1)
        #expect(report.push.merged == 1, "the summary went in, only the title clashed")
        let conflict = try #require(try b.conflicts().first)
        #expect(conflict.field == "title" && conflict.ours == "Ben's title" && conflict.theirs == "Ana's title")
        #expect(conflict.theirAuthor == "ana")
        try await b.resolve(conflict: conflict.id, .set(field: "title", value: "Agreed title"))
        #expect(try b.conflicts().isEmpty)
        _ = try await a.sync()
        let event = try await a.event(eventID).event
        #expect((event.title, event.summary) == ("Agreed title", "Ben's summary"))
        #expect(try await a.replica.stateHash() == b.replica.stateHash())
        #expect(try await a.replica.verify().ok)
    }

    @Test func concurrentAnnotationsAreAllKept() async throws {
        let homes = Homes()
        let server = try ServerProcess()
        let clients = [
            try await client(server, homes, "ana", role: "annotator"),
            try await client(server, homes, "ben", role: "annotator"),
            try await client(server, homes, "cy", role: "annotator"),
        ]
        for (i, c) in clients.enumerated() { _ = try await c.annotate(eventID, text: "note \(i)", tags: []) }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for c in clients { group.addTask { _ = try await c.sync() } }
            try await group.waitForAll()
        }
        for c in clients { _ = try await c.sync() }
        for c in clients {
            #expect(Set(try await c.event(eventID).annotations.map(\.text)) == ["note 0", "note 1", "note 2"])
        }
        // Pushing the same queued annotation twice (its OK lost) does not add it twice.
        let again = try await clients[0].annotate(eventID, text: "once", tags: [])
        _ = try await clients[0].sync()
        try clients[0].enqueue([
            "op": "annotation.add", "event": .string(eventID.description), "annotation": .string(again.description),
            "text": "once",
        ])
        _ = try await clients[0].sync()
        #expect(try await clients[0].event(eventID).annotations.filter { $0.text == "once" }.count == 1)
        #expect(try clients[0].conflicts().isEmpty)
    }

    @Test func aClientKilledMidPullResumesWithoutGapsOrDuplicates() async throws {
        let homes = Homes()
        let server = try ServerProcess()
        let writer = try await client(server, homes, "bulk")
        let lines = (0..<6_000).map { #"{"op":"annotation.add","event":"\#(eventID)","text":"bulk \#($0)"}"# }
        let sent = try await writer.sendBatches(lines, lineNumbers: Array(1...6_000))
        #expect(sent.edits == 6_000 && sent.lastVersion == 6_029)
        // A fresh home for the CLI, killed while pulling.
        let cliHome = homes.home("cli").path
        let timeline = ServerProcess.sibling("timeline")
        let token = try server.addToken("cli", role: "reader")
        let (initStatus, _, initErr) = try ServerProcess.run(
            [
                "init", "--home", cliHome, "--server", "127.0.0.1:\(server.port)", "--token", token, "--fingerprint",
                server.fingerprint.hex,
            ],
            executable: timeline)
        #expect(initStatus == 0, "\(initErr)")
        // A replica is made with 16 KiB pages (it only appends pulled pages), the primary keeps 4 KiB.
        #expect(sqlitePageSize(of: cliHome + "/replica.sqlite") == 16_384)
        #expect(sqlitePageSize(of: server.data.appendingPathComponent("timeline.sqlite").path) == 4_096)
        // init pulled everything; start over from a replica that is behind by making a second server-side burst.
        // Three pages of the client's PULL (5,000 edits each), so that a kill can land between two of them. A pull
        // that finished before the poll saw a page (a loaded machine delays the poll, not the pull) gets another
        // burst and another try: the kill must land mid-pull for the test to say anything.
        let replica = ClientHome(path: cliHome)
        // One connection to the replica's file, asked for the log's head as stored.
        let watcher = try TimelineClient(home: replica).replica
        var killedAt: Int64 = -1
        var start: Int64 = 6_029
        var target: Int64 = start
        for burst in 0..<5 where killedAt < 0 {
            let more = (0..<15_000).map {
                #"{"op":"annotation.add","event":"\#(eventID)","text":"more \#(burst) \#($0)"}"#
            }
            _ = try await writer.sendBatches(more, lineNumbers: Array(1...15_000))
            start = target
            target += 15_000
            let pull = Process()
            pull.executableURL = timeline
            pull.arguments = ["pull", "--home", cliHome]
            pull.standardOutput = Pipe()
            pull.standardError = Pipe()
            try pull.run()
            // Up to a minute for the first page to be stored (a debug build on a loaded machine is slow).
            for _ in 0..<60_000 where pull.isRunning {
                try await Task.sleep(nanoseconds: 1_000_000)
                let version = (try? await watcher.touchedEvents(after: .max).through) ?? 0
                if version > start, version < target {
                    kill(pull.processIdentifier, SIGKILL)
                    killedAt = version
                    break
                }
            }
            pull.waitUntilExit()
        }
        let resumed = try TimelineClient(home: replica)
        let mid = try await resumed.replica.currentVersion()
        #expect(killedAt == -1 || mid >= killedAt)
        try await resumed.pull()
        #expect(try await resumed.replica.currentVersion() == target)
        #expect(killedAt > start && killedAt < target, "killed mid-pull (at \(killedAt), pulling \(start)–\(target))")
        #expect(try await resumed.replica.verify().ok)
        let serverState = try JSON(parsing: try server.tool(["verify", "--json"]).1)["state"]?.stringValue
        #expect(try await resumed.replica.stateHash().hex == serverState)
    }

    @Test func watchIsAnAsyncSequenceOfCommittedEdits() async throws {
        let homes = Homes()
        let server = try ServerProcess()
        let watcher = try await client(server, homes, "watcher", role: "reader")
        let writer = try await client(server, homes, "writer", role: "annotator")
        let received = Task {
            var versions: [Int64] = []
            for try await edit in watcher.watch() {
                versions.append(edit.version)
                if versions.count == 2 { break }
            }
            return versions
        }
        // No pause for the watch to start: it asks from the watcher's head (29), so edits committed before its
        // WATCH arrives are streamed from the log, and those after it as they commit.
        _ = try await writer.annotate(eventID, text: "live one", tags: [])
        _ = try await writer.annotate(eventID, text: "live two", tags: [])
        _ = try await writer.sync()
        #expect(try await received.value == [30, 31])
    }

    @Test func editLinesThatDoNotDecodeAreAProtocolErrorNotSkipped() throws {
        #expect(try TimelineConnection.edit(fromLine: "* EVENT {}") == nil)
        #expect(throws: TimelineError.self) { try TimelineConnection.edit(fromLine: #"* EDIT {"version":1"#) }
        do {
            _ = try TimelineConnection.edit(fromLine: #"* EDIT {"op":"annotation.add"}"#)
            Issue.record("an edit without its fields decoded")
        } catch let e as TimelineError {
            #expect(e.code == .badReply)
            #expect(e.message.contains("does not decode"))
        }
    }

    @Test func aWrongFingerprintOrTokenIsRefusedWithAClearMessage() async throws {
        let homes = Homes()
        let server = try ServerProcess()
        let wrong = Fingerprint(hex: String(repeating: "ab", count: 32))!
        let config = ClientConfig(
            host: "127.0.0.1", port: server.port, token: server.adminToken, fingerprint: wrong, caFile: nil)
        await #expect {
            _ = try await TimelineClient.initialize(home: homes.home("x"), config: config)
        } throws: { error in
            guard let e = error as? TimelineError else { return false }
            return e.code == .certificateMismatch && e.message.contains(server.fingerprint.hex)
                && e.message.contains(wrong.hex)
        }
        var bad = config
        bad.fingerprint = server.fingerprint
        bad.token = "tl_nope"
        await #expect { _ = try await TimelineClient.initialize(home: homes.home("y"), config: bad) } throws: {
            ($0 as? TimelineError)?.code == .authFailed
        }
        var closed = bad
        closed.port = 1
        await #expect { _ = try await TimelineClient.initialize(home: homes.home("z"), config: closed) } throws: {
            ($0 as? TimelineError)?.code == .unreachable
        }
    }

    @Test func theCommandLine() async throws {
        let homes = Homes()
        let server = try ServerProcess()
        let timeline = ServerProcess.sibling("timeline")
        let home = homes.home("cli").path
        func run(_ args: [String]) throws -> (Int32, String, String) {
            try ServerProcess.run(args + ["--home", home], executable: timeline)
        }
        let token = try server.addToken("ana", role: "editor")
        #expect(
            try run([
                "init", "--server", "127.0.0.1:\(server.port)", "--token", token, "--fingerprint",
                server.fingerprint.hex,
            ]).0 == 0)
        let (logStatus, logJSON, _) = try run(["log", "--json"])
        #expect(logStatus == 0)
        let events = try logJSON.split(separator: "\n").map { try JSON(parsing: String($0)) }
        #expect(events.count == 28)
        let first = try #require(events.first?.objectValue)
        for key in ["id", "revision", "date", "title", "summary", "references", "tags", "annotations"] {
            #expect(first[key] != nil, "\(key)")
        }
        for key in ["text", "start", "end", "precision"] { #expect(first["date"]?[key] != nil, "date.\(key)") }
        #expect(first["references"]?.arrayValue?.first?["urls"] != nil)
        let (_, status, _) = try run(["status", "--json"])
        let s = try JSON(parsing: status)
        #expect(s["version"] == 29 && s["pending"] == 0 && s["conflicts"] == 0)
        // Prefixes of whole IDs: a unique one works, an ambiguous one lists the candidates by their short IDs.
        #expect(try run(["show", "019ECZQW007T"]).0 == 0)
        let (ambiguous, _, candidates) = try run(["show", "019ECZQW00N7"])
        #expect(ambiguous == 1 && candidates.contains("matches 2 events: N7HD93N, N7SWBTG"), "\(candidates)")
        let (annotated, annotateOut, _) = try run([
            "annotate", "019ECZQW007T", "checked against the MOFA sheet", "--tag", "verified",
        ])
        #expect(annotated == 0 && annotateOut.contains("sent"))
        let (_, shown, _) = try run(["show", "019ECZQW007T", "--json"])
        #expect(try JSON(parsing: shown)["annotations"]?.arrayValue?.first?["tags"] == ["verified"])
        // Bulk edits from JSONL, checked line by line before anything is sent.
        let bulk = (0..<5).map { #"{"op":"annotation.add","event":"019ECZQW007TKPA8XK03963NRD","text":"b\#($0)"}"# }
            .joined(separator: "\n")
        let batchFile = homes.root.appendingPathComponent("bulk.jsonl")
        try bulk.write(to: batchFile, atomically: true, encoding: .utf8)
        let (batched, batchOut, _) = try run(["batch", batchFile.path, "--json"])
        #expect(batched == 0)
        #expect(try JSON(parsing: batchOut)["edits"] == 5)
        try (bulk + "\n{\"op\":\"annotation.add\",").write(to: batchFile, atomically: true, encoding: .utf8)
        let (refused, _, refusedErr) = try run(["batch", batchFile.path])
        #expect(refused == 1 && refusedErr.contains("line 6"))
        // The connection opened during the check sent nothing: the server still holds the 35 edits.
        #expect(try run(["pull"]).0 == 0)
        #expect(try JSON(parsing: try run(["status", "--json"]).1)["version"] == 35)
        // Usage errors exit 2; help shows examples.
        #expect(try run(["log", "--since", "yesterday"]).0 == 2)
        #expect(try run(["edit", "019ECZQW007T"]).0 == 2)
        let (_, help, _) = try ServerProcess.run(["annotate", "--help"], executable: timeline)
        #expect(help.contains("Example"))
        let (_, markdown, _) = try run(["export", "--format", "markdown"])
        #expect(markdown.contains("## October 18 to 10, 2012:"))
        let (_, csv, _) = try run(["export", "--format", "csv"])
        #expect(csv.split(separator: "\n").count == 29)
    }

    /// A bad line is reported before `timeline batch` connects: against a server that accepts the TCP connection
    /// and never answers (the handshake would time out after 10 s), the line is reported at once. (A connection
    /// opened beside the check once made the report wait the 10 s, and under TSan crashed the exit.)
    @Test func aBadLineIsReportedWithoutWaitingForTheServer() throws {
        let homes = Homes()
        let silent = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(silent) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let listening = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { a in
                bind(silent, a, length) == 0 && listen(silent, 8) == 0 && getsockname(silent, a, &length) == 0
            }
        }
        try #require(listening)
        let home = homes.root.appendingPathComponent("silent")
        try FileManager.default.createDirectory(at: home, withIntermediateDirectories: true)
        let config: JSON = [
            "server": .string("127.0.0.1:\(UInt16(bigEndian: address.sin_port))"), "token": "tl_none",
            "fingerprint": .string(String(repeating: "ab", count: 32)), "dataset": "01M8NF81HDDC1XECZ0ARF9MKR3",
            "ca": nil,
        ]
        try config.canonicalString.write(
            to: home.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        let file = homes.root.appendingPathComponent("bad.jsonl")
        try #"{"op":"annotation.add""#.write(to: file, atomically: true, encoding: .utf8)
        let (status, _, err) = try ServerProcess.run(
            ["batch", file.path, "--home", home.path], executable: ServerProcess.sibling("timeline"))
        #expect(status == 1 && err.contains("line 1"), "\(err)")
        // Not a time bound: the listening socket says whether a connection was ever made. A connection the client
        // opened and closed again still waits in the backlog, so a non-blocking accept finds it.
        _ = fcntl(silent, F_SETFL, fcntl(silent, F_GETFL) | O_NONBLOCK)
        let accepted = accept(silent, nil, nil)
        let reason = errno
        if accepted >= 0 { close(accepted) }
        #expect(accepted == -1 && (reason == EAGAIN || reason == EWOULDBLOCK), "the client connected first")
    }

    /// `timeline batch` starts with a small batch, so that the server's writer starts early, and doubles up to the
    /// server's limit; the batches cover every line once, in order.
    @Test func batchesStartSmallAndDoubleUpToTheLimit() {
        #expect(
            TimelineClient.batchSizes(100_000, limit: 10_000)
                == [1_000, 2_000, 4_000, 8_000] + Array(repeating: 10_000, count: 8) + [5_000])
        #expect(TimelineClient.batchSizes(2_500, limit: 10_000) == [1_000, 1_500])
        #expect(TimelineClient.batchSizes(11, limit: 2) == [2, 2, 2, 2, 2, 1])
        #expect(TimelineClient.batchSizes(0, limit: 5).isEmpty)
        for count in [1, 999, 1_000, 1_001, 77_777] {
            for limit in [1, 3, 1_000, 1_500, 10_000] {
                let sizes = TimelineClient.batchSizes(count, limit: limit)
                #expect(sizes.reduce(0, +) == count && sizes.allSatisfy { $0 >= 1 && $0 <= limit })
            }
        }
    }

    /// A refused batch stops the run, and the report names every input line that was applied, including those
    /// of batches already in flight behind the refused one (a script must know what to re-send).
    @Test func aRefusedBatchReportsExactlyWhichLinesWereApplied() async throws {
        let homes = Homes()
        let server = try ServerProcess(arguments: ["--max-batch", "2"])
        let timeline = ServerProcess.sibling("timeline")
        let home = homes.home("bulk").path
        func run(_ args: [String]) throws -> (Int32, String, String) {
            try ServerProcess.run(args + ["--home", home], executable: timeline)
        }
        let token = try server.addToken("ana", role: "editor")
        let initialized = try run([
            "init", "--server", "127.0.0.1:\(server.port)", "--token", token, "--fingerprint", server.fingerprint.hex,
        ])
        #expect(initialized.0 == 0)
        // Line 4 names an event that does not exist: only the server can tell. Batch 2 (lines 3–4) is refused;
        // by then batches 3–5 (lines 5–10) are on their way (a window of four, refilled when batch 1's OK came),
        // and line 11 is never sent.
        let lines = (1...11).map { i in
            let event = i == 4 ? "01ARZ3NDEKTSV4RRFFQ69G5FAV" : "019ECZQW007TKPA8XK03963NRD"
            return #"{"op":"annotation.add","event":"\#(event)","text":"bulk \#(i)"}"#
        }
        let file = homes.root.appendingPathComponent("refused.jsonl")
        try lines.joined(separator: "\n").write(to: file, atomically: true, encoding: .utf8)
        let (status, _, err) = try run(["batch", file.path])
        #expect(status == 1)
        #expect(err.contains("line 4"), "\(err)")
        #expect(err.contains("(input lines 1–2 were applied, in 1 batch; so were"), "\(err)")
        #expect(err.contains("so were input lines 5–6, 7–8, 9–10, sent before the refusal)"), "\(err)")
        // What the report says is what the server holds: 8 of the 11 edits.
        #expect(try run(["pull"]).0 == 0)
        let (_, statusJSON, _) = try run(["status", "--json"])
        #expect(try JSON(parsing: statusJSON)["version"] == 37, "\(statusJSON)")
    }
}
