// In-process store benchmarks, each next to its reference in the same run. Scripts/bench.sh builds this in
// release mode and prints the table; nothing here asserts a time.
import Foundation
import GRDBSQLite
import TimelineCore
import TimelineStore

struct Figure {
    var name: String
    var value: Double
    var unit: String
    var reference: String
    var referenceValue: Double
    var target: String
    var targetRatio: Double

    /// Times and latencies: the figure passes when its ratio to the reference is at most the target.
    var lowerIsBetter = false

    var ratio: Double { referenceValue > 0 ? value / referenceValue : 0 }
    /// nil for figures given for context, with no target.
    var pass: Bool? {
        guard targetRatio > 0 else { return nil }
        return lowerIsBetter ? ratio <= targetRatio : ratio >= targetRatio
    }
    var result: String { pass.map { $0 ? "pass" : "MISS" } ?? "-" }

    var json: String {
        """
        {"figure":"\(name)","value":\(String(format: "%.1f", value)),"unit":"\(unit)",\
        "reference":"\(reference)","reference_value":\(String(format: "%.1f", referenceValue)),\
        "ratio":\(String(format: "%.3f", ratio)),"target":"\(target)","pass":\(pass.map { "\($0)" } ?? "null")}
        """
    }
}

func seconds(_ body: () async throws -> Void) async rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try await body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

func secondsSync(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

func peakRSSMiB() -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let kb = line.split(separator: " ").dropFirst().first.flatMap { Double($0) } ?? 0
        return kb / 1024
    }
    return 0
}

func tempPath(_ name: String) -> String {
    let dir = ProcessInfo.processInfo.environment["BENCH_DIR"] ?? NSTemporaryDirectory()
    let path = (dir as NSString).appendingPathComponent("timeline-bench-\(getpid())-\(name).sqlite")
    for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
    return path
}

func removeStore(_ path: String) {
    for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
}

let now = Timestamp(milliseconds: 1_700_000_000_000)

func annotation(_ event: EventID, _ n: Int) -> Proposal {
    Proposal(
        event: event,
        change: .addAnnotation(
            AnnotationID(ULID.generate(at: WallClock.now())), text: "Benchmark annotation number \(n) on this event.",
            tags: ["bench"]
        ), base: 1, author: "bench", time: now)
}

func newStore(_ name: String, maxEditsPerCommit: Int = 20_000) async throws -> (SQLiteStore, [EventID], String) {
    let path = tempPath(name)
    let store = try SQLiteStore(path: path, options: .init(maxEditsPerCommit: maxEditsPerCommit))
    _ = try await Importer.loadSample(into: store)
    let ids = try await store.events(matching: EventFilter()).map(\.event.id)
    return (store, ids, path)
}

/// `writers` tasks each appending single-edit batches until `total` edits are in; edits per second.
func concurrentAppends(store: SQLiteStore, ids: [EventID], writers: Int, total: Int) async throws -> Double {
    let perWriter = total / writers
    let elapsed = try await seconds {
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<writers {
                group.addTask {
                    for n in 0..<perWriter { _ = try await store.append([annotation(ids[(w + n) % ids.count], n)]) }
                }
            }
            try await group.waitForAll()
        }
    }
    return Double(perWriter * writers) / elapsed
}

/// The reference: the same edit rows inserted with SQLite's C API in one transaction, same pragmas.
func rawSQLiteInsert(rows: [(Int64, String, Int64, String, String, [UInt8])]) throws -> Double {
    let path = tempPath("raw")
    defer { removeStore(path) }
    var db: OpaquePointer?
    guard sqlite3_open(path, &db) == SQLITE_OK else { throw TimelineError(.storeFailed, "open failed") }
    defer { sqlite3_close(db) }
    func exec(_ sql: String) throws {
        guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else {
            throw TimelineError(.storeFailed, String(cString: sqlite3_errmsg(db)))
        }
    }
    try exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL")
    try exec(
        "CREATE TABLE edits(version INTEGER PRIMARY KEY, event TEXT, revision INTEGER, op TEXT, body TEXT, hash BLOB)")
    var stmt: OpaquePointer?
    sqlite3_prepare_v2(db, "INSERT INTO edits VALUES (?, ?, ?, ?, ?, ?)", -1, &stmt, nil)
    defer { sqlite3_finalize(stmt) }
    let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
    let elapsed = try secondsSync {
        try exec("BEGIN")
        for row in rows {
            sqlite3_bind_int64(stmt, 1, row.0)
            sqlite3_bind_text(stmt, 2, row.1, -1, transient)
            sqlite3_bind_int64(stmt, 3, row.2)
            sqlite3_bind_text(stmt, 4, row.3, -1, transient)
            sqlite3_bind_text(stmt, 5, row.4, -1, transient)
            row.5.withUnsafeBytes { _ = sqlite3_bind_blob(stmt, 6, $0.baseAddress, 32, transient) }
            guard sqlite3_step(stmt) == SQLITE_DONE else { throw TimelineError(.storeFailed, "insert failed") }
            sqlite3_reset(stmt)
        }
        try exec("COMMIT")
    }
    return Double(rows.count) / elapsed
}

