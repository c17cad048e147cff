import Foundation
import Synchronization
import Testing
import TimelineCore
import TimelineTLS

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
        _ = FileManager.default.createFile(atPath: junk, contents: Data("not a database, just words".utf8))
        let other = ServerProcess.newDataFolder()
        defer { ServerProcess.removeData(other) }
        let (bad, _, badErr) = try ServerProcess.run(["restore", junk, "--data", other.path])
        #expect(bad == 1, "\(badErr)")
        #expect(!FileManager.default.fileExists(atPath: other.path + "/timeline.sqlite"))
    }
}

extension OperatingTests {
    /// A certificate rotated under a running server: `timelined reload` (SIGHUP) makes new connections handshake with
    /// the new one, while a connection opened before keeps working; a broken pair is refused before any signal.
    @Test func reloadSwapsTheCertificateWithoutDroppingConnections() async throws {
        let server = try ServerProcess()
        let token = try server.addToken("ana", role: "annotator")
        let before = try await server.connect(token: token)
        #expect(try await before.request("a PING").last?.hasPrefix("a OK {\"time\"") == true)
        let tls = server.data.appendingPathComponent("tls")
        // A key that is not the certificate's: refused here, nothing sent, the server unchanged.
        let (otherCert, otherKey) = try Certificates.selfSigned(commonName: "timelined")
        let keyPath = tls.appendingPathComponent("server.key").path
        let oldKey = try String(contentsOfFile: keyPath, encoding: .utf8)
        try otherKey.write(toFile: keyPath, atomically: true, encoding: .utf8)
        let (bad, _, badErr) = try server.tool(["reload"])
        #expect(bad == 1 && badErr.contains("nothing sent"), "\(badErr)")
        try oldKey.write(toFile: keyPath, atomically: true, encoding: .utf8)
        // The new pair in place, then reload.
        try otherCert.write(toFile: tls.appendingPathComponent("server.crt").path, atomically: true, encoding: .utf8)
        try otherKey.write(toFile: keyPath, atomically: true, encoding: .utf8)
        let fresh = try Fingerprint(pem: otherCert)
        let (status, out, err) = try server.tool(["reload"])
        #expect(status == 0 && out.contains(fresh.hex), "\(out) \(err)")
        // A new connection pinned to the new certificate succeeds once the server has taken it.
        let deadline = ContinuousClock.now + .seconds(90)
        var after: TestClient?
        while after == nil && ContinuousClock.now < deadline {
            after = try? await TestClient.connect(port: server.port, fingerprint: fresh)
            if after == nil { try await Task.sleep(for: .milliseconds(20)) }
        }
        let client = try #require(after)
        try await client.auth(token)
        #expect(try await client.request("b PING").last?.hasPrefix("b OK {\"time\"") == true)
        // The connection opened before the swap still works; one pinned to the old certificate is refused.
        #expect(try await before.request("c PING").last?.hasPrefix("c OK {\"time\"") == true)
        await #expect(throws: (any Error).self) {
            _ = try await TestClient.connect(port: server.port, fingerprint: server.fingerprint)
        }
    }

    /// Started by systemd as `Type=notify`, the server says READY once it listens, RELOADING then READY around a
    /// reload, and STOPPING when it shuts down; and it does not print the admin token into the journal.
    @Test func theServerTellsSystemdWhenItIsReady() async throws {
        let socketPath = FileManager.default.temporaryDirectory.appendingPathComponent("notify-\(UUID().uuidString)")
            .path
        let listener = try NotifyListener(path: socketPath)
        let server = try ServerProcess(environment: ["NOTIFY_SOCKET": socketPath, "INVOCATION_ID": "test"])
        let ready = try #require(listener.next(timeout: 90))
        #expect(ready.hasPrefix("READY=1\nSTATUS=serving dataset "), "\(ready)")
        #expect(server.startupOutput.contains("not printed"), "\(server.startupOutput)")
        #expect(!server.startupOutput.contains("tl_"))
        #expect(try server.tool(["reload"]).0 == 0)
        #expect(listener.next(timeout: 90)?.hasPrefix("RELOADING=1\nMONOTONIC_USEC=") == true)
        #expect(listener.next(timeout: 90) == "READY=1")
        #expect(server.terminate() == 0)
        #expect(listener.next(timeout: 90) == "STOPPING=1")
    }
}

