import Foundation
import TimelineClient
import TimelineCore
import TimelineLink

/// A private PostgreSQL 15 (Debian's): its own folder, a loopback port, started and stopped by the harness as the
/// `postgres` user (initdb refuses root); no system service.
final class PrivatePostgres {
    typealias Result = WholeBench.PgbenchResult
    let pgbin = "/usr/lib/postgresql/15/bin"
    let dir: String
    let port: String
    let user = "postgres"

    init() throws {
        // Its own folder, owned by the postgres user (the work folder may not be reachable for it).
        dir = NSTemporaryDirectory() + "timeline-bench-pg-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try WholeBench.run(["chown", "postgres:postgres", dir])
        try WholeBench.run(
            [pgbin + "/initdb", "-D", dir + "/data", "-U", "bench", "--auth=trust", "-E", "UTF8"], user: user)
        port = String(20_000 + Int.random(in: 0..<20_000))
        // Two timelined nodes (a pool each, and a listener) beside pgbench's 64 clients.
        let options =
            "-k \(dir) -p \(port) -c listen_addresses=127.0.0.1 -c synchronous_commit=on -c fsync=on "
            + "-c max_connections=200 -c shared_buffers=128MB"
        // pg_ctl -w returns once the server accepts connections.
        try WholeBench.spawnAndWait([
            "/usr/sbin/runuser", "-u", user, "--", pgbin + "/pg_ctl", "start", "-w", "-D", dir + "/data", "-l",
            dir + "/postgres.log", "-o", options,
        ])
    }

    func stop() {
        try? WholeBench.spawnAndWait([
            "/usr/sbin/runuser", "-u", user, "--", pgbin + "/pg_ctl", "stop", "-w", "-m", "fast", "-D", dir + "/data",
        ])
        try? FileManager.default.removeItem(atPath: dir)
    }

    func psql(_ sql: String, database: String = "postgres") throws {
        try WholeBench.run(
            [pgbin + "/psql", "-h", dir, "-p", port, "-U", "bench", "-d", database, "-q", "-c", sql], user: user)
    }

    /// A new database; returns its store URL for `timelined serve --store`.
    func createDatabase(_ name: String) throws -> String {
        try psql("CREATE DATABASE \(name)")
        return "postgresql://bench@127.0.0.1:\(port)/\(name)?sslmode=disable"
    }

    /// Runs pgbench over TCP `rounds` times, each after a call of `before`, then once through the server's Unix
    /// socket, as context. Until 2026-11-29 the rounds went through the socket, which skips the TCP stack that our
    /// side pays: 4-11 % of pgbench's tps in two pairs of runs here.
    func pgbench(
        clients: Int, seconds: Int, rounds: Int, before: () async throws -> Void
    ) async throws -> (tcp: Result, socket: Result) {
        try psql("CREATE TABLE IF NOT EXISTS notes (id bigserial PRIMARY KEY, event text NOT NULL, body text NOT NULL)")
        let script = dir + "/insert.sql"
        try "INSERT INTO notes (event, body) VALUES ('019ECZQW007TKPA8XK03963NRD', 'b2 ' || :client_id);\n".write(
            toFile: script, atomically: false, encoding: .utf8)
        try WholeBench.run(["chown", "postgres:postgres", script])
        var tcpTPS: [Double] = []
        var tcpLatencies: [Double] = []
        var serverCPU = 0.0
        var clientCPU = 0.0
        var socket = Result(tps: 0, latencies: [])
        let tag = UUID().uuidString.prefix(8)
        for round in 0...rounds {
            // The last round is the context one, through the socket, after the TCP rounds alternated with ours.
            let host = round < rounds ? "127.0.0.1" : dir
            if round < rounds { try await before() }
            let prefix = "\(dir)/round\(tag)-\(round)"
            let before = CPUTime.sample()
            let (_, out, _, _) = try WholeBench.run(
                [
                    pgbin + "/pgbench", "-n", "-h", host, "-p", port, "-U", "bench", "-c", "\(clients)", "-j", "2",
                    "-T", "\(seconds)", "-f", script, "--log", "--log-prefix=\(prefix)", "postgres",
                ], user: user, clearSignalMask: true)
            let after = CPUTime.sample()
            if round < rounds {
                serverCPU += after.postgres(since: before)
                clientCPU += after.children - before.children
            }
            guard let tpsLine = out.split(separator: "\n").first(where: { $0.hasPrefix("tps = ") }),
                let roundTPS = Double(tpsLine.split(separator: " ")[2])
            else { throw WholeBench.Failure("pgbench printed no tps: \(out)") }
            // PostgreSQL writes its dirty buffers now, not in the background during the next round of ours.
            try psql("CHECKPOINT")
            var latencies: [Double] = []
            for file in try FileManager.default.contentsOfDirectory(atPath: dir)
            where file.hasPrefix("round\(tag)-\(round).") {
                let text = try String(contentsOfFile: dir + "/" + file, encoding: .utf8)
                for line in text.split(separator: "\n") {
                    let fields = line.split(separator: " ")
                    if fields.count >= 3, let us = Double(fields[2]) { latencies.append(us / 1000) }
                }
            }
            if round < rounds {
                tcpTPS.append(roundTPS)
                tcpLatencies += latencies
            } else {
                socket = Result(tps: roundTPS, latencies: latencies)
            }
        }
        return (
            Result(
                tps: tcpTPS.reduce(0, +) / Double(tcpTPS.count), latencies: tcpLatencies, serverCPU: serverCPU,
                clientCPU: clientCPU),
            socket
        )
    }
}

