import Foundation
import Testing
import TimelineCore

/// Office replication with real processes: a primary, an office replica following it, and a replica of the
/// replica (headquarters → region → office).
@Suite(.serialized) struct ReplicationTests {
    let event = "019ECZQW007TKPA8XK03963NRD"

    func replica(
        of upstream: ServerProcess, office: String, data: URL? = nil, port: Int? = nil, linkName: String? = nil
    ) throws -> ServerProcess {
        let token = try upstream.addToken(
            linkName ?? "\(office)-link-\(UUID().uuidString.prefix(6))", role: "replicator")
        // The link's token from a file, as the README says, never on the command line. It stays for the test's
        // restarts of the office (they read it again), in the temporary folder.
        let tokenFile = ServerProcess.newDataFolder().path + ".token"
        FileManager.default.createFile(
            atPath: tokenFile, contents: Data(token.utf8), attributes: [.posixPermissions: 0o600])
        return try ServerProcess(
            data: data, port: port,
            arguments: [
                "--replicate-from", "127.0.0.1:\(upstream.port)", "--upstream-token-file", tokenFile,
                "--upstream-fingerprint", upstream.fingerprint.hex, "--office", office,
            ])
    }

    /// Revoking an office's link token at headquarters stops the link at once (§7.1): its WATCH is cut off, it
    /// cannot authenticate again, and the office says so, serving what it has.
    /// The primary's store: its own SQLite file, or a database in the test cluster (an office follows a node).
    static func primary(_ store: String) throws -> ServerProcess {
        try ServerProcess(arguments: store == "sqlite" ? [] : ["--store", try PostgresNodesTests.newDatabase()])
    }