extension OperatingTests {
    /// The unit in packaging/ is one systemd accepts: `systemd-analyze verify` prints nothing (it warns about, and
    /// still exits 0 for, a misspelt setting). Its ExecStart names the installed binary; the test's copy names this
    /// build's, since verify checks that the command exists.
    @Test func theServiceUnitPassesSystemdAnalyzeVerify() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let unit = try String(
            contentsOf: root.appendingPathComponent("packaging/timelined.service"), encoding: .utf8)
        #expect(unit.contains("ExecStart=/usr/local/bin/timelined serve "))
        let folder = ServerProcess.newDataFolder()
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { ServerProcess.removeData(folder) }
        let copy = folder.appendingPathComponent("timelined.service")
        try unit.replacingOccurrences(of: "/usr/local/bin/timelined", with: ServerProcess.binary.path)
            .write(to: copy, atomically: true, encoding: .utf8)
        let (status, out, err) = try shell("systemd-analyze verify '\(copy.path)'")
        #expect(status == 0 && out.isEmpty && err.isEmpty, "\(out) \(err)")
    }
}

extension OperatingTests {
    /// A token made to expire works until then, is listed with its expiry and last use, and is refused after:
    /// AUTH_FAILED for a new connection, AUTH_REVOKED at the next request of one that authenticated before.
    @Test func anExpiredTokenIsRefused() async throws {
        let server = try ServerProcess()
        let (token, name, early, seconds) = try await server.expiringToken(name: "temp")
        // Listed with its expiry, and its use once the server has written it down.
        var listed: JSON?
        let deadline = ContinuousClock.now + .seconds(seconds * 2 + 60)
        while ContinuousClock.now < deadline {
            let line = try server.tool(["token", "list", "--json"]).1.split(separator: "\n").first {
                $0.contains(#""name":"\#(name)""#)
            }
            listed = try line.map { try JSON(parsing: String($0)) }
            if listed?["last_used"]?.stringValue != nil { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(listed?["expires"]?.stringValue != nil && listed?["last_used"]?.stringValue != nil, "\(listed as Any)")
        // Past the expiry: a new AUTH fails, and the early connection's next request is refused.
        var refused: String?
        while ContinuousClock.now < deadline {
            let client = try await server.connect()
            let reply = try await client.request("a AUTH \(token)").last ?? ""
            if reply.hasPrefix("a NO ") {
                refused = reply
                break
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(refused == "a NO AUTH_FAILED the token is unknown, revoked or expired")
        #expect(try await early.request("h GET \(event)").last?.hasPrefix("h NO AUTH_REVOKED ") == true)
        let after = try server.tool(["token", "list", "--json"]).1
        #expect(after.contains(#""live":false"#) && after.contains(#""name":"\#(name)""#))
        // An expiry in the past, or not a time, is refused before any token exists.
        let (past, _, pastErr) = try server.tool([
            "token", "add", "late", "--role", "reader", "--expires", "2020-01-01",
        ])
        #expect(past == 2, "\(past)")
        #expect(pastErr.contains("is not in the future"), "\(pastErr)")
        #expect(!(try server.tool(["token", "list"]).1.contains("late")))
    }
}

extension OperatingTests {
    /// `--log-format json`: every line of the log is one JSON object a collector can index, and a connection's
    /// lines carry who and which connection, a refusal its code.
    @Test func jsonLogsAreOneObjectPerLine() async throws {
        let server = try ServerProcess(arguments: ["--log-format", "json", "--log-level", "debug"])
        let client = try await server.connect(token: server.adminToken)
        #expect(try await client.request("g GET 0000000000").last?.hasPrefix("g NO NOT_FOUND") == true)
        await client.close()
        _ = server.terminate()
        let lines = try String(contentsOf: server.logFile, encoding: .utf8).split(separator: "\n")
        #expect(lines.count > 3)
        let objects = try lines.map { try JSON(parsing: String($0)) }
        for object in objects {
            #expect(object["time"]?.stringValue != nil && object["level"]?.stringValue != nil)
            #expect(object["message"]?.stringValue != nil)
        }
        let refusal = objects.first { $0["message"] == "refused" }
        #expect(refusal?["code"] == "NOT_FOUND" && refusal?["tag"] == "g" && refusal?["verb"] == "GET", "\(lines)")
        #expect(refusal?["user"] == "admin" && refusal?["connection"]?.stringValue != nil)
        #expect(objects.contains { $0["message"] == "stopped" })
    }
}

extension OperatingTests {
    /// `GET /metrics` under load: the counters are what the test did (Prometheus's text format, read as a client
    /// would).
    @Test func metricsScrapedUnderLoadMatchTheLoad() async throws {
        let server = try ServerProcess(arguments: ["--metrics", "0"])
        let url = try #require(
            server.startupOutput.split(separator: "\n").first { $0.hasPrefix("metrics on ") }.map {
                String($0.dropFirst("metrics on ".count))
            })
        let token = try server.addToken("ana", role: "annotator")
        var watchers: [TestClient] = []
        for n in 0..<2 {
            let watcher = try await server.connect(token: token)
            try await watcher.sendRaw("w\(n) WATCH 29\n")
            watchers.append(watcher)
        }
        // Both watchers are registered before any write (the gauge says so).
        let deadline = ContinuousClock.now + .seconds(90)
        while try Self.scrape(url)["timeline_watchers"] != 2 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        let writers = 8
        let each = 25
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<writers {
                let client = try await server.connect(token: token)
                group.addTask {
                    for i in 0..<each {
                        let reply = try await client.request(
                            "p\(writer)-\(i) PROPOSE \(annotation("metrics \(writer) \(i)"))")
                        #expect(reply.last?.hasPrefix("p\(writer)-\(i) OK ") == true)
                    }
                    _ = try await client.request("r PULL 0 10")
                }
            }
            try await group.waitForAll()
        }
        let guesser = try await server.connect()
        #expect(try await guesser.request("x AUTH tl_wrong").last?.hasPrefix("x NO AUTH_FAILED") == true)
        let edits = Double(writers * each)
        // Watchers receive every edit; the counter reaches both watchers' share once they are sent.
        var metrics = try Self.scrape(url)
        while metrics[#"timeline_edits_sent_total{by="watch"}"#] != 2 * edits && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
            metrics = try Self.scrape(url)
        }
        #expect(metrics[#"timeline_requests_total{verb="PROPOSE",result="OK"}"#] == edits)
        #expect(metrics[#"timeline_requests_total{verb="PULL",result="OK"}"#] == Double(writers))
        #expect(metrics["timeline_edits_appended_total"] == edits)
        #expect(metrics["timeline_log_version"] == 29 + edits)
        #expect(metrics["timeline_commit_seconds_count"] == edits)
        #expect(metrics[#"timeline_edits_sent_total{by="pull"}"#] == Double(writers * 10))
        #expect(metrics[#"timeline_edits_sent_total{by="watch"}"#] == 2 * edits)
        #expect(metrics["timeline_auth_failures_total"] == 1)
        #expect(metrics[#"timeline_requests_total{verb="AUTH",result="AUTH_FAILED"}"#] == 1)
        #expect(metrics["timeline_connections_total"] == Double(2 + writers + 1))
        #expect(metrics["timeline_watchers"] == 2)
        #expect((metrics[#"timeline_store_bytes{file="database"}"#] ?? 0) > 0)
        #expect(metrics["timeline_replica_following"] == nil, "only an office replica has a link")
        // Anything but GET /metrics is refused.
        let (status, out, _) = try shell("curl -s -o /dev/null -w '%{http_code}' -X POST '\(url)'")
        #expect(status == 0 && out == "405")
    }

    /// The samples of a scrape, by name with labels (`curl`, as Prometheus or an operator would fetch it).
    static func scrape(_ url: String) throws -> [String: Double] {
        let (status, out, err) = try shell("curl -sf '\(url)'")
        guard status == 0 else { throw TestFailure("scrape failed: \(err)") }
        var samples: [String: Double] = [:]
        for line in out.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                continue
            }
            samples[String(line[..<space])] = value
        }
        return samples
    }
}

extension OperatingTests {
    /// `serve --config FILE`: the file's settings apply, and a flag on the command line overrides the file's.
    @Test func aConfigurationFileSetsServesOptionsAndFlagsOverrideIt() async throws {
        let file = ServerProcess.newDataFolder().path + ".yaml"
        defer { try? FileManager.default.removeItem(atPath: file) }
        try """
        # what an operator keeps in /etc/timelined/timelined.yaml
        log-format: json
        log-level: debug
        metrics: 0
        max-connections: 2
        empty: true
        """.write(toFile: file, atomically: true, encoding: .utf8)
        let server = try ServerProcess(arguments: ["--config", file, "--log-format", "text", "--log-level", "info"])
        #expect(server.startupOutput.contains("at version 0"), "empty: true")
        #expect(server.startupOutput.contains("metrics on http://127.0.0.1:"))
        let first = try await server.connect(token: server.adminToken)
        let second = try await server.connect(token: server.adminToken)
        let third = try await TestClient.connect(
            port: server.port, fingerprint: server.fingerprint, readGreeting: false)
        let refused = try await third.nextLine()
        #expect(refused?.hasPrefix("* BYE TOO_MANY_CONNECTIONS") == true, "\(refused ?? "")")
        await first.close()
        await second.close()
        _ = server.terminate()
        // The command line's --log-format text and --log-level info won over the file's json and debug.
        let log = try String(contentsOf: server.logFile, encoding: .utf8)
        #expect(log.contains(" info timelined:") && !log.contains("{\"") && !log.contains(" debug "), "\(log)")
        // The file the service unit reads starts a server (the test's folder and address override its own), and
        // docs/OPERATING.md shows it whole.
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let packaged = root.appendingPathComponent("packaging/timelined.yaml").path
        let unitServer = try ServerProcess(arguments: ["--config", packaged, "--metrics", "0"])
        #expect(unitServer.startupOutput.contains("metrics on http://127.0.0.1:"))
        _ = unitServer.terminate()
        let operating = try String(contentsOf: root.appendingPathComponent("docs/OPERATING.md"), encoding: .utf8)
        #expect(operating.contains(try String(contentsOfFile: packaged, encoding: .utf8)))
        // A setting serve does not have is refused, naming the file and the key.
        let bad = ServerProcess.newDataFolder().path + ".yaml"
        defer { try? FileManager.default.removeItem(atPath: bad) }
        try "listen: 127.0.0.1:0\nlisten-port: 7447\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let (status, _, err) = try ServerProcess.run(["serve", "--data", "/nonexistent", "--config", bad])
        #expect(status == 2 && err.contains("unknown setting 'listen-port'"), "\(err)")
    }
}

/// A unix datagram socket standing in for systemd's notification socket.
private final class NotifyListener {
    let fd: Int32
    let path: String

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8) + [0]) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard fd >= 0, bound == 0 else { throw TestFailure("cannot bind \(path): \(errno)") }
    }

    deinit {
        close(fd)
        unlink(path)
    }

    /// The next datagram, or nil after `timeout` seconds.
    func next(timeout: Int) -> String? {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, Int32(timeout * 1000)) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = recv(fd, &buffer, buffer.count, 0)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n], as: UTF8.self)
    }
}

/// What the writers and the backup task share.
private final class Progress: Sendable {
    /// Versions acknowledged so far.
    let acknowledged = Mutex<[Int64]>([])
    /// Those acknowledged before the backup began, once it has ended.
    let backupStarted = Mutex<[Int64]?>(nil)
}
