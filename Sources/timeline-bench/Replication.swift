import Foundation
import NIOConcurrencyHelpers
import TimelineClient
import TimelineCore
import TimelineLink
import TimelineTLS
import TimelineWire

/// Whole-process figures on a large log: real `timelined` processes on loopback over TLS.
/// B6 lag: how long after the primary's OK an edit reaches an office replica's watchers, under a steady load.
/// B3: a fresh `timeline` client pulling the whole log into its replica (time, peak RSS), next to openssl moving
/// the same bytes over TLS plus sqlite3 inserting the same rows. B6 catch-up: an empty office replica against B3.
enum ReplicationBench {
    final class Server: @unchecked Sendable {
        let process = Process()
        let port: Int
        let fingerprint: Fingerprint
        let data: String

        init(binary: String, data: String, extra: [String] = []) throws {
            self.data = data
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = ["serve", "--data", data, "--listen", "127.0.0.1:0", "--log-level", "error"] + extra
            let out = Pipe()
            process.standardOutput = out
            process.standardError = FileHandle.nullDevice
            try process.run()
            var text = ""
            let deadline = Date().addingTimeInterval(60)
            while !text.contains("listening on ") || !text.hasSuffix("\n") {
                guard Date() < deadline, process.isRunning else {
                    throw TimelineError(.storeFailed, "timelined did not start: \(text)")
                }
                let chunk = out.fileHandleForReading.availableData
                if chunk.isEmpty { Thread.sleep(forTimeInterval: 0.01) }
                text += String(decoding: chunk, as: UTF8.self)
            }
            let lines = text.split(separator: "\n")
            port = Int(lines.first { $0.hasPrefix("listening on ") }!.split(separator: ":").last!)!
            fingerprint = Fingerprint(
                hex: String(lines.first { $0.hasPrefix("certificate SHA-256 fingerprint ") }!.dropFirst(32)))!
        }

        var adminToken: String {
            (try? String(contentsOfFile: data + "/admin.token", encoding: .utf8))?.trimmingCharacters(
                in: .whitespacesAndNewlines) ?? ""
        }

        func token(_ binary: String, name: String, role: String) throws -> String {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: binary)
            p.arguments = ["token", "add", name, "--role", role, "--data", data]
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            let token = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            return token.trimmingCharacters(in: .whitespacesAndNewlines)
        }

        func connect(_ token: String) async throws -> TimelineConnection {
            let c = try await TimelineConnection.connect(
                host: "127.0.0.1", port: port, verification: .fingerprint(fingerprint))
            try await c.authenticate(token: token)
            return c
        }