/// CPU time, from /proc: PostgreSQL's processes (the postmaster's children that ended included), timelined's, this
/// process's own, and its ended children's (pgbench, through runuser and time).
///
/// Differences are taken process by process: a process that ended between two samples took its time out of the
/// sum (into its parent's, once reaped), which made a sum's difference negative now and then.
struct CPUTime {
    var postgresByProcess: [Int: Double] = [:]
    var timelinedByProcess: [Int: Double] = [:]
    var own = 0.0
    var children = 0.0

    /// PostgreSQL's CPU seconds since `before`.
    func postgres(since before: CPUTime) -> Double { Self.delta(postgresByProcess, before.postgresByProcess) }
    /// timelined's CPU seconds since `before`.
    func timelined(since before: CPUTime) -> Double { Self.delta(timelinedByProcess, before.timelinedByProcess) }

    private static func delta(_ after: [Int: Double], _ before: [Int: Double]) -> Double {
        after.reduce(0) { sum, entry in sum + max(0, entry.value - (before[entry.key] ?? 0)) }
    }

    static func sample() -> CPUTime {
        let tick = Double(sysconf(Int32(_SC_CLK_TCK)))
        var out = CPUTime()
        func fields(_ pid: String) -> (String, [Substring])? {
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")")
            else { return nil }
            let name = String(text[text.index(after: open)..<close])
            return (name, text[text.index(close, offsetBy: 2)...].split(separator: " "))
        }
        func seconds(_ f: [Substring], _ indices: [Int]) -> Double {
            indices.reduce(0) { $0 + (Double(f[$1]) ?? 0) } / tick
        }
        // After the name: state is field 0, utime 11, stime 12, cutime 13, cstime 14.
        for pid in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let number = Int(pid), let (name, f) = fields(pid), f.count > 14 else { continue }
            if name == "postgres" { out.postgresByProcess[number] = seconds(f, [11, 12, 13, 14]) }
            if name == "timelined" { out.timelinedByProcess[number] = seconds(f, [11, 12]) }
        }
        if let (_, f) = fields("self") {
            out.own = seconds(f, [11, 12])
            out.children = seconds(f, [13, 14])
        }
        return out
    }
}

/// The PostgreSQL store's figures (docs/PERFORMANCE.md, "On PostgreSQL"): B2 against pgbench on the same
/// PostgreSQL, B2 split over two nodes, cross-node WATCH, and B1 and B3 next to the SQLite store's in the same run.
enum PostgresBench {
    typealias Server = ReplicationBench.Server
    static let now = ReplicationBench.now
    static let percentile = ReplicationBench.percentile

