import Foundation
import NIOConcurrencyHelpers
import Synchronization
import TimelineClient
import TimelineCore
import TimelineLink
import TimelineTLS
import TimelineWire

/// Whole-process figures against real `timelined` processes over TLS on loopback, each next to the tool a user
/// would pick instead, measured in the same run (B1, B2 and B5 of docs/PERFORMANCE.md).
enum WholeBench {
    typealias Server = ReplicationBench.Server
    static let now = ReplicationBench.now
    static let percentile = ReplicationBench.percentile

    /// Samples shared with the tasks that record them.
    final class Samples<T: Sendable>: Sendable {
        let list = NIOLockedValueBox<[T]>([])
        let count = Atomic<Int>(0)
        func add(_ values: [T]) {
            list.withLockedValue { $0 += values }
            count.add(values.count, ordering: .relaxed)
        }
        var all: [T] { list.withLockedValue { $0 } }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    /// Writes back what earlier steps left dirty in the page cache, before a timed step, so that no step pays for
    /// the one before it. Loading B3's million edits leaves about a gigabyte to write back: the first pull after it
    /// took 14.0 s against the next two rounds' 11.5 and 11.2 s; written back first, 10.1 s against 10.1 and 10.3.
    static func settle() { sync() }

    /// Runs a command; returns (status, stdout, seconds, peak RSS in MiB when measured by /usr/bin/time).
    @discardableResult
    static func run(
        _ command: [String], stdin: String? = nil, user: String? = nil, check: Bool = true, capture: Bool = true,
        clearSignalMask: Bool = false
    ) throws -> (
        Int32, String, Double, Double
    ) {
        let rssFile = NSTemporaryDirectory() + "bench-rss-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: rssFile) }
        var argv = ["/usr/bin/time", "-f", "%M", "-o", rssFile] + command
        // Children inherit this process's blocked signals (Swift's threads block them); pgbench's -T timer
        // needs SIGALRM, so for it the mask is cleared just before exec (the others are timed without perl).
        if clearSignalMask {
            argv =
                ["/usr/bin/perl", "-MPOSIX", "-e", "sigprocmask(SIG_SETMASK, POSIX::SigSet->new); exec @ARGV or die"]
                + argv
        }
        if let user { argv = ["/usr/sbin/runuser", "-u", user, "--"] + argv }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        // A daemon (pg_ctl start) keeps an inherited pipe open forever: such commands run with capture: false.
        let out = Pipe()
        p.standardOutput = capture ? out : FileHandle.nullDevice
        p.standardError = capture ? FileHandle.standardError : FileHandle.nullDevice
        if let stdin { p.standardInput = FileHandle(forReadingAtPath: stdin) }
        let start = now()
        try p.run()
        let text = capture ? String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self) : ""
        p.waitUntilExit()
        let seconds = now() - start
        if check, p.terminationStatus != 0 {
            throw Failure("\(command.joined(separator: " ")) exited \(p.terminationStatus): \(text.prefix(500))")
        }
        let kib =
            Double((try? String(contentsOfFile: rssFile, encoding: .utf8))?.split(separator: "\n").last ?? "") ?? 0
        return (p.terminationStatus, text, seconds, kib / 1024)
    }