/// How fast this disk commits: single-row transactions with synchronous=FULL, one writer. Group commit can only
/// beat one-fsync-per-edit by as much as an fsync costs next to the CPU work of an edit.
func rawSQLiteSingleRowCommits(count: Int) throws -> Double {
    let path = tempPath("fsync")
    defer { removeStore(path) }
    var db: OpaquePointer?
    guard sqlite3_open(path, &db) == SQLITE_OK else { throw TimelineError(.storeFailed, "open failed") }
    defer { sqlite3_close(db) }
    sqlite3_exec(
        db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE t(v INTEGER PRIMARY KEY, b TEXT)", nil, nil,
        nil)
    let elapsed = secondsSync {
        for i in 0..<count {
            sqlite3_exec(db, "INSERT INTO t VALUES (\(i), 'row \(i) of the fsync probe')", nil, nil, nil)
        }
    }
    return Double(count) / elapsed
}

/// A second reference: SQLite's C API doing exactly the SQL the store's writer does for each annotation add (its
/// log row, with the log's indexes and triggers; an added annotation has no row of its own, Schema v6) with every
/// body precomputed. The gap to this is the cost of our own code; the gap from this to the plain insert is the
/// schema's.
func rawSchemaInsert(storePath: String, rows: [(Int64, String, Int64, String, String, [UInt8], String)]) throws
    -> Double
{
    var db: OpaquePointer?
    guard sqlite3_open(storePath, &db) == SQLITE_OK else { throw TimelineError(.storeFailed, "open failed") }
    defer { sqlite3_close(db) }
    func exec(_ sql: String) throws {
        guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else {
            throw TimelineError(.storeFailed, String(cString: sqlite3_errmsg(db)))
        }
    }
    try exec("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA cache_size=-65536")
    var edit: OpaquePointer?
    guard
        sqlite3_prepare_v2(
            db,
            "INSERT OR FAIL INTO edits(version, event, revision, op, body, hash, annotation) "
                + "VALUES (?, ?, ?, ?, ?, ?, ?)", -1, &edit, nil) == SQLITE_OK
    else { throw TimelineError(.storeFailed, String(cString: sqlite3_errmsg(db))) }
    defer { sqlite3_finalize(edit) }
    let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
    let elapsed = try secondsSync {
        try exec("BEGIN IMMEDIATE")
        for row in rows {
            sqlite3_bind_int64(edit, 1, row.0)
            sqlite3_bind_text(edit, 2, row.1, -1, transient)
            sqlite3_bind_int64(edit, 3, row.2)
            sqlite3_bind_text(edit, 4, row.3, -1, transient)
            sqlite3_bind_text(edit, 5, row.4, -1, transient)
            row.5.withUnsafeBytes { _ = sqlite3_bind_blob(edit, 6, $0.baseAddress, 32, transient) }
            sqlite3_bind_text(edit, 7, row.6, -1, transient)
            guard sqlite3_step(edit) == SQLITE_DONE else {
                throw TimelineError(.storeFailed, String(cString: sqlite3_errmsg(db)))
            }
            sqlite3_reset(edit)
        }
        try exec("COMMIT")
    }
    return Double(rows.count) / elapsed
}

// MARK: - Main

let args = CommandLine.arguments
let quick = args.contains("--quick")
var jsonPath: String?
if let i = args.firstIndex(of: "--json"), i + 1 < args.count { jsonPath = args[i + 1] }

let writers = 64
let groupTotal = quick ? 6_400 : 64_000
let singleTotal = quick ? 640 : 3_200
let batchSize = quick ? 20_000 : 100_000