    static func run(bin: String, work: String, quick: Bool) async throws -> [Figure] {
        let pg = try PrivatePostgres()
        defer { pg.stop() }
        let url = try pg.createDatabase("timeline")
        let timelined = bin + "/timelined"
        let a = try Server(binary: timelined, data: work + "/pg-a", extra: ["--store", url])
        defer { a.stop() }
        let b = try Server(binary: timelined, data: work + "/pg-b", extra: ["--store", url])
        defer { b.stop() }
        let token = a.adminToken
        let sampler = try await a.connect(token)
        let events = try await WholeBench.sampleEvents(sampler)
        await sampler.close()
        var figures: [Figure] = []
        if benchSelected("B2") {
            figures += try await proposals(pg: pg, nodes: [a, b], token: token, events: events, quick: quick)
        }
        if benchSelected("B6") {
            figures += try await crossNodeWatch(a: a, b: b, token: token, events: events, quick: quick)
        }
        if benchSelected("B1") {
            figures += try await batch(bin: bin, work: work, node: a, token: token, events: events, quick: quick)
        }
        if benchSelected("B3") {
            figures += try await pull(bin: bin, work: work, url: url, node: a, token: token)
        }
        return figures
    }

    static func proposalLine(_ events: [String]) -> @Sendable (Int, Int) -> String {
        { c, i in #"{"op":"annotation.add","event":"\#(events[(c + i) % events.count])","text":"pg b2 \#(c) \#(i)"}"# }
    }

    /// 64 connections of single PROPOSEs against one node, alternating with pgbench's 64 clients on the same
    /// PostgreSQL; then the same 64 connections split over two nodes, alternating with one node again.
    static func proposals(pg: PrivatePostgres, nodes: [Server], token: String, events: [String], quick: Bool)
        async throws -> [Figure]
    {
        let clients = 64
        let duration = quick ? 4.0 : 20.0
        let rounds = quick ? 1 : 3
        var one: [Double] = []
        var oneElapsed = 0.0
        let line = proposalLine(events)
        var cpu = (node: 0.0, postgres: 0.0, load: 0.0)
        let reference = try await pg.pgbench(clients: clients, seconds: Int(duration), rounds: rounds) {
            let before = CPUTime.sample()
            let round = try await ProposeLoad.run(
                port: nodes[0].port, fingerprint: nodes[0].fingerprint, token: token, connections: clients,
                seconds: duration, line: line)
            let after = CPUTime.sample()
            cpu.node += after.timelined(since: before)
            cpu.postgres += after.postgres(since: before)
            cpu.load += after.own - before.own
            one += round.latencies
            oneElapsed += round.elapsed
        }
        let perEdit = { (seconds: Double, edits: Int) in seconds / Double(max(1, edits)) * 1e6 }
        let perTransaction = { (seconds: Double) in seconds / Double(max(1, reference.tcp.latencies.count)) * 1e6 }
        let ours = Double(one.count) / oneElapsed
        var split: [Double] = []
        var splitElapsed = 0.0
        var again: [Double] = []
        var againElapsed = 0.0
        var splitCPU = (nodes: 0.0, postgres: 0.0)
        for _ in 0..<rounds {
            let before = CPUTime.sample()
            async let first = ProposeLoad.run(
                port: nodes[0].port, fingerprint: nodes[0].fingerprint, token: token, connections: clients / 2,
                seconds: duration, line: line)
            async let second = ProposeLoad.run(
                port: nodes[1].port, fingerprint: nodes[1].fingerprint, token: token, connections: clients / 2,
                seconds: duration, line: line)
            let (x, y) = try await (first, second)
            let after = CPUTime.sample()
            splitCPU.nodes += after.timelined(since: before)
            splitCPU.postgres += after.postgres(since: before)
            split += x.latencies + y.latencies
            splitElapsed += max(x.elapsed, y.elapsed)
            let single = try await ProposeLoad.run(
                port: nodes[0].port, fingerprint: nodes[0].fingerprint, token: token, connections: clients,
                seconds: duration, line: line)
            again += single.latencies
            againElapsed += single.elapsed
        }
        let pooled = rounds == 1 ? "sync commit" : "sync, \(rounds) rounds"
        return [
            Figure(
                name: "B2 on PostgreSQL: 64 connections PROPOSE, one node", value: ours, unit: "edits/s",
                reference: "pgbench 64 clients, same PostgreSQL, 1-row INSERT, \(pooled)",
                referenceValue: reference.tcp.tps, target: ">= 1.0x", targetRatio: 1.0),
            Figure(
                name: "B2 on PostgreSQL: latency p99", value: percentile(one, 0.99) * 1000, unit: "ms",
                reference: "pgbench p99", referenceValue: percentile(reference.tcp.latencies, 0.99),
                target: "<= 1.0x", targetRatio: 1.0, lowerIsBetter: true),
            // Context: where the two cores went, per edit and per pgbench transaction (CPU time of the processes, from
            // /proc, over the same rounds).
            Figure(
                name: "B2 on PostgreSQL, context: PostgreSQL CPU per edit", value: perEdit(cpu.postgres, one.count),
                unit: "us", reference: "per pgbench transaction",
                referenceValue: perTransaction(reference.tcp.serverCPU),
                target: "-", targetRatio: 0, lowerIsBetter: true),
            Figure(
                name: "B2 on PostgreSQL, context: load generator CPU per edit (TLS)",
                value: perEdit(cpu.load, one.count),
                unit: "us", reference: "pgbench's own CPU per transaction (plain TCP)",
                referenceValue: perTransaction(reference.tcp.clientCPU), target: "-", targetRatio: 0,
                lowerIsBetter: true),
            Figure(
                name: "B2 on PostgreSQL, context: the node's CPU per edit", value: perEdit(cpu.node, one.count),
                unit: "us", reference: "PostgreSQL's per pgbench transaction",
                referenceValue: perTransaction(reference.tcp.serverCPU),
                target: "-", targetRatio: 0, lowerIsBetter: true),
            Figure(
                name: "B2 on PostgreSQL: 64 connections over two nodes", value: Double(split.count) / splitElapsed,
                unit: "edits/s", reference: "one node, rounds alternating with it",
                referenceValue: Double(again.count) / againElapsed, target: ">= 1.0x", targetRatio: 1.0),
            Figure(
                name: "B2 on PostgreSQL: two nodes' p99", value: percentile(split, 0.99) * 1000, unit: "ms",
                reference: "one node's p99", referenceValue: percentile(again, 0.99) * 1000, target: "-",
                targetRatio: 0, lowerIsBetter: true),
            // Where the cores went over the two-node rounds, beside one node's.
            Figure(
                name: "B2 on PostgreSQL, context: two nodes' CPU per edit",
                value: perEdit(splitCPU.nodes, split.count), unit: "us", reference: "one node's",
                referenceValue: perEdit(cpu.node, one.count), target: "-", targetRatio: 0, lowerIsBetter: true),
            Figure(
                name: "B2 on PostgreSQL, context: PostgreSQL CPU per edit, two nodes",
                value: perEdit(splitCPU.postgres, split.count), unit: "us", reference: "one node",
                referenceValue: perEdit(cpu.postgres, one.count), target: "-", targetRatio: 0, lowerIsBetter: true),
        ]
    }

    /// An edit's OK from node A to its arrival at a watcher on node B, at 1,000 edits/s written through A by 8
    /// connections, each sending on a schedule.
    static func crossNodeWatch(a: Server, b: Server, token: String, events: [String], quick: Bool) async throws
        -> [Figure]
    {
        let total = quick ? 2_000 : 10_000
        let writers = 8
        let rate = 1_000.0
        let watcher = try await b.connect(token)
        let start = try await ReplicationBench.version(of: b, watcher)
        let arrivals = WholeBench.Samples<(Int64, Double)>()
        let watching = Task {
            _ = try await watcher.send(.watch(since: start)) { line in
                let t = now()
                guard let v = (try? JSON(parsing: String(line.dropFirst(7))))?["version"]?.intValue else { return }
                arrivals.add([(v, t)])
            }
        }
        let acknowledged = WholeBench.Samples<(Int64, Double)>()
        let began = now() + 0.2
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<writers {
                let conn = try await a.connect(token)
                group.addTask {
                    var i = w
                    while i < total {
                        let due = began + Double(i) / rate
                        let wait = due - now()
                        if wait > 0 { try await Task.sleep(nanoseconds: UInt64(wait * 1e9)) }
                        let reply = try await conn.send(
                            .propose(
                                edit:
                                    #"{"op":"annotation.add","event":"\#(events[i % events.count])","text":"cross \#(i)"}"#
                            ))
                        let t = now()
                        guard let v = reply.json?["version"]?.intValue else {
                            throw WholeBench.Failure("PROPOSE: \(reply.message)")
                        }
                        acknowledged.add([(v, t)])
                        i += writers
                    }
                    await conn.close()
                }
            }
            try await group.waitForAll()
        }
        let achieved = Double(total) / (now() - began)
        let deadline = now() + 30
        while arrivals.count.load(ordering: .relaxed) < total, now() < deadline {
            try await Task.sleep(nanoseconds: 10_000_000)
        }
        try await watcher.sendRaw("DONE")
        _ = try? await watching.value
        await watcher.close()
        let oks = Dictionary(acknowledged.all, uniquingKeysWith: { x, _ in x })
        let lags = arrivals.all.compactMap { v, t in oks[v].map { max(0, t - $0) * 1000 } }
        guard lags.count == total else { throw WholeBench.Failure("\(lags.count) of \(total) edits reached node B") }
        return [
            Figure(
                name: "B6 cross-node WATCH p99, OK on A to arrival on B", value: percentile(lags, 0.99), unit: "ms",
                reference: String(
                    format: "the target, 50 ms (at %.0f edits/s, p50 %.1f ms)", achieved,
                    percentile(lags, 0.5)),
                referenceValue: 50, target: "<= 1.0x", targetRatio: 1.0, lowerIsBetter: true)
        ]
    }

