import Foundation
import Testing
import TimelineCore

/// What an analyst touches, tried as one would: the `timeline` and `timelined` binaries against a real server, and
/// every message read for whether it says what happened.
@Suite(.serialized) struct AnalystSurfaceTests {
    /// A client home for one person, with the CLI run on it.
    struct CLI {
        let home: String
        let timeline = ServerProcess.sibling("timeline")
        var environment: [String: String] = [:]

        @discardableResult
        func run(_ args: [String], stdin: Data? = nil) throws -> (status: Int32, out: String, err: String) {
            var env: [String: String?] = ["TIMELINE_HOME": home, "NO_COLOR": "1", "COLUMNS": nil]
            for (key, value) in environment { env[key] = value }
            let (status, out, err) = try ServerProcess.run(args, stdin: stdin, executable: timeline, environment: env)
            return (status, out, err)
        }

        func json(_ args: [String]) throws -> JSON {
            let r = try run(args + ["--json"])
            guard r.status == 0 else { throw TestFailure("timeline \(args) failed: \(r.err)") }
            return try JSON(parsing: r.out)
        }
    }

    final class Folder: @unchecked Sendable {
        let root = ServerProcess.newDataFolder()
        init() { try? FileManager.default.createDirectory(at: root, withIntermediateDirectories: true) }
        func path(_ name: String) -> String { root.appendingPathComponent(name).path }
        deinit { ServerProcess.removeData(root) }
    }

    /// A home initialised for `name` with a token of `role`, read from a token file as the README says.
    func person(_ name: String, role: String, on server: ServerProcess, in folder: Folder) throws -> CLI {
        let tokenFile = folder.path("\(name).token")
        try (try server.addToken(name, role: role) + "\n").write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let cli = CLI(home: folder.path(name))
        let r = try cli.run([
            "init", "--server", "127.0.0.1:\(server.port)", "--token-file", tokenFile, "--fingerprint",
            server.fingerprint.hex,
        ])
        guard r.status == 0 else { throw TestFailure("init failed: \(r.err)") }
        return cli
    }

    /// The IDs in the first column of `log`'s lines.
    func printedIDs(_ log: String) -> [String] {
        log.split(separator: "\n").map { String($0.prefix { $0 != " " }) }
    }

    // MARK: 1. Printed IDs paste back