var figures: [Figure] = []
/// BENCH_ONLY=B2,B4 runs only those figures, in the harness's order (S1–S3 here, B1, B2, B4 and B5 in `--whole`).
let only = ProcessInfo.processInfo.environment["BENCH_ONLY"].map { Set($0.split(separator: ",").map(String.init)) }
func benchSelected(_ figure: String) -> Bool { only?.contains(figure) ?? true }
// Whole-process replication figures: Scripts/bench.sh passes the timelined binary and a work folder.
if let i = args.firstIndex(of: "--replication"), i + 2 < args.count {
    do {
        figures = try await ReplicationBench.run(binary: args[i + 1], work: args[i + 2], quick: quick)
    } catch {
        FileHandle.standardError.write(Data("replication benchmark failed: \(error)\n".utf8))
        exit(1)
    }
}

// Whole-process figures against the tools a user would pick instead: Scripts/bench.sh passes the folder of the
// built executables and a work folder.
if let i = args.firstIndex(of: "--whole"), i + 2 < args.count {
    do {
        figures = try await WholeBench.run(bin: args[i + 1], work: args[i + 2], quick: quick)
    } catch {
        FileHandle.standardError.write(Data("whole-process benchmark failed: \(error)\n".utf8))
        exit(1)
    }
}

// The PostgreSQL store's figures, on a private PostgreSQL: Scripts/bench.sh passes the folder of the built executables
// and a work folder.
if let i = args.firstIndex(of: "--postgres"), i + 2 < args.count {
    do {
        figures = try await PostgresBench.run(bin: args[i + 1], work: args[i + 2], quick: quick)
    } catch {
        FileHandle.standardError.write(Data("PostgreSQL benchmark failed: \(error)\n".utf8))
        exit(1)
    }
}

// The HTML picture of a large timeline in headless Chromium: Scripts/bench.sh passes a work folder.
if let i = args.firstIndex(of: "--picture"), i + 1 < args.count {
    do {
        figures = try PictureBench.run(work: args[i + 1], quick: quick)
    } catch {
        FileHandle.standardError.write(Data("picture benchmark failed: \(error)\n".utf8))
        exit(1)
    }
}

