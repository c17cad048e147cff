// In-process micro-benchmarks of the per-edit hot paths, with package-benchmark (ordo-one/benchmark): time and
// malloc counts per operation, each next to the reference a user would reach for (Foundation's JSON) in the same
// run. `Scripts/bench.sh` runs them and prints each pair's ratio; `swift package benchmark` runs them alone.
//

import Benchmark
import Foundation
import TimelineCore
import TimelineStore

let now = Timestamp(milliseconds: 1_700_000_000_000)
let event = EventID(ULID.generate(at: now))

func proposal(_ n: Int) -> Proposal {
    Proposal(
        event: event,
        change: .addAnnotation(
            AnnotationID(ULID.generate(at: now)), text: "Benchmark annotation number \(n) on this event.",
            tags: ["bench"]),
        base: 1, author: "bench", time: now)
}

/// PULL lines of `annotation.add` edits, chained as a server sends them.
func pullLines(_ count: Int) -> [String] {
    var head = Genesis.hash(dataset: "bench")
    return (0..<count).map { i in
        let (edit, _) = Edit.chained(after: head, version: Int64(i + 1), revision: Int64(i + 1), proposal: proposal(i))
        head = edit.hash
        return EditCodec.json(edit).canonicalString
    }
}

/// BATCH and PROPOSE lines as a client sends them.
func proposalLines(_ count: Int) -> [String] {
    (0..<count).map { i in
        #"{"op":"annotation.add","event":"\#(event)","base":1,"text":"Benchmark annotation number \#(i) on this event.","tags":["bench"]}"#
    }
}

// Rusage's CPU time ticks in 10 ms steps, too coarse for these; perf's instruction counter is not available in
// this project's virtual machines.
let metrics: [BenchmarkMetric] = [.wallClock, .mallocCountTotal, .peakMemoryResident]
/// `Scripts/bench.sh --quick` (CI) runs each benchmark briefly, so that the suite cannot rot.
let quick = ProcessInfo.processInfo.environment["TIMELINE_BENCH_QUICK"] != nil

/// The store M3 appends to, made by its setup hook.
final class Fixture: @unchecked Sendable {
    var directory: URL?
    var store: SQLiteStore?
}
let fixture = Fixture()

let benchmarks: @Sendable () -> Void = {
    // `.kilo`: each iteration does 1,000 operations (`benchmark.scaledIterations`), and figures are per operation.
    Benchmark.defaultConfiguration = .init(
        metrics: metrics, timeUnits: .nanoseconds, scalingFactor: .kilo,
        maxDuration: quick ? .milliseconds(200) : .seconds(2), maxIterations: quick ? 20 : 1_000)
    let count = Benchmark.defaultConfiguration.scalingFactor.rawValue

    // What a pulling client or an office replica spends on each PULL line before its store sees it.
    let pulled = pullLines(count)
    Benchmark("M1 PULL line decoded into an edit: ours") { benchmark in
        for i in benchmark.scaledIterations {
            var text = pulled[i]
            blackHole(try text.withUTF8 { try EditCodec.decodeWireEdit($0).edit })
        }
    }
    Benchmark("M1 PULL line decoded into an edit: reference JSONSerialization, a tree only") { benchmark in
        for i in benchmark.scaledIterations {
            blackHole(try JSONSerialization.jsonObject(with: Data(pulled[i].utf8)))
        }
    }

    // What a server spends on each BATCH or PROPOSE line before its writer takes it.
    let sent = proposalLines(count)
    Benchmark("M2 edit line decoded into a proposal: ours") { benchmark in
        for i in benchmark.scaledIterations {
            guard let members = try JSON.parseObject(sent[i]) else { fatalError("not an object") }
            blackHole(try EditCodec.decodeProposal(members, author: "bench", time: now))
        }
    }
    Benchmark("M2 edit line decoded into a proposal: reference JSONSerialization, a tree only") { benchmark in
        for i in benchmark.scaledIterations {
            blackHole(try JSONSerialization.jsonObject(with: Data(sent[i].utf8)))
        }
    }

    // The canonical body that the hash covers and the log stores, encoded per edit.
    let proposals = (0..<count).map(proposal)
    Benchmark("M3 canonical body of an annotation.add encoded: ours") { benchmark in
        for i in benchmark.scaledIterations {
            blackHole(EditCodec.canonicalBody(version: Int64(i + 1), revision: Int64(i + 1), proposal: proposals[i]))
        }
    }
    // What a Swift programmer would write instead: a Codable struct through JSONEncoder, keys sorted.
    struct Body: Encodable {
        var op = "annotation.add"
        var annotation, event, author, time, text: String
        var tags: [String]
        var base, version, revision: Int64
    }
    let structs = proposals.enumerated().map { i, p in
        guard case .addAnnotation(let id, let text, let tags) = p.change else { fatalError("not an add") }
        return Body(
            annotation: id.description, event: event.description, author: p.author, time: p.time.rfc3339, text: text,
            tags: tags, base: 1, version: Int64(i + 1), revision: Int64(i + 1))
    }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    Benchmark("M3 canonical body of an annotation.add encoded: reference JSONEncoder, Codable, sorted keys") {
        benchmark in
        for i in benchmark.scaledIterations {
            blackHole(try encoder.encode(structs[i]))
        }
    }

    // The whole write path in process, per annotation: admitted, hashed, stored and made durable, a batch of
    // 1,000 to a commit (as `timeline batch` sends them). S2 in timeline-bench sets it beside SQLite's C API.
    Benchmark(
        "M4 annotation appended to the store, batches of 1,000, durable",
        configuration: .init(maxDuration: quick ? .milliseconds(500) : .seconds(3), maxIterations: quick ? 5 : 200)
    ) { benchmark in
        guard let store = fixture.store else { fatalError("no store: the setup hook did not run") }
        let batch = benchmark.scaledIterations.map(proposal)
        benchmark.startMeasurement()
        blackHole(try await store.append(batch))
        benchmark.stopMeasurement()
    } setup: {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "timeline-microbench-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let store = try SQLiteStore(path: directory.appendingPathComponent("timeline.sqlite").path)
        _ = try await store.append([
            Proposal(
                event: event,
                change: .createEvent(EventFields(date: EventDate(parsing: "2014"), title: "bench", summary: "")),
                base: 0, author: "bench", time: now)
        ])
        fixture.directory = directory
        fixture.store = store
    } teardown: {
        fixture.store = nil
        if let directory = fixture.directory { try? FileManager.default.removeItem(at: directory) }
    }
}