    @Test(arguments: ["sqlite", "postgresql"])
    func revokingAnOfficesLinkStopsItAndTheOfficeSaysSo(store: String) async throws {
        let primary = try Self.primary(store)
        let office = try replica(of: primary, office: "office-r", linkName: "office-r-link")
        try await waitFor(office, version: 29)
        #expect(try primary.tool(["token", "revoke", "office-r-link"]).0 == 0)
        let hq = try await primary.connect(token: primary.adminToken)
        _ = try await hq.request(
            #"a PROPOSE {"op":"annotation.add","event":"\#(event)","text":"after the revocation"}"#)
        var state: JSON?
        for _ in 0..<150 {
            state = try status(office)["replica"]
            if state?["state"] == "disconnected", state?["message"]?.stringValue?.contains("AUTH") == true { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        #expect(state?["state"] == "disconnected", "\(String(describing: state))")
        #expect(state?["message"]?.stringValue?.contains("AUTH") == true, "\(String(describing: state))")
        #expect(try status(office)["version"] == 29)
        await hq.close()
    }

    /// The link's token is rotated without restarting the office: a new token written over the file, the old one
    /// revoked upstream; the office's next connection uses the new one and it goes on following.
    @Test func anOfficesLinkTokenIsRotatedWithoutARestart() async throws {
        let primary = try ServerProcess()
        let old = try primary.addToken("office-t-link", role: "replicator")
        let tokenFile = ServerProcess.newDataFolder().path + ".token"
        defer { try? FileManager.default.removeItem(atPath: tokenFile) }
        FileManager.default.createFile(
            atPath: tokenFile, contents: Data(old.utf8), attributes: [.posixPermissions: 0o600])
        let office = try ServerProcess(arguments: [
            "--replicate-from", "127.0.0.1:\(primary.port)", "--upstream-token-file", tokenFile,
            "--upstream-fingerprint", primary.fingerprint.hex, "--office", "office-t",
        ])
        try await waitFor(office, version: 29)
        let new = try primary.addToken("office-t-link-2", role: "replicator")
        try new.write(toFile: tokenFile, atomically: true, encoding: .utf8)
        #expect(try primary.tool(["token", "revoke", "office-t-link"]).0 == 0)
        let hq = try await primary.connect(token: primary.adminToken)
        let reply = try await hq.request(
            #"a PROPOSE {"op":"annotation.add","event":"\#(event)","text":"after the rotation"}"#)
        #expect(reply.last?.hasPrefix("a OK ") == true)
        try await waitFor(office, version: 30)
        #expect(try status(office)["replica"]?["state"] == "following")
        await hq.close()
    }

    func status(_ server: ServerProcess) throws -> JSON {
        try JSON(parsing: try server.tool(["status", "--json"]).1)
    }

    /// Waits until a server's store reaches `version` (and, for a replica, says so).
    func waitFor(_ server: ServerProcess, version: Int64, seconds: Double = 30) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if (try? status(server))?["version"]?.intValue ?? -1 >= version { return }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        throw TestFailure(
            "\(server.data.lastPathComponent) did not reach version \(version): \(String(describing: try? status(server)))"
        )
    }

    func verify(_ server: ServerProcess) throws -> JSON {
        try JSON(parsing: try server.tool(["verify", "--json"]).1)
    }

    @Test(arguments: ["sqlite", "postgresql"])
    func officesFollowForwardQueueAndConverge(store: String) async throws {
        var primary = try Self.primary(store)
        let a = try replica(of: primary, office: "office-a")
        let b = try replica(of: a, office: "office-b")  // follows the replica: a chain
        try await waitFor(a, version: 29)
        try await waitFor(b, version: 29)

        // An annotation made through replica A is acknowledged once upstream took it, and is then visible
        // through replica B, authored by the analyst qualified by the office.
        let ana = try await a.connect(token: try a.addToken("ana", role: "annotator"))
        let note = #"{"op":"annotation.add","event":"\#(event)","text":"seen in office A"}"#
        let ok = try await ana.request("n1 PROPOSE \(note)")
        #expect(ok.last?.hasPrefix(#"n1 OK {"annotation":"#) == true, "\(ok)")
        try await waitFor(b, version: 30)
        let reader = try await b.connect(token: try b.addToken("rita", role: "reader"))
        let got = try await reader.request("g GET \(event)")
        #expect(got.first?.contains(#""author":"ana@office-a""#) == true)
        #expect(got.first?.contains("seen in office A") == true)
        // Roles are checked at the office: a reader there cannot write through it.
        #expect(try await reader.request("w PROPOSE \(note)").last == "w NO FORBIDDEN role reader may not PROPOSE")

        // The same version and state hash everywhere.
        let states = try [primary, a, b].map { try verify($0) }
        #expect(states.allSatisfy { $0["ok"] == true })
        #expect(Set(states.map { $0["state"]! }).count == 1)
        #expect(Set(states.map { $0["version"]! }) == [30])
        // An office's store, written only by what it pulls, is made with a replica's 16 KiB pages.
        #expect(sqlitePageSize(of: a.data.appendingPathComponent("timeline.sqlite").path) == 16_384)
        if store == "sqlite" {
            #expect(sqlitePageSize(of: primary.data.appendingPathComponent("timeline.sqlite").path) == 4_096)
        }

        // Replica A killed during a stream of writes restarts from its checkpoint and catches up, without gaps.
        let writer = try await primary.connect(token: primary.adminToken)
        var burst = ""
        for i in 0..<300 {
            burst += "k\(i) PROPOSE {\"op\":\"annotation.add\",\"event\":\"\(event)\",\"text\":\"burst \(i)\"}\n"
        }
        try await writer.sendRaw(burst)
        try await Task.sleep(nanoseconds: 150_000_000)
        let aPort = a.port
        a.kill9()
        _ = try await writer.collect(until: "k299", timeout: 60)
        let aData = a.stopKeepingData()
        defer { ServerProcess.removeData(aData) }
        let a2 = try ServerProcess(data: aData, port: aPort, arguments: a.process.arguments!.suffix(8).map { $0 })
        try await waitFor(a2, version: 330)
        try await waitFor(b, version: 330)
        let after = try [primary, a2, b].map { try verify($0) }
        #expect(after.allSatisfy { $0["ok"] == true && $0["version"] == 330 })
        #expect(Set(after.map { $0["state"]! }).count == 1)

        // With the primary stopped, A keeps serving reads and queues an annotation, which reaches the primary
        // once it is back.
        let primaryPort = primary.port
        let primaryData = primary.stopKeepingData()
        defer { ServerProcess.removeData(primaryData) }
        let ana2 = try await a2.connect(token: try a2.addToken("ana2", role: "annotator"))
        #expect(try await ana2.request("r GET \(event)").last == "r OK")
        var queuedReply: [String] = []
        for _ in 0..<50 {
            queuedReply = try await ana2.request(
                "q PROPOSE {\"op\":\"annotation.add\",\"event\":\"\(event)\",\"text\":\"while HQ is down\"}")
            if queuedReply.last?.contains(#""queued":true"#) == true { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        #expect(queuedReply.last?.contains(#""queued":true"#) == true, "\(queuedReply)")
        let caps = try await ana2.request("c CAPS")
        #expect(caps.first?.contains(#""state":"disconnected""#) == true)
        #expect(try status(a2)["replica"]?["queued"] == 1)
        primary = try ServerProcess(data: primaryData, port: primaryPort)
        try await waitFor(primary, version: 331, seconds: 40)
        let hq = try await primary.connect(token: primary.adminToken)
        let last = try await hq.request("p PULL 330")
        #expect(last.first?.contains("while HQ is down") == true)
        #expect(last.first?.contains(#""author":"ana2@office-a""#) == true)
        try await waitFor(b, version: 331)
        #expect(try status(a2)["replica"]?["queued"] == 0)
        for c in [ana, reader, writer, ana2, hq] { await c.close() }
    }

    @Test(arguments: ["sqlite", "postgresql"])
    func aReplicaRefusesToFollowAnotherDataset(store: String) async throws {
        let primary = try Self.primary(store)
        let office = try replica(of: primary, office: "office-a")
        try await waitFor(office, version: 29)
        let officePort = office.port
        let data = office.stopKeepingData()
        defer { ServerProcess.removeData(data) }
        // Another server with its own dataset; the same office folder pointed at it.
        let stranger = try ServerProcess()
        let moved = try replica(of: stranger, office: "office-a", data: data, port: officePort)
        var state: JSON?
        for _ in 0..<100 {
            state = try status(moved)["replica"]
            if state?["state"] == "diverged" { break }
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        #expect(state?["state"] == "diverged")
        #expect(state?["message"]?.stringValue?.contains("dataset") == true)
        // It still serves its own verified copy, and says it is not following.
        let client = try await moved.connect(token: moved.adminToken)
        #expect(client.greeting.contains(#""state":"diverged""#))
        #expect(try await client.request("g GET \(event)").last == "g OK")
        #expect(try verify(moved)["ok"] == true)
        await client.close()
        _ = primary
    }
}