if !args.contains("--replication") && !args.contains("--whole") && !args.contains("--picture")
    && !args.contains("--postgres")
{
    do {
        if benchSelected("S1") {
            // S1: group commit against one fsync per edit, both with 64 writers.
            let (group, ids, gp) = try await newStore("group")
            let groupRate = try await concurrentAppends(store: group, ids: ids, writers: writers, total: groupTotal)
            let (single, ids2, sp) = try await newStore("single", maxEditsPerCommit: 1)
            let singleRate = try await concurrentAppends(store: single, ids: ids2, writers: writers, total: singleTotal)
            figures.append(
                Figure(
                    name: "S1 appends/s, 64 writers, group commit", value: groupRate, unit: "edits/s",
                    reference: "same store, one fsync per edit", referenceValue: singleRate, target: ">= 10x",
                    targetRatio: 10))
            let fsyncRate = try rawSQLiteSingleRowCommits(count: quick ? 300 : 2_000)
            figures.append(
                Figure(
                    name: "S1b one fsync per edit (our store)", value: singleRate, unit: "edits/s",
                    reference: "raw SQLite, one row per transaction (fsync floor)", referenceValue: fsyncRate,
                    target: "-",
                    targetRatio: 0))
            let verify = try await group.verify()
            guard verify.ok else { throw TimelineError(.corrupt, "group-commit store failed verify: \(verify)") }
            removeStore(gp)
            removeStore(sp)
        }

        if benchSelected("S2") {
            // S2: one batch of annotations, next to raw SQLite inserting the same edit rows in one transaction.
            let (batchStore, ids3, bp) = try await newStore("batch")
            let proposals = (0..<batchSize).map { annotation(ids3[$0 % ids3.count], $0) }
            var edits: [Edit] = []
            let batchSeconds = try await seconds { edits = try await batchStore.append(proposals) }
            let batchRate = Double(batchSize) / batchSeconds
            let rows = edits.map { e in
                (
                    e.version, e.event?.description ?? "", e.revision, e.operation.rawValue,
                    String(
                        decoding: EditCodec.canonicalBody(
                            version: e.version, revision: e.revision, proposal: e.proposal),
                        as: UTF8.self),
                    e.hash.bytes, e.change.annotationID?.description ?? ""
                )
            }
            edits = []
            let rawRate = try rawSQLiteInsert(rows: rows.map { r in (r.0, r.1, r.2, r.3, r.4, r.5) })
            // The floor: a fresh store with the sample, then the same rows through the same schema by the C API.
            let (floorStore, _, fp) = try await newStore("floor")
            _ = floorStore
            let floorRate = try rawSchemaInsert(storePath: fp, rows: rows)
            removeStore(fp)
            figures.append(
                Figure(
                    name: "S2b same batch vs the schema's own floor", value: batchRate, unit: "edits/s",
                    reference: "C API, same SQL and schema, bodies precomputed", referenceValue: floorRate, target: "-",
                    targetRatio: 0))
            figures.append(
                Figure(
                    name: "S2 one \(batchSize)-edit batch", value: batchRate, unit: "edits/s",
                    reference: "raw SQLite C API, same rows, one transaction", referenceValue: rawRate,
                    target: ">= 0.5x",
                    targetRatio: 0.5))
            removeStore(bp)
        }
        if benchSelected("S3") {
            // S3: a replica's writer storing pulled pages (what bounds B3 and B6's catch-up), in-process: a source
            // store's log read as the wire carries it, decoded and linked beforehand, then stored page by page into
            // a fresh store. Next to the raw C API inserting the same log rows (as S2).
            let n = quick ? 20_000 : 200_000
            let (source, ids, sourcePath) = try await newStore("s3-source")
            for start in stride(from: 0, to: n, by: 10_000) {
                _ = try await source.append((start..<min(n, start + 10_000)).map { annotation(ids[0], $0) })
            }
            var pages: [LinkedEdits] = []
            var rows: [(Int64, String, Int64, String, String, [UInt8])] = []
            var since: Int64 = 0
            while true {
                let wire = try await source.wireEdits(after: since, limit: 5_000)
                guard let last = wire.last else { break }
                var reading = LinkedEdits.Reading(capacity: wire.count)
                for edit in wire { try reading.append(Substring(String(decoding: edit.bytes, as: UTF8.self))) }
                pages.append(try LinkedEdits(reading))
                since = last.version
            }
            for edit in try await source.edits(after: 0, limit: n + 100) {
                let body = EditCodec.canonicalBody(
                    version: edit.version, revision: edit.revision, proposal: edit.proposal)
                rows.append(
                    (
                        edit.version, edit.event?.description ?? "", edit.revision, edit.operation.rawValue,
                        String(decoding: body, as: UTF8.self), edit.hash.bytes
                    ))
            }
            removeStore(sourcePath)
            // The replica as `timeline` opens it (TimelineClient).
            let replicaPath = tempPath("s3-replica")
            let replica = try SQLiteStore(path: replicaPath, dataset: source.dataset, options: .replica)
            let storing = try await seconds { for page in pages { try await replica.appendVerified(page) } }
            let rawRate = try rawSQLiteInsert(rows: rows)
            removeStore(replicaPath)
            figures.append(
                Figure(
                    name: "S3 replica stores \(rows.count) pulled edits, 5,000 a page",
                    value: Double(rows.count) / storing,
                    unit: "edits/s", reference: "raw SQLite C API, same rows, one transaction", referenceValue: rawRate,
                    target: "-", targetRatio: 0))
        }
    } catch {
        FileHandle.standardError.write(Data("benchmark failed: \(error)\n".utf8))
        exit(1)
    }
}

func pad(_ s: String, _ width: Int, right: Bool = false) -> String {
    let padding = String(repeating: " ", count: max(0, width - s.count))
    return right ? padding + s : s + padding
}
print(
    pad("figure", 46) + pad("value", 16, right: true) + "  " + pad("reference", 56) + pad("ref. value", 10, right: true)
        + pad("ratio", 8, right: true) + "  " + pad("target", 8) + "result")
for f in figures {
    print(
        pad(f.name, 46) + pad(String(format: f.value < 100 ? "%.2f" : "%.0f", f.value) + " " + f.unit, 16, right: true)
            + "  "
            + pad(f.reference, 56)
            + pad(String(format: f.referenceValue < 100 ? "%.2f" : "%.0f", f.referenceValue), 10, right: true)
            + pad(String(format: "%.2f", f.ratio), 8, right: true) + "  " + pad(f.target, 8) + f.result)
}
print(String(format: "peak RSS of the benchmark process: %.1f MiB", peakRSSMiB()))
if let jsonPath {
    let body = "[\n" + figures.map(\.json).joined(separator: ",\n") + "\n]\n"
    try body.write(toFile: jsonPath, atomically: true, encoding: .utf8)
}