    /// Starts a command that leaves a daemon behind (pg_ctl start) and waits for it alone: posix_spawn with
    /// output to /dev/null and a clear signal mask, then waitpid (Foundation's Process does not return while
    /// the daemon holds what it inherited).
    static func spawnAndWait(_ argv: [String]) throws {
        var pid: pid_t = 0
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attr, &mask)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK))
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        guard posix_spawn(&pid, argv[0], &actions, &attr, &cargs, environ) == 0 else {
            throw Failure("could not start \(argv[0])")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        guard status == 0 else { throw Failure("\(argv.joined(separator: " ")) failed (\(status))") }
    }

    static func sampleEvents(_ conn: TimelineConnection) async throws -> [String] {
        let log = try await conn.expectOK(.log(EventFilter(limit: 100)))
        return log.data.compactMap { line in
            (try? JSON(parsing: String(line.dropFirst("* EVENT ".count))))?["id"]?.stringValue
        }
    }

    static func run(bin: String, work: String, quick: Bool) async throws -> [Figure] {
        var figures: [Figure] = []
        let timelined = bin + "/timelined"
        let server = try Server(binary: timelined, data: work + "/primary")
        defer { server.stop() }
        let sampler = try await server.connect(server.adminToken)
        let events = try await sampleEvents(sampler)
        await sampler.close()
        if benchSelected("B1") {
            figures += try await batchOverTLS(bin: bin, work: work, server: server, events: events, quick: quick)
        }
        if benchSelected("B2") {
            figures += try await concurrentProposals(work: work, server: server, events: events, quick: quick)
        }
        if benchSelected("B4") {
            figures += try await sizeScaling(bin: bin, work: work, quick: quick)
        }
        if benchSelected("B5") {
            // Its own connection: one opened at the start would have idled out during B4's long import.
            let admin = try await server.connect(server.adminToken)
            figures += try await watchFanOut(server: server, admin: admin, events: events, quick: quick)
            await admin.close()
        }
        return figures
    }

    // MARK: B1

    /// `timeline batch` of N annotations (durable on the server) next to the sqlite3 CLI inserting the same
    /// rows in one transaction. Full mode alternates the two five times, each of ours on a fresh server so that
    /// the rounds are alike, and pools each side's rounds: single rounds of this 2-second figure gave ratios from
    /// 0.26 to 0.42 within an hour on this machine (2026-11-29/30), the reference itself moving by a third, and
    /// from 0.37 to 0.59 within one run of three (2026-11-30, the reference from 89,706 to 146,313 rows/s). Five
    /// rounds add about 15 s to the run.
    static func batchOverTLS(bin: String, work: String, server: Server, events: [String], quick: Bool) async throws
        -> [Figure]
    {
        let n = quick ? 10_000 : 100_000
        let rounds = quick ? 1 : 5
        // The reference: the same rows as plain INSERTs in one transaction, WAL and synchronous=FULL as ours.
        var sql = """
            PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
            CREATE TABLE annotations (id TEXT PRIMARY KEY NOT NULL, event TEXT NOT NULL, author TEXT NOT NULL,
              text TEXT NOT NULL, tags TEXT NOT NULL, created INTEGER NOT NULL);
            BEGIN;

            """
        for i in 0..<n {
            let id = ULID.generate(at: Timestamp(milliseconds: Int64(1_700_000_000_000 + i)))
            sql += "INSERT INTO annotations VALUES('\(id)','\(events[i % events.count])','admin','bulk note \(i)',"
            sql += "'[\"b1\"]',\(1_700_000_000_000 + i));\n"
        }
        sql += "COMMIT;\n"
        let sqlFile = work + "/b1.sql"
        try sql.write(toFile: sqlFile, atomically: false, encoding: .utf8)

        var seconds = 0.0
        var refSeconds = 0.0
        var rss = 0.0
        var refRSS = 0.0
        var pull: (seconds: Double, rss: Double)?
        for round in 0..<rounds {
            // The first round uses the bench's server (whose sample events the lines name); later ones a fresh
            // server with the same sample, so that each starts from the same store.
            let fresh = round == 0 ? nil : try Server(binary: bin + "/timelined", data: work + "/b1-server-\(round)")
            defer { fresh?.stop() }
            let target = fresh ?? server
            let roundEvents: [String]
            if let fresh {
                let conn = try await fresh.connect(fresh.adminToken)
                roundEvents = try await sampleEvents(conn)
                await conn.close()
            } else {
                roundEvents = events
            }
            let jsonl = work + "/b1-\(round).jsonl"
            var text = ""
            text.reserveCapacity(n * 120)
            for i in 0..<n {
                text +=
                    #"{"op":"annotation.add","event":"\#(roundEvents[i % roundEvents.count])","text":"bulk note \#(i)","tags":["b1"]}"#
                text += "\n"
            }
            try text.write(toFile: jsonl, atomically: false, encoding: .utf8)
            let home = work + "/b1-home-\(round)"
            try run([
                bin + "/timeline", "init", "--home", home, "--server", "127.0.0.1:\(target.port)", "--token",
                target.adminToken, "--fingerprint", target.fingerprint.hex,
            ])
            // Durable on the server is the figure; the replica's refresh (what plain `timeline batch` does next)
            // is timed on its own, as the pull it is, in the first round.
            settle()
            let ours = try run([bin + "/timeline", "batch", jsonl, "--no-pull", "--home", home])
            seconds += ours.2
            rss = max(rss, ours.3)
            if pull == nil {
                let (_, _, pullSeconds, pullRSS) = try run([bin + "/timeline", "pull", "--home", home])
                pull = (pullSeconds, pullRSS)
            }
            let referencePath = work + "/b1-reference-\(round).sqlite"
            settle()
            let reference = try run(["sqlite3", referencePath], stdin: sqlFile)
            refSeconds += reference.2
            refRSS = max(refRSS, reference.3)
            FileHandle.standardError.write(
                Data(
                    String(
                        format: "B1 round %d: %.0f edits/s, sqlite3 %.0f rows/s, ratio %.2f\n", round + 1,
                        Double(n) / ours.2, Double(n) / reference.2, reference.2 / ours.2
                    ).utf8))
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: referencePath + suffix) }
        }
        let pooled = rounds == 1 ? "one transaction" : "one transaction, \(rounds) rounds"
        let reference = Double(n * rounds) / refSeconds
        return [
            Figure(
                name: "B1 timeline batch, \(n) annotations, TLS", value: Double(n * rounds) / seconds, unit: "edits/s",
                reference: "sqlite3 CLI, same rows, \(pooled)", referenceValue: reference, target: ">= 0.5x",
                targetRatio: 0.5),
            Figure(
                name: "B1 client peak RSS", value: rss, unit: "MiB", reference: "sqlite3 CLI peak RSS",
                referenceValue: refRSS, target: "-", targetRatio: 0),
            Figure(
                name: "B1 then timeline pull of the \(n) edits", value: Double(n) / (pull?.seconds ?? 1),
                unit: "edits/s", reference: "sqlite3 CLI, same rows", referenceValue: reference, target: "-",
                targetRatio: 0),
            Figure(
                name: "B1 pull's peak RSS", value: pull?.rss ?? 0, unit: "MiB", reference: "sqlite3 CLI peak RSS",
                referenceValue: refRSS, target: "-", targetRatio: 0),
        ]
    }

    // MARK: B2

    /// 64 connections each sending single PROPOSEs and waiting for the durable OK, next to pgbench with 64
    /// clients doing one single-row INSERT per transaction on a private PostgreSQL with synchronous_commit=on.
    /// Full mode alternates the two three times and pools each side's rounds: single 20-second runs of either
    /// side varied by up to a quarter from one run to the next on this machine (2026-11-29).
    static func concurrentProposals(work: String, server: Server, events: [String], quick: Bool) async throws
        -> [Figure]
    {
        let clients = Int(ProcessInfo.processInfo.environment["BENCH_CLIENTS"] ?? "") ?? 64
        let duration = quick ? 4.0 : 20.0
        let rounds = quick ? 1 : 3
        var all: [Double] = []
        var elapsed = 0.0
        let pg = try await pgbench(clients: clients, seconds: Int(duration), rounds: rounds) {
            let round = try await ProposeLoad.run(
                port: server.port, fingerprint: server.fingerprint, token: server.adminToken, connections: clients,
                seconds: duration
            ) { c, i in
                #"{"op":"annotation.add","event":"\#(events[(c + i) % events.count])","text":"b2 \#(c) \#(i)"}"#
            }
            all += round.latencies
            elapsed += round.elapsed
        }
        let ours = Double(all.count) / elapsed
        let pooled = rounds == 1 ? "sync commit" : "sync, \(rounds) rounds"
        return [
            Figure(
                name: "B2 64 connections PROPOSE, durable", value: ours, unit: "edits/s",
                reference: "pgbench 64 clients over TCP, 1-row INSERT, \(pooled)", referenceValue: pg.tcp.tps,
                target: ">= 1.0x", targetRatio: 1.0),
            Figure(
                name: "B2 latency p50", value: percentile(all, 0.5) * 1000, unit: "ms",
                reference: "pgbench p50", referenceValue: percentile(pg.tcp.latencies, 0.5), target: "-",
                targetRatio: 0),
            Figure(
                name: "B2 latency p99", value: percentile(all, 0.99) * 1000, unit: "ms",
                reference: "pgbench p99", referenceValue: percentile(pg.tcp.latencies, 0.99), target: "<= 1.0x",
                targetRatio: 1.0, lowerIsBetter: true),
            // Context: the same PostgreSQL through its Unix socket, which skips the TCP stack that both sides of
            // the figures above pay (and TLS, which only ours pays).
            Figure(
                name: "B2 context: ours vs pgbench over Unix socket", value: ours, unit: "edits/s",
                reference: "pgbench 64 clients, Unix socket, 1 round", referenceValue: pg.socket.tps, target: "-",
                targetRatio: 0),
            Figure(
                name: "B2 context: p99 vs pgbench over Unix socket", value: percentile(all, 0.99) * 1000,
                unit: "ms", reference: "pgbench p99, Unix socket",
                referenceValue: percentile(pg.socket.latencies, 0.99),
                target: "-", targetRatio: 0, lowerIsBetter: true),
        ]
    }

    /// What pgbench measured through one transport: the mean tps of its rounds and every transaction's latency
    /// in ms, from its per-transaction logs.
    struct PgbenchResult {
        var tps: Double
        var latencies: [Double]
        /// CPU seconds over the TCP rounds: PostgreSQL's processes, and pgbench's.
        var serverCPU = 0.0
        var clientCPU = 0.0
    }

    /// pgbench on a private PostgreSQL of its own (`PrivatePostgres.pgbench`).
    static func pgbench(
        clients: Int, seconds: Int, rounds: Int, before: () async throws -> Void
    ) async throws -> (tcp: PgbenchResult, socket: PgbenchResult) {
        let pg = try PrivatePostgres()
        defer { pg.stop() }
        return try await pg.pgbench(clients: clients, seconds: seconds, rounds: rounds, before: before)
    }
}
