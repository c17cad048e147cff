import Foundation
import Synchronization
import Testing
import TimelineCore

/// What an operator does to a running `timelined`, with real processes: backups taken while it is written to, and
/// restores.
@Suite struct OperatingTests {
    let event = "019ECZQW007TKPA8XK03963NRD"

    func annotation(_ text: String) -> String {
        #"{"op":"annotation.add","event":"\#(event)","text":"\#(text)"}"#
    }

    /// `PULL 0 N` of a server: each edit's line, by version.
    func edits(_ server: ServerProcess, token: String) async throws -> [Int64: String] {
        let lines = try await server.connect(token: token).request("p PULL 0 100000")
        var out: [Int64: String] = [:]
        for line in lines where line.hasPrefix("* EDIT ") {
            out[try JSON(parsing: String(line.dropFirst(7)))["version"]!.intValue!] = line
        }
        return out
    }

    /// A backup taken while 8 connections write holds every edit acknowledged before it started, verifies, and
    /// restores into a folder that serves it with the same tokens.
    @Test func aBackupUnderConcurrentWritesRestoresAndVerifies() async throws {
        let server = try ServerProcess()
        let token = try server.addToken("ana", role: "annotator")
        let progress = Progress()
        let file = ServerProcess.newDataFolder().path + ".tlbackup"
        defer { try? FileManager.default.removeItem(atPath: file) }
        let outcome = try await withThrowingTaskGroup(of: (Int32, String, String)?.self) { group in
            for writer in 0..<8 {
                let client = try await server.connect(token: token)
                group.addTask {
                    var i = 0
                    // Until the backup is done, and at least 20 each.
                    while i < 20 || progress.backupStarted.withLock({ $0 }) == nil {
                        let reply = try await client.request("w\(writer)-\(i) PROPOSE \(annotation("w\(writer) \(i)"))")
                        let last = try #require(reply.last)
                        #expect(last.hasPrefix("w\(writer)-\(i) OK "), "\(last)")
                        let version = try JSON(parsing: String(last.drop { $0 != "{" }))["version"]!.intValue!
                        progress.acknowledged.withLock { $0.append(version) }
                        i += 1
                        if i > 2_000 { break }
                    }
                    return nil
                }
            }
            group.addTask {
                while progress.acknowledged.withLock({ $0.count }) < 100 {
                    try await Task.sleep(for: .milliseconds(5))
                }
                let before = progress.acknowledged.withLock { $0 }
                let result = try server.tool(["backup", "--to", file, "--json"])
                progress.backupStarted.withLock { $0 = before }
                return result
            }
            var outcome: (Int32, String, String)?
            for try await result in group where result != nil { outcome = result }
            return try #require(outcome)
        }
        let (status, out, err) = outcome
        #expect(status == 0, "\(out) \(err)")
        let report = try JSON(parsing: out)
        let backedUp = try #require(report["version"]?.intValue)
        let before = try #require(progress.backupStarted.withLock { $0 })
        let written = progress.acknowledged.withLock { $0 }
        // The copy is of one moment inside the backup: everything acknowledged before it began, and not all of what
        // was acknowledged by the end.
        #expect(backedUp >= before.max()!)
        #expect(written.max()! > backedUp, "writes went on during the backup")
        #expect((try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int) == 0o600)

        let original = try await edits(server, token: token)
        let restored = ServerProcess.newDataFolder()
        defer { ServerProcess.removeData(restored) }
        let (rs, rout, rerr) = try ServerProcess.run(["restore", file, "--data", restored.path])
        #expect(rs == 0, "\(rout) \(rerr)")
        #expect(rout.contains("tokens  from the backup"), "\(rout)")
        let (vs, vout, _) = try ServerProcess.run(["verify", "--data", restored.path, "--json"])
        #expect(vs == 0)
        #expect(try JSON(parsing: vout)["state"] == report["state"] && JSON(parsing: vout)["head"] == report["head"])
        // Served from the restored folder, with the token made before the backup: every edit acknowledged before the
        // backup started is there, byte for byte as the original serves it.
        let copy = try ServerProcess(data: restored)
        let served = try await edits(copy, token: token)
        #expect(served.count == Int(backedUp))
        for version in before { #expect(served[version] == original[version], "version \(version)") }
        for version in 1...backedUp { #expect(served[version] == original[version], "version \(version)") }
        _ = copy.terminate()
    }

    /// What an operator may get wrong is refused in a sentence, and changes nothing.
    @Test func restoreRefusesALiveFolderAndAnExistingTimeline() async throws {
        let server = try ServerProcess()
        let file = ServerProcess.newDataFolder().path + ".tlbackup"
        defer { try? FileManager.default.removeItem(atPath: file) }
        #expect(try server.tool(["backup", "--to", file]).0 == 0)
        let (again, _, againErr) = try server.tool(["backup", "--to", file])
        #expect(again == 1 && againErr.contains("exists already"), "\(againErr)")
        // The folder being served.
        let (live, _, liveErr) = try ServerProcess.run(["restore", file, "--data", server.data.path, "--replace"])
        #expect(live == 1 && liveErr.contains("in use by timelined"), "\(liveErr)")
        // A folder with a timeline, without --replace; then with it, the old one kept beside.
        let folder = ServerProcess.newDataFolder()
        defer { ServerProcess.removeData(folder) }
        #expect(try ServerProcess.run(["restore", file, "--data", folder.path]).0 == 0)
        let (twice, _, twiceErr) = try ServerProcess.run(["restore", file, "--data", folder.path])
        #expect(twice == 1 && twiceErr.contains("--replace"), "\(twiceErr)")
        let (replaced, replacedOut, _) = try ServerProcess.run(["restore", file, "--data", folder.path, "--replace"])
        #expect(replaced == 0)
        #expect(replacedOut.contains("is kept as"), "\(replacedOut)")
        let kept = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter {
            $0.hasPrefix("timeline.sqlite.replaced-")
        }
        #expect(kept.count == 1)
        // Not a backup: refused before the folder changes.
        let junk = folder.path + "/junk.tlbackup"
        FileManager.default.createFile(atPath: junk, contents: Data("not a database, just words".utf8))
        let other = ServerProcess.newDataFolder()
        defer { ServerProcess.removeData(other) }
        let (bad, _, badErr) = try ServerProcess.run(["restore", junk, "--data", other.path])
        #expect(bad == 1, "\(badErr)")
        #expect(!FileManager.default.fileExists(atPath: other.path + "/timeline.sqlite"))
    }
}

/// What the writers and the backup task share.
private final class Progress: Sendable {
    /// Versions acknowledged so far.
    let acknowledged = Mutex<[Int64]>([])
    /// Those acknowledged before the backup began, once it has ended.
    let backupStarted = Mutex<[Int64]?>(nil)
}