    /// `timeline batch` of N annotations into a node on PostgreSQL, next to the same into a server on SQLite.
    static func batch(bin: String, work: String, node: Server, token: String, events: [String], quick: Bool)
        async throws -> [Figure]
    {
        let n = quick ? 10_000 : 100_000
        let sqlite = try Server(binary: bin + "/timelined", data: work + "/pg-b1-sqlite")
        defer { sqlite.stop() }
        var rates: [Double] = []
        for (name, server, token) in [("postgresql", node, token), ("sqlite", sqlite, sqlite.adminToken)] {
            var text = ""
            for i in 0..<n {
                text +=
                    #"{"op":"annotation.add","event":"\#(events[i % events.count])","text":"bulk note \#(i)","tags":["b1"]}"#
                    + "\n"
            }
            let jsonl = work + "/pg-b1-\(name).jsonl"
            try text.write(toFile: jsonl, atomically: false, encoding: .utf8)
            let home = work + "/pg-b1-home-\(name)"
            try WholeBench.run([
                bin + "/timeline", "init", "--home", home, "--server", "127.0.0.1:\(server.port)", "--token", token,
                "--fingerprint", server.fingerprint.hex,
            ])
            WholeBench.settle()
            let (_, _, seconds, _) = try WholeBench.run([
                bin + "/timeline", "batch", jsonl, "--no-pull", "--home", home,
            ])
            rates.append(Double(n) / seconds)
        }
        return [
            Figure(
                name: "B1 on PostgreSQL: timeline batch, \(n) annotations", value: rates[0], unit: "edits/s",
                reference: "the same into a server on SQLite, this run", referenceValue: rates[1], target: "-",
                targetRatio: 0)
        ]
    }