        func stop() {
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
        }
    }

    /// Times by version, shared with the tasks that record them.
    final class Times: Sendable {
        private let table = NIOLockedValueBox<[Int64: Double]>([:])
        func set(_ version: Int64, _ time: Double) { table.withLockedValue { $0[version] = time } }
        func get(_ version: Int64) -> Double? { table.withLockedValue { $0[version] } }
        var all: [Int64: Double] { table.withLockedValue { $0 } }
    }

    static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

    static func percentile(_ values: [Double], _ p: Double) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        return sorted[min(sorted.count - 1, Int(Double(sorted.count - 1) * p + 0.5))]
    }

    static func version(of server: Server, _ conn: TimelineConnection) async throws -> Int64 {
        let caps = try await conn.expectOK(.caps)
        return (try? JSON(parsing: String(caps.data.first?.dropFirst("* CAPS ".count) ?? "")))?["version"]?.intValue
            ?? 0
    }

    static func run(binary: String, work: String, quick: Bool) async throws -> [Figure] {
        let rate = quick ? 200 : 1_000
        let seconds = quick ? 5.0 : 20.0
        let catchUpEdits = quick ? 20_000 : 1_000_000
        let event = "019ECZQW007TKPA8XK03963NRD"
        var figures: [Figure] = []

        let primary = try Server(binary: binary, data: work + "/primary")
        defer { primary.stop() }
        let link = try primary.token(binary, name: "office-link", role: "replicator")
        let replicaArgs = { (name: String) -> [String] in
            [
                "--replicate-from", "127.0.0.1:\(primary.port)", "--upstream-token", link, "--upstream-fingerprint",
                primary.fingerprint.hex, "--office", name,
            ]
        }
        let office = try Server(binary: binary, data: work + "/office", extra: replicaArgs("office"))
        defer { office.stop() }
        let writer = try await primary.connect(primary.adminToken)
        // A connection answers its requests in order, one durable commit after another; several share the load
        // so that the rate is not bound by one connection's commit latency.
        var writers: [TimelineConnection] = [writer]
        for _ in 1..<8 { writers.append(try await primary.connect(primary.adminToken)) }
        let watcherConn = try await office.connect(office.adminToken)
        while try await version(of: office, watcherConn) < 29 { try await Task.sleep(nanoseconds: 20_000_000) }

        // R1: replica lag under a steady load of single PROPOSEs.
        let arrivals = Times()
        let watch = Task {
            try await watcherConn.send(.watch(since: 29)) { line in
                let t = now()
                guard let json = try? JSON(parsing: String(line.dropFirst(7))), let v = json["version"]?.intValue else {
                    return
                }
                arrivals.set(v, t)
            }
        }
        let acknowledged = Times()
        let start = now()
        let total = Int(Double(rate) * seconds)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<total {
                let due = start + Double(i) / Double(rate)
                let wait = due - now()
                if wait > 0 { try await Task.sleep(nanoseconds: UInt64(wait * 1e9)) }
                let conn = writers[i % writers.count]
                group.addTask {
                    let c = try await conn.send(
                        .propose(edit: #"{"op":"annotation.add","event":"\#(event)","text":"lag probe \#(i)"}"#))
                    let t = now()
                    if let v = c.json?["version"]?.intValue { acknowledged.set(v, t) }
                }
            }
            try await group.waitForAll()
        }
        let lastVersion = acknowledged.all.keys.max() ?? 0
        let deadline = now() + 30
        while arrivals.get(lastVersion) == nil, now() < deadline { try await Task.sleep(nanoseconds: 10_000_000) }
        try await watcherConn.sendRaw("DONE")
        _ = try? await watch.value
        let arrived = arrivals.all
        let acks = acknowledged.all
        let lags = acks.compactMap { v, t in arrived[v].map { max(0, $0 - t) * 1000 } }
        let achieved = Double(acks.count) / max(0.001, now() - start)
        figures.append(
            Figure(
                name: "B6 replica lag p50 at \(rate) edits/s", value: percentile(lags, 0.5), unit: "ms",
                reference: "primary OK to office watcher, \(lags.count) edits, \(Int(achieved))/s achieved",
                referenceValue: 0, target: "-", targetRatio: 0))
        figures.append(
            Figure(
                name: "B6 replica lag p99 at \(rate) edits/s", value: percentile(lags, 0.99), unit: "ms",
                reference: "the target, 100 ms", referenceValue: 100, target: "<= 1.0x", targetRatio: 1.0,
                lowerIsBetter: true))

        // The office has served R1. Left running, it replicates R2's million edits beside the load, and can still
        // be catching up when B3's first pull starts: a process the references never share the machine with.
        await watcherConn.close()
        office.stop()

        // R2: load the primary, then time an empty replica's catch-up against a plain client streaming the log.
        let batch = 10_000
        var loaded = 0
        while loaded < catchUpEdits {
            let n = min(batch, catchUpEdits - loaded)
            let lines = (0..<n).map {
                #"{"op":"annotation.add","event":"\#(event)","text":"catch-up \#(loaded + $0)"}"#
            }
            try await writer.expectOK(.batch(count: n), lines: lines)
            loaded += n
        }
        let head = try await version(of: primary, writer)
        // The log as a plain client receives it: the bytes for reference (a), the rows for reference (b).
        let plain = try await primary.connect(primary.adminToken)
        let streamFile = work + "/stream.txt"
        let sqlFile = work + "/rows.sql"
        _ = FileManager.default.createFile(atPath: streamFile, contents: nil)  // opening it next reports a failure
        _ = FileManager.default.createFile(atPath: sqlFile, contents: nil)  // opening it next reports a failure
        let stream = try FileHandle(forWritingTo: URL(fileURLWithPath: streamFile))
        let sql = try FileHandle(forWritingTo: URL(fileURLWithPath: sqlFile))
        sql.write(
            Data(
                """
                PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
                CREATE TABLE edits (version INTEGER PRIMARY KEY, body TEXT NOT NULL);
                BEGIN;

                """.utf8))
        var since: Int64 = 0
        var bytes = 0
        while since < head {
            let page = try await plain.expectOK(.pull(since: since, limit: 10000))
            var text = ""
            var rows = ""
            for line in page.data {
                text += line + "\n"
                let body = line.dropFirst("* EDIT ".count)
                let version = (try? JSON(parsing: String(body)))?["version"]?.intValue ?? 0
                rows += "INSERT INTO edits VALUES(\(version),'\(body.replacingOccurrences(of: "'", with: "''"))');\n"
            }
            bytes += text.utf8.count
            stream.write(Data(text.utf8))
            sql.write(Data(rows.utf8))
            since = page.json?["last"]?.intValue ?? head
        }
        sql.write(Data("COMMIT;\n".utf8))
        try stream.close()
        try sql.close()
        await plain.close()

        // B3: a fresh client pulling the whole log into its replica (`timeline init` pulls it), next to (a) and
        // (b) below. Full mode alternates them three times and pools each side's rounds, as B1 and B2 do: the
        // machine's speed moved single rounds by up to a fifth.
        let timeline = URL(fileURLWithPath: binary).deletingLastPathComponent().appendingPathComponent("timeline").path
        let rounds = quick ? 1 : 3
        var pullSeconds = 0.0
        var pullRSS = 0.0
        var tlsSeconds = 0.0
        var sqliteSeconds = 0.0
        for round in 0..<rounds {
            let home = work + "/b3-home-\(round)"
            WholeBench.settle()
            let pulled = try WholeBench.run([
                timeline, "init", "--home", home, "--server", "127.0.0.1:\(primary.port)", "--token",
                primary.adminToken, "--fingerprint", primary.fingerprint.hex,
            ])
            pullSeconds += pulled.2
            pullRSS = max(pullRSS, pulled.3)
            try? FileManager.default.removeItem(atPath: home)
            // (a) openssl moving the same bytes over TLS on loopback: s_server serves the file (-WWW) and closes,
            // so neither side waits on the other's end of input; `timeout` bounds a reference that goes wrong.
            let port = 30_000 + Int.random(in: 0..<20_000)
            let streamURL = URL(fileURLWithPath: streamFile)
            let sServer = Process()
            sServer.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
            sServer.currentDirectoryURL = streamURL.deletingLastPathComponent()
            sServer.arguments = [
                "s_server", "-quiet", "-WWW", "-naccept", "1", "-accept", "\(port)", "-cert",
                primary.data + "/tls/server.crt", "-key", primary.data + "/tls/server.key",
            ]
            sServer.standardInput = FileHandle.nullDevice
            sServer.standardOutput = FileHandle.nullDevice
            sServer.standardError = FileHandle.nullDevice
            try sServer.run()
            defer { if sServer.isRunning { sServer.terminate() } }
            try await Task.sleep(nanoseconds: 500_000_000)
            WholeBench.settle()
            let request = "GET /\(streamURL.lastPathComponent) HTTP/1.0\\r\\n\\r\\n"
            let (_, moved, tls, _) = try WholeBench.run([
                "sh", "-c",
                "printf '\(request)' | timeout 300 openssl s_client -quiet -connect 127.0.0.1:\(port) 2>/dev/null | wc -c",
            ])
            if sServer.isRunning { sServer.terminate() }
            sServer.waitUntilExit()
            // The file and a 45-byte HTTP/1.0 header.
            guard let count = Int(moved.trimmingCharacters(in: .whitespacesAndNewlines)), count >= bytes else {
                throw TimelineError(.storeFailed, "openssl moved \(moved) bytes of \(bytes)")
            }
            tlsSeconds += tls
            // (b) sqlite3 inserting the same rows in one transaction.
            let referencePath = work + "/b3-reference.sqlite"
            WholeBench.settle()
            let (_, _, inserted, _) = try WholeBench.run(["sqlite3", referencePath], stdin: sqlFile)
            sqliteSeconds += inserted
            for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: referencePath + suffix) }
            FileHandle.standardError.write(
                Data(
                    String(
                        format: "B3 round %d: pull %.1f s, openssl %.1f s + sqlite3 %.1f s, ratio %.2f\n", round + 1,
                        pulled.2, tls, inserted, pulled.2 / (tls + inserted)
                    ).utf8))
        }
        try? FileManager.default.removeItem(atPath: sqlFile)
        try? FileManager.default.removeItem(atPath: streamFile)
        pullSeconds /= Double(rounds)
        tlsSeconds /= Double(rounds)
        sqliteSeconds /= Double(rounds)
        figures.append(
            Figure(
                name: "B3 fresh client pull, \(head) edits\(rounds == 1 ? "" : ", mean of \(rounds)")",
                value: pullSeconds,
                unit: "s",
                reference:
                    "openssl s_client \(bytes >> 20) MiB (\(String(format: "%.1f", tlsSeconds)) s) + sqlite3 rows (\(String(format: "%.1f", sqliteSeconds)) s)",
                referenceValue: tlsSeconds + sqliteSeconds, target: "<= 1.5x", targetRatio: 1.5, lowerIsBetter: true))
        figures.append(
            Figure(
                name: "B3 client peak RSS", value: pullRSS, unit: "MiB", reference: "the target, 100 MB",
                referenceValue: 100, target: "<= 1.0x", targetRatio: 1.0, lowerIsBetter: true))

        // B6: an empty office replica catching up the same log, next to B3's client pull.
        WholeBench.settle()
        let catchStart = now()
        let fresh = try Server(binary: binary, data: work + "/fresh-office", extra: replicaArgs("fresh"))
        defer { fresh.stop() }
        let probe = try await fresh.connect(fresh.adminToken)
        while try await version(of: fresh, probe) < head { try await Task.sleep(nanoseconds: 50_000_000) }
        let catchSeconds = now() - catchStart
        figures.append(
            Figure(
                name: "B6 empty replica catch-up, \(head) edits", value: catchSeconds, unit: "s",
                reference: "B3's plain client pull of the same edits", referenceValue: pullSeconds,
                target: "<= 1.2x", targetRatio: 1.2, lowerIsBetter: true))
        await probe.close()
        for conn in writers { await conn.close() }
        return figures
    }
}