    @Test func everyPrintedIDPastesBackWhateverFilterPrintedIt() throws {
        let folder = Folder()
        let server = try ServerProcess()
        let ana = try person("ana", role: "annotator", on: server, in: folder)
        let all = try ana.run(["log"])
        let ids = printedIDs(all.out)
        #expect(ids.count == 28)
        // Short: the sample's IDs share their first 10 characters, yet 7 tell them apart.
        #expect(ids.allSatisfy { $0.count == ShortID.minimum }, "\(ids)")
        #expect(Set(ids).count == 28)
        for filter in [
            ["--since", "2014-06-15", "--until", "2014-06-20"], ["--since", "2014-01-01", "--until", "2014-06-30"],
        ] {
            let shown = printedIDs(try ana.run(["log"] + filter).out)
            #expect(!shown.isEmpty)
            for id in shown {
                let r = try ana.run(["show", id, "--json"])
                #expect(r.status == 0, "show \(id): \(r.err)")
                #expect(try JSON(parsing: r.out)["id"]?.stringValue?.dropFirst(10).hasPrefix(id) == true)
            }
        }
        // What used to be printed (the start of the whole ID) is still read, and an ambiguous one counts truly.
        let ambiguous = try ana.run(["show", "019ECZQW00"])
        #expect(ambiguous.status == 1)
        #expect(ambiguous.err.contains("AMBIGUOUS: 019ECZQW00 matches 28 events"), "\(ambiguous.err)")
        // Any case, and Crockford's look-alike letters, read as the digits they stand for.
        #expect(try ana.run(["show", ids[0].lowercased()]).status == 0)
        // An annotation's short ID, as show prints it, names that annotation in retract, and its event in show.
        let sent = try ana.run(["annotate", ids[3], "a note to take back"])
        #expect(sent.status == 0 && sent.out.hasPrefix("sent annotation "), "\(sent)")
        let noteID = String(sent.out.dropFirst("sent annotation ".count).prefix { $0 != " " })
        #expect(noteID.count == ShortID.minimum)
        let shown = try ana.run(["show", ids[3]])
        #expect(shown.out.contains("• \(noteID)  ana, "), "\(shown.out)")
        #expect(
            try JSON(parsing: try ana.run(["show", noteID, "--json"]).out)["id"]?.stringValue?.contains(ids[3]) == true)
        let notAnnotation = try ana.run(["retract", ids[3]])
        #expect(notAnnotation.status == 1 && notAnnotation.err.contains("is an event, not an annotation"))
        let retracted = try ana.run(["retract", noteID])
        #expect(
            retracted.status == 0 && retracted.out.hasPrefix("sent retraction of annotation \(noteID)"), "\(retracted)")
        // A typo is a usage error that names the command meant.
        let typo = try ana.run(["shwo", ids[0]])
        #expect(typo.status == 2 && typo.err.contains("did you mean 'show'?"))
    }

    // MARK: 2. watch in a pipe

    @Test func watchWritesEachLineAsItHappensSurvivesARestartAndEndsOnWholeLines() async throws {
        let folder = Folder()
        var server = try ServerProcess()
        let ana = try person("ana", role: "annotator", on: server, in: folder)
        let reader = try person("rita", role: "reader", on: server, in: folder)
        func startWatch(_ args: [String]) throws -> (Process, FileHandle, URL) {
            let p = Process()
            p.executableURL = reader.timeline
            p.arguments = ["watch"] + args
            p.environment = ProcessInfo.processInfo.environment.merging(["TIMELINE_HOME": reader.home]) { $1 }
            let out = Pipe()
            let errFile = URL(fileURLWithPath: folder.path("watch-\(UUID().uuidString).err"))
            FileManager.default.createFile(atPath: errFile.path, contents: nil)
            p.standardOutput = out
            p.standardError = try FileHandle(forWritingTo: errFile)
            try p.run()
            return (p, out.fileHandleForReading, errFile)
        }
        /// Reads from a pipe until `count` whole lines arrived (a minute at most): nothing is pushed by a timer.
        func lines(_ handle: FileHandle, count: Int, into text: inout String) throws -> [String] {
            let deadline = Date().addingTimeInterval(60)
            while text.filter({ $0 == "\n" }).count < count, Date() < deadline {
                var poll = pollfd(fd: handle.fileDescriptor, events: Int16(POLLIN), revents: 0)
                guard Foundation.poll(&poll, 1, 200) > 0 else { continue }
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                text += String(decoding: chunk, as: UTF8.self)
            }
            return text.split(separator: "\n").map(String.init)
        }
        // From version 29, the sample's last: a watch started "from now on" could begin after the note below.
        let (json, jsonOut, _) = try startWatch(["--json", "--since", "29"])
        let (human, humanOut, humanErr) = try startWatch(["--since", "29"])
        #expect(try ana.run(["annotate", "94EPPCE", "watched in a pipe"]).status == 0)
        var jsonText = ""
        var humanText = ""
        let first = try lines(jsonOut, count: 1, into: &jsonText)
        #expect(first.count == 1 && first[0].contains(#""op":"annotation.add""#), "\(first)")
        let firstHuman = try lines(humanOut, count: 1, into: &humanText)
        // Which event, by its short ID and title, not only versions and an author.
        #expect(firstHuman.first?.contains("94EPPCE “Japan-U.S. Cyber Dialogue in Tokyo") == true, "\(firstHuman)")
        // A restart: the watch says so, reconnects by itself and goes on after the last version it showed.
        let port = server.port
        let data = server.stopKeepingData()
        defer { ServerProcess.removeData(data) }
        server = try ServerProcess(data: data, port: port)
        #expect(try ana.run(["annotate", "94EPPCE", "after the restart"]).status == 0)
        let second = try lines(jsonOut, count: 2, into: &jsonText)
        #expect(second.count == 2 && second[1].contains("after the restart"), "\(second)")
        #expect(try JSON(parsing: second[1])["version"] == 31)
        _ = try lines(humanOut, count: 2, into: &humanText)
        let said = try String(contentsOf: humanErr, encoding: .utf8)
        #expect(said.contains("the server is shutting down; reconnecting"), "\(said)")
        // SIGTERM ends it between lines: what was written ends with a whole line.
        for p in [json, human] {
            p.terminate()
            p.waitUntilExit()
        }
        jsonText += String(decoding: jsonOut.readDataToEndOfFile(), as: UTF8.self)
        #expect(jsonText.hasSuffix("}\n"))
        #expect(json.terminationStatus == 0)
        _ = server
    }

    // MARK: 3. Refusals are refusals

    @Test func refusalsAreReportedAsRefusalsNeverAsSentOrAsConflicts() async throws {
        let folder = Folder()
        let server = try ServerProcess()
        let reader = try person("rita", role: "reader", on: server, in: folder)
        let ana = try person("ana", role: "annotator", on: server, in: folder)
        // What the client can know is checked before anything is queued: the role, field limits, control characters.
        for (cli, args, code) in [
            (reader, ["annotate", "94EPPCE", "a reader's note"], "FORBIDDEN"),
            (ana, ["annotate", "94EPPCE", String(repeating: "x", count: 120_000)], "BAD_FIELD"),
            (ana, ["annotate", "94EPPCE", "red \u{1B}[31m text"], "BAD_FIELD"),
            (ana, ["edit", "94EPPCE", "--title", "An annotator's title"], "FORBIDDEN"),
        ] {
            let r = try cli.run(args)
            #expect(r.status == 1, "\(args): \(r)")
            #expect(r.err.contains(code), "\(args): \(r.err)")
            #expect(!r.out.contains("sent") && !r.out.contains("conflict"), "\(args): \(r.out)")
            #expect(try cli.json(["status"])["pending"] == 0)
            #expect(try cli.run(["conflicts"]).status == 0)
        }
        // Under --json the error is one object on standard error.
        let scripted = try reader.run(["annotate", "94EPPCE", "again", "--json"])
        #expect(try JSON(parsing: scripted.err)["code"] == "FORBIDDEN")
        // An editor's edit queued offline, then refused once their role has changed: kept, listed, droppable.
        let ed = try person("ed", role: "editor", on: server, in: folder)
        let port = server.port
        let data = server.stopKeepingData()
        defer { ServerProcess.removeData(data) }
        let queued = try ed.run(["edit", "94EPPCE", "--title", "Cyber Dialogue (first)"])
        #expect(queued.status == 0 && queued.out.hasPrefix("queued edit of 94EPPCE"), "\(queued)")
        #expect(queued.out.contains("cannot connect to 127.0.0.1:\(port): connection refused"), "\(queued.out)")
        #expect(!queued.out.contains("SingleConnectionFailure") && !queued.out.contains("errno"))
        #expect(try ServerProcess.run(["token", "revoke", "ed", "--data", data.path]).0 == 0)
        let annotatorToken = try ServerProcess.run(["token", "add", "ed", "--role", "annotator", "--data", data.path]).1
        let restarted = try ServerProcess(data: data, port: port)
        let tokenFile = folder.path("ed-annotator.token")
        try annotatorToken.write(toFile: tokenFile, atomically: true, encoding: .utf8)
        #expect(
            try ed.run([
                "init", "--server", "127.0.0.1:\(port)", "--token-file", tokenFile, "--fingerprint",
                restarted.fingerprint.hex,
            ]).status == 0)
        let sync = try ed.run(["sync"])
        #expect(sync.status == 1)
        #expect(sync.out.contains("1 edit was refused by the server, and kept in timeline outbox:"), "\(sync.out)")
        #expect(sync.out.contains("FORBIDDEN"))
        #expect(!sync.out.contains("conflict"))
        #expect(try ed.run(["conflicts"]).out == "no conflicts\n")
        let status = try ed.json(["status"])
        #expect(
            status["refused"] == 1 && status["pending"] == 0 && status["conflicts"] == 0
                && status["role"] == "annotator")
        let listed = try ed.run(["outbox", "--json"]).out
        let item = try JSON(parsing: listed)
        #expect(item["state"] == "refused" && item["code"] == "FORBIDDEN")
        let number = try #require(item["id"]?.intValue)
        // Retrying does not make it a conflict either: refused again, and kept until its author drops it.
        let retried = try ed.run(["outbox", "retry", "\(number)"])
        #expect(retried.status == 1 && retried.err.contains("refused by the server: FORBIDDEN"), "\(retried)")
        #expect(retried.err.contains("kept in timeline outbox as \(number)"))
        #expect(try ed.json(["status"])["refused"] == 1)
        #expect(try ed.run(["outbox", "drop", "\(number)"]).out == "dropped edit \(number)\n")
        #expect(try ed.json(["status"])["refused"] == 0)
        _ = restarted
    }

    // MARK: 4. Import

    static let threeEvents = """
        Regional Cyber Notes

        Last updated: 2016-03-01

        l  January 5, 2016: A first regional workshop on incident response.[1]

        l  February 2016: A joint exercise of two national CERTs.[2]

        l  March 1, 2016: A statement on cooperation.[1]

        [1] Ministry, "Workshop notes," 2016, http://example.org/a.
        [2] Agency, "Exercise report," 2016, http://example.org/b.
        """

    @Test func importKeepsEachDocumentBesideTheOthersOnceAndUpdatesWhatChanged() async throws {
        let folder = Folder()
        let server = try ServerProcess()
        let ed = try person("ed", role: "editor", on: server, in: folder)
        let doc = folder.path("regional-notes.txt")
        try Self.threeEvents.write(toFile: doc, atomically: true, encoding: .utf8)
        let first = try ed.run(["import", doc])
        #expect(first.status == 0 && first.out.contains("imported regional-notes: 3 new events; 4 edits"), "\(first)")
        // The timeline's own metadata (the sample's title and its 29 references) is untouched.
        let markdown = try ed.run(["export", "--format", "markdown"]).out
        #expect(markdown.hasPrefix("# Timeline — 日立システムズ SHIELD Security Research Center"), "\(markdown.prefix(200))")
        let hq = try await server.connect(token: server.adminToken)
        #expect(try await hq.request("m GET 019ECZQW0094EPPCEN5VB98H48").last == "m OK")
        // The same file again: nothing new, and it says so.
        let again = try ed.run(["import", doc])
        #expect(again.status == 0 && again.out == "regional-notes is already in the timeline as it is: 0 new edits\n")
        #expect(try ed.json(["status"])["version"] == 33)
        // An analyst corrects one event's title; the document then changes another event's summary.
        let march = try #require(try ed.run(["log", "--since", "2016-03-01"]).out.split(separator: " ").first)
        #expect(try ed.run(["edit", String(march), "--title", "Statement on cooperation (corrected)"]).status == 0)
        // The March line changes too (its title and summary): ed had corrected that title, so ed's stays, and it is
        // said; its summary, which nobody changed, follows the document.
        try Self.threeEvents.replacingOccurrences(
            of: "A joint exercise of two national CERTs.", with: "A joint exercise of three national CERTs."
        ).replacingOccurrences(of: "A statement on cooperation.", with: "A statement on closer cooperation.")
            .write(toFile: doc, atomically: true, encoding: .utf8)
        let changed = try ed.run(["import", doc])
        #expect(changed.status == 0 && changed.out.contains("0 new events, 2 updated; 3 edits"), "\(changed)")
        #expect(changed.err.contains("their values are kept: \(march) (title)"), "\(changed.err)")
        let events = try ed.run(["log", "--since", "2016-01-01", "--json"]).out.split(separator: "\n")
            .map { try JSON(parsing: String($0)) }
        #expect(events.count == 3)
        #expect(events.map { $0["summary"]?.stringValue ?? "" }.contains { $0.hasPrefix("A joint exercise of three") })
        #expect(events.contains { $0["title"] == "Statement on cooperation (corrected)" })
        // The server's offline import: the same rules, under the same name.
        let prose = folder.path("prose.txt")
        try "Just a paragraph of prose, with no dated lines at all.\n".write(
            toFile: prose, atomically: true, encoding: .utf8)
        let refused = try ed.run(["import", prose])
        #expect(refused.status == 1 && refused.err.contains("no events found in prose"), "\(refused)")
        await hq.close()
        let data = server.stopKeepingData()
        defer { ServerProcess.removeData(data) }
        let offline = try ServerProcess.run(["import", doc, "--data", data.path])
        #expect(
            offline.0 == 0 && offline.1 == "regional-notes is already in the timeline as it is: 0 new edits\n",
            "\(offline)")
        // The sample's own document, which the server loaded when it was made: recognised, not loaded twice.
        let seed = folder.path("000_cc8b923551d51cc6.txt")
        try SampleTimeline.text.write(toFile: seed, atomically: true, encoding: .utf8)
        let sample = try ServerProcess.run(["import", seed, "--data", data.path])
        #expect(sample.0 == 0 && sample.1.contains("0 new events, 28 already in the timeline"), "\(sample)")
        #expect(try ServerProcess.run(["verify", "--data", data.path]).0 == 0)
    }

    // MARK: Writing like an editor

    @Test func editorsAddDeleteAndCiteNotesComeFromFilesAndExportsCarryEverything() throws {
        let folder = Folder()
        let server = try ServerProcess()
        let ed = try person("ed", role: "editor", on: server, in: folder)
        let added = try ed.run([
            "add", "--date", "June 9 to 10, 2016", "--title", "A new dialogue round", "--summary", "Held in Tokyo.",
            "--reference", "[1] Ministry, Joint statement, http://example.org/joint.", "--tag", "cyber",
        ])
        #expect(added.status == 0 && added.out.hasPrefix("sent event "), "\(added)")
        let id = String(added.out.dropFirst("sent event ".count).prefix { $0 != " " })
        var shown = try JSON(parsing: try ed.run(["show", id, "--json"]).out)
        #expect(shown["title"] == "A new dialogue round" && shown["tags"] == ["cyber"])
        #expect(shown["references"]?.arrayValue?.first?["urls"] == ["http://example.org/joint"])
        #expect(shown["date"]?["precision"] == "day")
        let cited = try ed.run([
            "edit", id, "--add-reference", "Agency, Press release, https://example.org/pr", "--remove-reference", "1",
        ])
        #expect(cited.status == 0, "\(cited)")
        shown = try JSON(parsing: try ed.run(["show", id, "--json"]).out)
        #expect(shown["references"]?.arrayValue?.map { $0["number"] } == [2])
        #expect(try ed.run(["edit", id, "--remove-reference", "7"]).err.contains("has no reference [7]"))
        // A note from a file, and from standard input.
        let notePath = folder.path("note.md")
        try "A longer note,\nwritten in a file.\n\n".write(toFile: notePath, atomically: true, encoding: .utf8)
        #expect(try ed.run(["annotate", id, "--file", notePath]).status == 0)
        #expect(try ed.run(["annotate", id, "-F", "-"], stdin: Data("from a pipe\n".utf8)).status == 0)
        shown = try JSON(parsing: try ed.run(["show", id, "--json"]).out)
        #expect(
            Set(shown["annotations"]?.arrayValue?.compactMap { $0["text"]?.stringValue } ?? []) == [
                "A longer note,\nwritten in a file.", "from a pipe",
            ])
        // Exports carry summaries, tags and annotations.
        let csv = try ed.run(["export", "--format", "csv"]).out
        #expect(csv.hasPrefix("id,date,start,end,precision,title,summary,tags,references,annotations\n"))
        #expect(csv.contains(",A new dialogue round,Held in Tokyo.,cyber,2,2"), "\(csv.suffix(300))")
        let notes = try ed.run(["export", "--format", "annotations-csv"]).out
        #expect(notes.contains(",ed,") && notes.contains("from a pipe"))
        let markdown = try ed.run(["export", "--format", "markdown"]).out
        #expect(markdown.contains("`#cyber`") && markdown.contains("> **ed**, "))
        // A deletion is a tombstone: gone from log, still in show.
        #expect(try ed.run(["delete", id]).status == 0)
        #expect(!(try ed.run(["log", "--since", "2016-01-01"]).out.contains(id)))
        #expect(try JSON(parsing: try ed.run(["show", id, "--json"]).out)["deleted"] == true)
        let again = try ed.run(["annotate", id, "too late"])
        #expect(again.status == 1 && again.err.contains("INVALID_STATE"), "\(again)")
    }

    // MARK: What a second trial found

    @Test func aSecondTrialsFindingsSayWhatHappened() throws {
        let folder = Folder()
        var server = try ServerProcess()
        let ana = try person("ana", role: "editor", on: server, in: folder)
        let ben = try person("ben", role: "editor", on: server, in: folder)
        // A conflict on the title is not settled by setting the date.
        #expect(try ana.run(["edit", "CFEMJD4", "--title", "Ana's title"]).status == 0)
        let port = server.port
        let data = server.stopKeepingData()
        defer { ServerProcess.removeData(data) }
        #expect(try ben.run(["edit", "CFEMJD4", "--title", "Ben's title"]).out.hasPrefix("queued "))
        // A note queued offline: its ID, as printed, names it; retracting it takes it out of the outbox.
        let queued = try ben.run(["annotate", "W9PNEPG", "offline note"])
        let noteID = String(queued.out.dropFirst("queued annotation ".count).prefix { $0 != " " })
        #expect(noteID.count == 26, "\(queued.out)")
        let dropped = try ben.run(["retract", noteID])
        #expect(
            dropped.status == 0 && dropped.out.contains("was never sent: removed it from your outbox"), "\(dropped)")
        server = try ServerProcess(data: data, port: port)
        #expect(try ben.run(["sync"]).status == 3)
        let wrongField = try ben.run(["resolve", "1", "--set", "date=May 2014"])
        #expect(
            wrongField.status == 1 && wrongField.err.contains("conflict #1 is about title, not date"), "\(wrongField)")
        let settled = try ben.run(["resolve", "1", "--set", "title=Agreed title"])
        #expect(settled.status == 0 && settled.out.hasPrefix("resolved #1 (title): sent, version "), "\(settled)")
        // A range that ends before it starts is refused with the importer's own warning.
        let backwards = try ana.run(["edit", "ZBYNZC1", "--date", "October 18 to 10, 2012"])
        #expect(backwards.status == 2 && backwards.err.contains("ends before it starts"), "\(backwards)")
        // Setting a field to the value it has changes nothing and says so.
        #expect(try ana.run(["sync"]).status == 0)
        let same = try ana.run(["edit", "CFEMJD4", "--title", "Agreed title"])
        #expect(same.out.hasPrefix("nothing to change: the event already has what you gave"), "\(same)")
        #expect(try ana.run(["log", "--since", "2014-06-30", "--until", "2014-01-01"]).status == 2)
        _ = server
    }

    // MARK: Search, trust, and what changed

    @Test func searchRanksWhatMatchesVerifyVouchesForTheReplicaAndChangesSinceTheLastLook() async throws {
        let folder = Folder()
        let server = try ServerProcess()
        let ana = try person("ana", role: "annotator", on: server, in: folder)
        let ed = try person("ed", role: "editor", on: server, in: folder)
        // Ranked full-text over events and annotations, prefixes and accents forgiven.
        let found = try ana.run(["search", "cyber", "dialog", "--no-pager"])
        #expect(found.status == 0 && found.out.hasPrefix("94EPPCE  May 9 to 10, 2013"), "\(found.out)")
        #expect(found.out.contains("«Cyber» «Dialogue»"))
        #expect(try ana.run(["annotate", "N7HD93N", "Résumé of the cloud working group"]).status == 0)
        let viaNote = try ana.run(["search", "resume", "cloud", "--json"])
        let hit = try JSON(parsing: String(viaNote.out.split(separator: "\n").first ?? ""))
        #expect(hit["id"] == "019ECZQW00N7HD93NAK1T0R06Q" && hit["matched_annotations"]?.arrayValue?.count == 1)
        #expect(try ana.run(["search", "nothing-like-this"]).out == "no event matches nothing-like-this\n")
        // What changed since Ana last looked: Ed's title; the mark then moves.
        #expect(try ana.run(["changes"]).out.contains("1 new note by ana"))
        #expect(try ana.run(["changes"]).out.hasPrefix("nothing changed after version 30"))
        #expect(try ed.run(["edit", "ZBYNZC1", "--title", "Fourth Director-General meeting"]).status == 0)
        #expect(try ana.run(["pull"]).status == 0)
        let changed = try ana.run(["changes"])
        #expect(changed.out.contains("ZBYNZC1  Fourth Director-General meeting  title by ed"), "\(changed.out)")
        // Who set each field, and when.
        let blame = try ana.run(["blame", "ZBYNZC1", "--json"]).out.split(separator: "\n").map {
            try JSON(parsing: String($0))
        }
        #expect(blame.first { $0["field"] == "title" }?["author"] == "ed")
        #expect(blame.first { $0["field"] == "date" }?["author"] == "sample")
        // verify: the replica on its own, then against the server's edit at its head.
        let verified = try ana.json(["verify"])
        #expect(verified["ok"] == true && verified["server_agrees"] == true && verified["version"] == 31)
        let serverState = try JSON(parsing: try server.tool(["verify", "--json"]).1)["state"]
        #expect(verified["state"] == serverState)
        #expect(try ana.json(["status"])["state"] == serverState)
    }

    // MARK: What a third trial found

    @Test func aThirdTrialsFindingsSayWhatHappened() async throws {
        let folder = Folder()
        var server = try ServerProcess()
        let ana = try person("ana", role: "editor", on: server, in: folder)
        let ben = try person("ben", role: "editor", on: server, in: folder)
        // An edit queued offline on an event someone deletes meanwhile: a conflict on the deletion, and nothing
        // is said to have merged.
        let port = server.port
        let data = server.stopKeepingData()
        defer { ServerProcess.removeData(data) }
        #expect(try ben.run(["edit", "W9PNEPG", "--summary", "Ben's offline summary"]).status == 0)
        server = try ServerProcess(data: data, port: port)
        #expect(try ana.run(["delete", "W9PNEPG"]).status == 0)
        let sync = try ben.run(["sync"])
        #expect(sync.status == 3 && !sync.out.contains("merged"), "\(sync)")
        let listed = try ben.run(["conflicts"]).out
        #expect(listed.contains("was deleted by ana (v30) after you edited it"), "\(listed)")
        #expect(listed.contains("timeline resolve 1 --theirs"))
        #expect(try ben.run(["resolve", "1", "--ours"]).err.contains("cannot be restored, so your edit cannot apply"))
        #expect(try ben.run(["resolve", "1", "--theirs"]).status == 0)
        // References as typed: a number taken, an empty citation and letters in brackets are refused.
        #expect(
            try ana.run(["edit", "ZBYNZC1", "--add-reference", "[11] Again"]).err.contains(
                "already has a reference [11]"))
        #expect(try ana.run(["edit", "ZBYNZC1", "--add-reference", "[12]"]).err.contains("has no citation"))
        #expect(try ana.run(["edit", "ZBYNZC1", "--add-reference", "[abc] x"]).err.contains("its number in brackets"))
        // A batch line changing an event without a base is made on what the replica shows, not on revision 0.
        let whole = try #require(try ana.json(["show", "ZBYNZC1"])["id"]?.stringValue)
        let line = #"{"op":"event.update","event":"\#(whole)","set":{"title":"From a script"}}"#
        let batch = try ana.run(["batch", "-"], stdin: Data(line.utf8))
        #expect(batch.status == 0 && batch.out.hasPrefix("1 edit in 1 batch"), "\(batch)")
        // An annotation's ID names its event in history and blame too.
        let sent = try ana.run(["annotate", "ZBYNZC1", "a note"])
        let note = String(sent.out.dropFirst("sent annotation ".count).prefix { $0 != " " })
        #expect(try ana.run(["history", note]).status == 0)
        #expect(try ana.run(["blame", note]).status == 0)
        // --date-text-only keeps the text, and places nothing.
        #expect(try ana.run(["edit", "ZBYNZC1", "--date", "October 18 to 10, 2012", "--date-text-only"]).status == 0)
        #expect(try ana.json(["show", "ZBYNZC1"])["date"]?["precision"] == "unknown")
        // Tags that change nothing are not sent; contradicting ones are a usage error.
        #expect(try ana.run(["edit", "ZBYNZC1", "--remove-tag", "nonexistent"]).out.hasPrefix("nothing to change"))
        #expect(try ana.run(["edit", "ZBYNZC1", "--add-tag", "x", "--remove-tag", "x"]).status == 2)
        #expect(try ana.run(["show", ""]).status == 2)
        // verify fails when the server refuses the token (offline it only checks the replica).
        #expect(try server.tool(["token", "revoke", "ana"]).0 == 0)
        #expect(try ana.run(["verify"]).status == 1)
        // A fourth trial: watch --since past the head is a usage error, not a foreign replica; verify that could
        // not ask the server fails unless --local; the outbox does not claim what it cannot know.
        #expect(try ben.run(["watch", "--since", "9999"]).status == 2)
        #expect(try ben.run(["outbox"]).out.hasPrefix("the outbox is empty: nothing is waiting to be sent"))
        #expect(try ben.run(["verify", "--local"]).status == 0)
        // timelined suggests too, and says a folder in use is in use.
        let typo = try ServerProcess.run(["srve"])
        #expect(typo.0 == 2 && typo.2.contains("did you mean 'serve'?"))
        try Self.threeEvents.write(toFile: folder.path("notes.txt"), atomically: true, encoding: .utf8)
        #expect(try server.tool(["import", folder.path("notes.txt")]).2.contains("IN_USE"))
    }

    // MARK: 5. One server per data folder

    @Test func aSecondWriterOfADataFolderIsRefusedAndReadersSayTheyReadALiveOne() throws {
        let server = try ServerProcess()
        let second = try ServerProcess.run([
            "serve", "--data", server.data.path, "--listen", "127.0.0.1:0", "--log-level", "warning",
        ])
        #expect(second.0 == 1)
        #expect(
            second.2.contains("\(server.data.path) is in use by timelined (pid \(server.process.processIdentifier))"),
            "\(second.2)")
        let doc = server.data.path + ".doc.txt"
        try "•  May 1, 2016: an event [1]\n\n[1] a source\n".write(toFile: doc, atomically: true, encoding: .utf8)
        let imported = try server.tool(["import", doc])
        #expect(imported.0 == 1 && imported.2.contains("is in use by timelined"), "\(imported)")
        let verify = try server.tool(["verify", "--json"])
        #expect(try JSON(parsing: verify.1)["live_pid"] == .int(Int64(server.process.processIdentifier)))
        #expect(
            try server.tool(["verify"]).1.contains(
                "a snapshot: timelined pid \(server.process.processIdentifier) is serving"))
        // Tokens are made while it serves: that is how a running server gets new people.
        #expect(try server.tool(["token", "add", "late", "--role", "reader"]).0 == 0)
    }

    // MARK: 6. Commands side by side on one home

    @Test func commandsRunSideBySideOnOneHomeTakeTurnsAndReportTruly() async throws {
        let folder = Folder()
        let server = try ServerProcess()
        let ana = try person("ana", role: "annotator", on: server, in: folder)
        // Twelve annotations at once, as `xargs -P 12` would start them, with a pull beside them.
        let results = try await withThrowingTaskGroup(of: (Int, Int32, String).self) { group in
            for i in 0..<12 {
                group.addTask {
                    let r = try ana.run(["annotate", "94EPPCE", "side by side \(i)"])
                    return (i, r.status, r.out + r.err)
                }
            }
            group.addTask {
                let r = try ana.run(["pull"])
                return (-1, r.status, r.out + r.err)
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        for (i, status, text) in results {
            #expect(status == 0, "\(i): \(text)")
            #expect(!text.contains("locked") && !text.contains("does not follow"), "\(i): \(text)")
            if i >= 0 { #expect(text.hasPrefix("sent annotation "), "\(i): \(text)") }
        }
        let hq = try await server.connect(token: server.adminToken)
        let got = try await hq.request("g GET 019ECZQW0094EPPCEN5VB98H48")
        #expect((0..<12).allSatisfy { i in got.first?.contains("side by side \(i)\"") == true })
        #expect(try ana.run(["pull"]).status == 0)
        #expect(try ana.json(["status"])["version"] == 41)
        #expect(
            try ana.json(["status"])["state"] == (try JSON(parsing: try server.tool(["verify", "--json"]).1))["state"])
        await hq.close()
    }

    // MARK: 7. Bad values

    @Test func emptyTitlesAndDatesTheCalendarCannotPlaceAreRefused() async throws {
        let folder = Folder()
        let server = try ServerProcess()
        let ed = try person("ed", role: "editor", on: server, in: folder)
        let empty = try ed.run(["edit", "94EPPCE", "--title", ""])
        #expect(empty.status == 2 && empty.err.contains("--title must not be empty"))
        let vague = try ed.run(["edit", "94EPPCE", "--date", "sometime in autumn"])
        #expect(vague.status == 2 && vague.err.contains(#"cannot place "sometime in autumn" on the calendar"#))
        let confirmed = try ed.run(["edit", "94EPPCE", "--date", "sometime in autumn", "--date-text-only"])
        #expect(confirmed.status == 0, "\(confirmed)")
        // The server refuses an empty title from any client.
        let raw = try await server.connect(token: server.adminToken)
        let reply = try await raw.request(
            #"t PROPOSE {"op":"event.update","event":"019ECZQW0094EPPCEN5VB98H48","set":{"title":" "}}"#)
        #expect(reply.last == #"t BAD BAD_FIELD field "set.title" must not be empty"#, "\(reply)")
        await raw.close()
    }

    // MARK: 8. Secrets and permissions

    @Test func homesArePrivateAndTokensNeedNotBeArguments() throws {
        let folder = Folder()
        let server = try ServerProcess()
        let token = try server.addToken("env", role: "reader")
        var cli = CLI(home: folder.path("from-env"))
        cli.environment["TIMELINE_TOKEN"] = token
        let r = try cli.run(["init", "--server", "127.0.0.1:\(server.port)", "--fingerprint", server.fingerprint.hex])
        #expect(r.status == 0, "\(r)")
        #expect(try cli.run(["log"]).status == 0)
        func mode(_ path: String) throws -> Int {
            (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber)?.intValue ?? -1
        }
        #expect(try mode(cli.home) == 0o700)
        for file in try FileManager.default.contentsOfDirectory(atPath: cli.home) {
            #expect(try mode(cli.home + "/" + file) & 0o077 == 0, "\(file) is readable by others")
        }
        for file in ["timeline.sqlite", "tokens.json", "admin.token", "tls/server.key"] {
            #expect(try mode(server.data.path + "/" + file) & 0o077 == 0, "\(file) is readable by others")
        }
    }

    // MARK: The README's walkthrough, as written

    /// The README's session, block by block as a person would type it: the server stopped for the part marked
    /// offline and started again for the part marked online, everything else exactly as written.
    @Test func theReadmeWalkthroughRunsAsWritten() async throws {
        let readme = try String(
            contentsOf: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("README.md"), encoding: .utf8)
        let section = try #require(readme.range(of: "## An analyst's session"))
        let start = try #require(readme.range(of: "```sh\n", range: section.upperBound..<readme.endIndex))
        let end = try #require(readme.range(of: "\n```", range: start.upperBound..<readme.endIndex))
        let block = String(readme[start.upperBound..<end.lowerBound])
        let offline = try #require(block.range(of: "# offline"))
        let online = try #require(block.range(of: "# online"))
        let scenes = [
            String(block[..<offline.lowerBound]), String(block[offline.lowerBound..<online.lowerBound]),
            String(block[online.lowerBound...]),
        ]
        let folder = Folder()
        var server = try ServerProcess()
        for name in ["ana", "ben"] {
            try (try server.addToken(name, role: "editor") + "\n").write(
                toFile: folder.path("\(name).token"), atomically: true, encoding: .utf8)
        }
        let port = server.port
        func run(_ scene: String) throws -> (Int32, String, String) {
            try shell(
                "cd '\(folder.root.path)' && set -euo pipefail\n" + scene,
                environment: [
                    "PATH": ServerProcess.binary.deletingLastPathComponent().path + ":"
                        + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"),
                    "SERVER": "127.0.0.1:\(port)", "FINGERPRINT": server.fingerprint.hex, "NO_COLOR": "1",
                ])
        }
        let (s1, first, e1) = try run(scenes[0])
        #expect(s1 == 0, "\(first)\n\(e1)")
        #expect(first.contains("W9PNEPG  February 2 to 3, 2014"), "\(first)")
        #expect(first.contains("sent annotation "), "\(first)")
        let data = server.stopKeepingData()
        defer { ServerProcess.removeData(data) }
        let (s2, second, e2) = try run(
            scenes[0].components(separatedBy: "\n").filter { $0.hasPrefix("export ") }
                .joined(separator: "\n") + "\n" + scenes[1])
        #expect(s2 == 0, "\(second)\n\(e2)")
        #expect(second.contains("queued edit of ZBYNZC1"), "\(second)")
        #expect(second.contains("queued    1 edit"), "\(second)")
        server = try ServerProcess(data: data, port: port)
        let (s3, third, e3) = try run(
            scenes[0].components(separatedBy: "\n").filter { $0.hasPrefix("export ") }
                .joined(separator: "\n") + "\n" + scenes[2])
        #expect(s3 == 0, "\(third)\n\(e3)")
        #expect(third.contains("1 conflict to resolve: timeline conflicts"), "\(third)")
        #expect(third.contains("exit 3"), "\(third)")
        #expect(third.contains("theirs (ben, v"), "\(third)")
        #expect(third.contains("resolved #1"), "\(third)")
        #expect(third.contains("October 18 to 19, 2012\n"), "\(third)")
        #expect(third.contains("1 edit in 1 batch"), "\(third)")
        let markdown = try String(contentsOfFile: folder.path("timeline.md"), encoding: .utf8)
        #expect(markdown.contains("reviewed for the Q3 report"))
        _ = server
    }
}
