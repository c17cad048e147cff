import Foundation
import Synchronization
import Testing
import TimelineCore

/// Several real `timelined` nodes on one real PostgreSQL (the private cluster Scripts/test.sh starts), over real TLS.
@Suite(.serialized) struct PostgresNodesTests {
    let event = "019ECZQW007TKPA8XK03963NRD"

    func annotation(_ text: String) -> String {
        #"{"op":"annotation.add","event":"\#(event)","text":"\#(text)"}"#
    }

    /// A new, empty database in the test cluster, as a store URL.
    static func newDatabase() throws -> String {
        guard let admin = ProcessInfo.processInfo.environment["TIMELINE_TEST_POSTGRES"] else {
            throw TestFailure("TIMELINE_TEST_POSTGRES is not set: run the tests through Scripts/test.sh")
        }
        let name = "nodes_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let base = String(admin.prefix { $0 != "?" })
        let (status, _, err) = try ServerProcess.run(
            [base, "-q", "-c", "CREATE DATABASE \(name)"],
            executable: URL(fileURLWithPath: "/usr/lib/postgresql/15/bin/psql"))
        guard status == 0 else { throw TestFailure("psql: \(err)") }
        return base.replacingOccurrences(of: "/postgres", with: "/\(name)") + "?sslmode=disable"
    }

    /// Versions of the `* EDIT` lines a watcher receives until it has `count` of them.
    static func watch(_ client: TestClient, count: Int) async throws -> [Int64] {
        var seen: [Int64] = []
        while seen.count < count {
            guard let line = try await client.nextLine(timeout: 30) else { break }
            if line.hasPrefix("* EDIT ") {
                seen.append(try JSON(parsing: String(line.dropFirst(7)))["version"]!.intValue!)
            }
        }
        return seen
    }

    /// Sends `count` single PROPOSEs one after another; returns the versions acknowledged (stops at the first
    /// connection failure: a node killed under it).
    func write(_ client: TestClient, name: String, count: Int) async -> [Int64] {
        var acknowledged: [Int64] = []
        for i in 0..<count {
            guard let reply = try? await client.request("\(name)-\(i) PROPOSE \(annotation("\(name) \(i)"))").last,
                reply.hasPrefix("\(name)-\(i) OK ")
            else { break }
            if let version = try? JSON(parsing: String(reply.drop { $0 != "{" }))["version"]?.intValue {
                acknowledged.append(version)
            }
        }
        return acknowledged
    }

    /// `timelined verify --json` of a folder: its status, and the report without `live_pid` (which node serves it).
    func stateLine(_ folder: URL) throws -> (Int32, String) {
        let (status, out, err) = try ServerProcess.run(["verify", "--data", folder.path, "--json"])
        guard case .object(var report) = try? JSON(parsing: out) else { return (status, out + err) }
        report["live_pid"] = nil
        return (status, JSON.object(report).canonicalString)
    }