    /// A fresh `timeline pull` of the whole log from a node on PostgreSQL, next to the same log (copied with
    /// `timelined migrate --from`) served from SQLite.
    static func pull(bin: String, work: String, url: String, node: Server, token: String) async throws -> [Figure] {
        let copy = work + "/pg-b3-sqlite"
        try WholeBench.run([bin + "/timelined", "migrate", "--data", copy, "--from", url])
        let sqlite = try Server(binary: bin + "/timelined", data: copy)
        defer { sqlite.stop() }
        let edits = try await {
            let c = try await node.connect(token)
            defer { Task { await c.close() } }
            return try await ReplicationBench.version(of: node, c)
        }()
        var results: [(Double, Double)] = []
        for (name, server) in [("postgresql", node), ("sqlite", sqlite)] {
            // `timeline init` pulls the whole log into the new replica: that is the fresh pull.
            WholeBench.settle()
            let (_, _, seconds, rss) = try WholeBench.run([
                bin + "/timeline", "init", "--home", work + "/pg-b3-home-\(name)", "--server",
                "127.0.0.1:\(server.port)", "--token", token, "--fingerprint", server.fingerprint.hex,
            ])
            results.append((Double(edits) / seconds, rss))
        }
        return [
            Figure(
                name: "B3 on PostgreSQL: fresh pull of \(edits) edits", value: results[0].0, unit: "edits/s",
                reference: "the same log served from SQLite, this run", referenceValue: results[1].0, target: "-",
                targetRatio: 0),
            Figure(
                name: "B3 on PostgreSQL: client peak RSS", value: results[0].1, unit: "MiB",
                reference: "pulling from SQLite", referenceValue: results[1].1, target: "-", targetRatio: 0,
                lowerIsBetter: true),
        ]
    }
}