    @Test func twoNodesServeOneTimeline() async throws {
        let url = try Self.newDatabase()
        let a = try ServerProcess(arguments: ["--store", url])
        let b = try ServerProcess(arguments: ["--store", url])
        #expect(a.startupOutput.contains("sample timeline loaded"))
        #expect(b.startupOutput.contains("joined dataset "), "\(b.startupOutput)")
        // A token made through one node works on the other: tokens live in the database.
        let token = try b.addToken("ana", role: "annotator")
        let watchers = [try await a.connect(token: token), try await b.connect(token: a.adminToken)]
        for w in watchers { try await w.sendRaw("w WATCH 29\n") }
        let acknowledged = try await withThrowingTaskGroup(of: [Int64].self) { group in
            for writer in 0..<8 {
                let node = writer % 2 == 0 ? a : b
                let client = try await node.connect(token: token)
                group.addTask { await self.write(client, name: "w\(writer)", count: 25) }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(acknowledged.sorted() == Array(30...229))
        for w in watchers { #expect(try await Self.watch(w, count: 200) == Array(30...229)) }
        // Every read answers the same whichever node is asked.
        let pulls = try await [a, b].asyncMap { node in
            try await node.connect(token: token).request("p PULL 0 1000")
        }
        #expect(pulls[0] == pulls[1] && pulls[0].count == 230)
        let (sa, va) = try stateLine(a.data)
        let (sb, vb) = try stateLine(b.data)
        #expect(sa == 0 && sb == 0 && va == vb, "\(va) \(vb)")
        #expect(va.contains(#""version":229"#))
    }

    /// A node nobody watches learns of other nodes' commits by their head alone; watches started and ended on it
    /// while another node writes each get every edit after the version they start from, in order.
    @Test func watchesComingAndGoingOnAQuietNodeMissNothing() async throws {
        let url = try Self.newDatabase()
        let a = try ServerProcess(arguments: ["--store", url])
        let b = try ServerProcess(arguments: ["--store", url])
        let token = try a.addToken("ana", role: "annotator")
        let done = Flag()
        let acknowledged = try await withThrowingTaskGroup(of: [Int64].self) { group in
            for writer in 0..<4 {
                let client = try await a.connect(token: token)
                group.addTask {
                    var versions: [Int64] = []
                    var n = 0
                    while !done.isSet {
                        versions += await self.write(client, name: "q\(writer)x\(n)", count: 1)
                        n += 1
                    }
                    return versions
                }
            }
            group.addTask {
                defer { done.set() }
                for round in 0..<4 {
                    let watcher = try await b.connect(token: token)
                    // What node b says its head is, as a watcher would start from.
                    let caps = try await watcher.request("c CAPS").first { $0.hasPrefix("* CAPS ") } ?? ""
                    let from = try #require(try JSON(parsing: String(caps.dropFirst(7)))["version"]?.intValue)
                    try await watcher.sendRaw("w WATCH \(from)\n")
                    let seen = try await Self.watch(watcher, count: 30)
                    #expect(seen == Array((from + 1)...(from + 30)), "round \(round)")
                    // Edits sent after the 30th and before DONE come first.
                    try await watcher.sendRaw("DONE\n")
                    let end = try await watcher.collect(until: "w")
                    #expect(end.last?.hasPrefix("w OK ") == true, "\(end.suffix(2))")
                    await watcher.close()
                }
                return []
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        let head = try #require(acknowledged.max())
        #expect(acknowledged.sorted() == Array(30...head))
        // b's head follows a's without a watcher: the greeting names a's last version once its NOTIFY arrived.
        let deadline = ContinuousClock.now + .seconds(30)
        var said: Int64 = 0
        while said < head && ContinuousClock.now < deadline {
            let caps = try await b.connect(token: token).request("c CAPS").first { $0.hasPrefix("* CAPS ") } ?? ""
            said = try JSON(parsing: String(caps.dropFirst(7)))["version"]?.intValue ?? 0
            if said < head { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(said == head)
        let (sa, va) = try stateLine(a.data)
        let (sb, vb) = try stateLine(b.data)
        #expect(sa == 0 && sb == 0 && va == vb, "\(va) \(vb)")
    }

    @Test func aNodeKilledUnderLoadLosesNoAcknowledgedEdit() async throws {
        let url = try Self.newDatabase()
        let a = try ServerProcess(arguments: ["--store", url])
        let b = try ServerProcess(arguments: ["--store", url])
        let token = try a.addToken("ana", role: "annotator")
        let watcher = try await a.connect(token: token)
        try await watcher.sendRaw("w WATCH 29\n")
        let results = try await withThrowingTaskGroup(of: [Int64].self) { group in
            for writer in 0..<8 {
                let client = try await (writer % 2 == 0 ? a : b).connect(token: token)
                group.addTask { await self.write(client, name: "k\(writer)", count: 60) }
            }
            // SIGKILL node b once some of its writes were acknowledged.
            let probe = try await a.connect(token: token)
            group.addTask {
                while try await probe.request("h PULL 149 1").count < 2 {
                    try await Task.sleep(for: .milliseconds(20))
                }
                b.kill9()
                // Stands for the kill among the versions.
                return [0]
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(results.contains(0))
        let acknowledged = results.filter { $0 != 0 }
        let folder = b.stopKeepingData()
        defer { ServerProcess.removeData(folder) }
        let restarted = try ServerProcess(data: folder, arguments: ["--store", url])
        // Every acknowledged edit is in the log once, the versions have no gap, and a after the kill still served.
        let head = try await restarted.connect(token: token).request("h PULL 0 100000")
        let versions = head.filter { $0.hasPrefix("* EDIT ") }.map {
            try! JSON(parsing: String($0.dropFirst(7)))["version"]!.intValue!
        }
        #expect(versions == Array(1...Int64(versions.count)))
        #expect(Set(acknowledged).isSubset(of: Set(versions)))
        #expect(acknowledged.count == Set(acknowledged).count)
        #expect(acknowledged.count >= 4 * 60, "node a's writers all finished")
        // The watcher on the surviving node saw every edit once, in order.
        #expect(try await Self.watch(watcher, count: versions.count - 29) == Array(30...Int64(versions.count)))
        let (sa, va) = try stateLine(a.data)
        let (sb, vb) = try stateLine(folder)
        #expect(sa == 0 && sb == 0 && va == vb, "\(va) \(vb)")
    }
}

/// Set once, read by other tasks.
final class Flag: Sendable {
    private let value = Mutex(false)
    var isSet: Bool { value.withLock { $0 } }
    func set() { value.withLock { $0 = true } }
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for element in self { out.append(try await transform(element)) }
        return out
    }
}

extension PostgresNodesTests {
    /// SQLite → PostgreSQL → SQLite: the same chain head and state hash at every step, tokens kept, and the folder
    /// then serving from the database.
    @Test func migrateRoundTripKeepsTheChainAndState() async throws {
        let url = try Self.newDatabase()
        let data: URL
        do {
            let server = try ServerProcess()
            let token = try server.addToken("ana", role: "annotator")
            let client = try await server.connect(token: token)
            for i in 0..<20 { _ = try await client.request("n\(i) PROPOSE \(annotation("before the move \(i)"))") }
            data = server.stopKeepingData()
        }
        defer { ServerProcess.removeData(data) }
        let (s0, before) = try stateLine(data)
        #expect(s0 == 0)
        let (s1, out1, err1) = try ServerProcess.run(["migrate", "--data", data.path, "--to", url, "--json"])
        #expect(s1 == 0, "\(out1) \(err1)")
        // The folder now serves from the database: verify reads it there, with the same head and state.
        let (s2, after) = try stateLine(data)
        #expect(s2 == 0)
        #expect(try JSON(parsing: after)["state"] == JSON(parsing: before)["state"])
        #expect(try JSON(parsing: after)["head"] == JSON(parsing: before)["head"])
        // A second migration into the same database is refused, and changes nothing.
        let (s3, _, err3) = try ServerProcess.run(["migrate", "--data", data.path, "--to", url])
        #expect(s3 == 1 && err3.contains("serves from"), "\(err3)")
        // Served from the database with the tokens it had.
        let node = try ServerProcess(data: data)
        let token = try #require(
            try ServerProcess.run(["token", "list", "--data", data.path, "--json"]).1.split(separator: "\n").first {
                $0.contains(#""name":"ana""#)
            })
        #expect(token.contains(#""revoked":null"#))
        _ = node.terminate()
        let back = ServerProcess.newDataFolder()
        defer { ServerProcess.removeData(back) }
        let (s4, out4, err4) = try ServerProcess.run(["migrate", "--data", back.path, "--from", url])
        #expect(s4 == 0, "\(out4) \(err4)")
        let (s5, again) = try stateLine(back)
        #expect(s5 == 0)
        #expect(try JSON(parsing: again)["state"] == JSON(parsing: before)["state"])
        #expect(try JSON(parsing: again)["head"] == JSON(parsing: before)["head"])
        #expect(try JSON(parsing: again)["version"] == JSON(parsing: before)["version"])
    }
}

extension PostgresNodesTests {
    /// A token revoked through one node stops at the next request on another node's open connection, once that
    /// node has heard of it (a NOTIFY, or its next poll within a second).
    @Test func aTokenRevokedThroughOneNodeStopsOnTheOther() async throws {
        let url = try Self.newDatabase()
        let a = try ServerProcess(arguments: ["--store", url])
        let b = try ServerProcess(arguments: ["--store", url])
        let token = try a.addToken("ana", role: "annotator")
        let onB = try await b.connect(token: token)
        #expect(try await onB.request("p0 GET \(event)").last == "p0 OK")
        let (status, _, err) = try a.tool(["token", "revoke", "ana"])
        #expect(status == 0, "\(err)")
        var answer = ""
        let deadline = ContinuousClock.now + .seconds(10)
        var n = 1
        while ContinuousClock.now < deadline {
            // GET, not PING: PING is open to a connection without a token too.
            answer = try await onB.request("p\(n) GET \(event)").last ?? ""
            if answer != "p\(n) OK" { break }
            n += 1
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(answer.hasPrefix("p\(n) NO AUTH_REVOKED "), "\(answer)")
        // And a new connection to either node is refused.
        for node in [a, b] {
            let fresh = try await node.connect()
            #expect(try await fresh.request("x AUTH \(token)").last?.hasPrefix("x NO AUTH_FAILED") == true)
        }
    }

    /// A token given an expiry through one node: every node lists it with its expiry and last use, and refuses it
    /// once it has expired.
    @Test func aTokensExpiryHoldsOnEveryNode() async throws {
        let url = try Self.newDatabase()
        let a = try ServerProcess(arguments: ["--store", url])
        let b = try ServerProcess(arguments: ["--store", url])
        // Added through node a, used on node b.
        let (token, _, onB, seconds) = try await a.expiringToken(name: "temp", usedOn: b)
        let deadline = ContinuousClock.now + .seconds(seconds * 2 + 60)
        var listed = ""
        while ContinuousClock.now < deadline {
            listed = try b.tool(["token", "list", "--json"]).1
            if listed.contains(#""last_used":"20"#) { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(listed.contains(#""expires":"20"#) && listed.contains(#""last_used":"20"#), "\(listed)")
        var refused = ""
        while ContinuousClock.now < deadline {
            refused = try await a.connect().request("x AUTH \(token)").last ?? ""
            if refused.hasPrefix("x NO ") { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(refused.hasPrefix("x NO AUTH_FAILED"), "\(refused)")
        #expect(try await b.connect().request("y AUTH \(token)").last?.hasPrefix("y NO AUTH_FAILED") == true)
    }
}

extension PostgresNodesTests {
    /// An operator's mistakes with a store are said at once, in a sentence, and leave nothing behind: a database
    /// that does not exist, nobody listening, a password file others can read, a password in the URL.
    @Test func storeMistakesAreSaidAtOnce() throws {
        let url = try Self.newDatabase()
        let base = String(url.prefix { $0 != "?" })
        let folder = ServerProcess.newDataFolder()
        defer { ServerProcess.removeData(folder) }
        let missing = base.replacingOccurrences(of: "/nodes_", with: "/missing_") + "?sslmode=disable"
        let (s1, _, e1) = try ServerProcess.run(["serve", "--data", folder.path, "--store", missing])
        #expect(s1 == 1 && e1.contains("does not exist") && e1.contains("CREATE DATABASE"), "\(e1)")
        #expect(!FileManager.default.fileExists(atPath: folder.path), "a failed first start left its folder")
        let (s2, _, e2) = try ServerProcess.run([
            "verify", "--store", "postgresql://timeline@127.0.0.1:1/x?sslmode=disable",
        ])
        #expect(s2 == 1 && e2.contains("connection refused"), "\(e2)")
        let secret = folder.path + ".password"
        FileManager.default.createFile(
            atPath: secret, contents: Data("x\n".utf8), attributes: [.posixPermissions: 0o644])
        defer { try? FileManager.default.removeItem(atPath: secret) }
        let (s3, _, e3) = try ServerProcess.run(["verify", "--store", url, "--store-password-file", secret])
        #expect(s3 == 1 && e3.contains("can be read by other users") && e3.contains("chmod 600"), "\(e3)")
        let (s4, _, e4) = try ServerProcess.run([
            "verify", "--store", url.replacingOccurrences(of: "timeline@", with: "timeline:secret@"),
        ])
        #expect(s4 == 2 && e4.contains("holds a password"), "\(e4)")
    }
}
