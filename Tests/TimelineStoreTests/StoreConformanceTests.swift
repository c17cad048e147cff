import CTimelineSQLite
import Dispatch
import Foundation
import GRDB
import Synchronization
import Testing
import TimelineCore

@testable import TimelinePostgres
@testable import TimelineStore

/// The conformance suite every `TimelineStore` passes; each test runs against every backend on real files.
enum Backend: String, CaseIterable, Sendable {
    case sqlite
    /// A database of its own per `TempDir`, in the private cluster Scripts/test.sh starts.
    case postgres

    func make(_ dir: TempDir, dataset: String? = nil, options: SQLiteStore.Options = .init()) async throws
        -> any TimelineStore
    {
        switch self {
        case .sqlite: try SQLiteStore(path: dir.path("timeline.sqlite"), dataset: dataset, options: options)
        case .postgres:
            try await PostgresStore.open(
                try await TestPostgres.database(dir.database), password: nil, dataset: dataset,
                options: TestPostgres.options)
        }
    }
}

/// A plain connection to a store's file, for tests that look under the store. Every connection of this test
/// process is opened after the store's one-time SQLite configuration (`memoryStatisticsOff`), which only the
/// process's first connection can make.
func rawQueue(_ path: String) throws -> DatabaseQueue {
    _ = SQLiteStore.memoryStatisticsOff
    return try DatabaseQueue(path: path)
}

/// Holds a SQLite store's writer so that appends made meanwhile wait and then commit as one group: a group is what
/// arrived while the writer was busy, and a test that made it busy for "long enough" would not test the group on a
/// machine that happened to be faster or slower.
final class WriterHold: Sendable {
    enum Writer {
        case sqlite(GroupCommitter, DispatchSemaphore)
        case postgres(PostgresWriter)
    }
    let writer: Writer

    init(_ store: any TimelineStore) throws {
        if let postgres = store as? PostgresStore {
            // A drain still winding down is done once the writer takes the hold.
            while !postgres.writer.hold() { usleep(100) }
            writer = .postgres(postgres.writer)
            return
        }
        let committer = try #require(store as? SQLiteStore).committer
        // The last append's drain may still be winding down; once it has, the writer starts only through its
        // queue, behind this hold.
        while committer.state.withLockedValue({ $0.running }) { usleep(100) }
        let gate = DispatchSemaphore(value: 0)
        committer.queue.async { gate.wait() }
        writer = .sqlite(committer, gate)
    }

    var queued: Int {
        switch writer {
        case .sqlite(let committer, _): committer.state.withLockedValue { $0.pending.count }
        case .postgres(let writer): writer.queued
        }
    }

    /// Polls until `count` appends are waiting for the writer (a minute at most, so that a broken writer fails).
    func waitForQueued(_ count: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while queued < count {
            guard ContinuousClock.now < deadline else { throw HoldTimedOut() }
            try await Task.sleep(nanoseconds: 1_000_000)
        }
    }

    func release() {
        switch writer {
        case .sqlite(_, let gate): gate.signal()
        case .postgres(let writer): writer.resume()
        }
    }

    struct HoldTimedOut: Error {}
}

final class TempDir: @unchecked Sendable {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("timeline-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
    /// The PostgreSQL database that stands for this folder.
    var database: String { "t_" + url.lastPathComponent.replacingOccurrences(of: "-", with: "_").lowercased() }
    deinit { try? FileManager.default.removeItem(at: url) }
}

let t0 = Timestamp(milliseconds: 1_700_000_000_000)

func create(_ title: String, date: String = "June 2010", tags: [String] = [], id: EventID? = nil) -> Proposal {
    Proposal(
        event: id ?? EventID(ULID.generate(at: t0)),
        change: .createEvent(EventFields(date: EventDate(parsing: date), title: title, summary: "", tags: tags)),
        base: 0, author: "ana", time: t0)
}

func annotate(_ event: EventID, _ text: String, base: Int64 = 1, by author: String = "ana") -> Proposal {
    Proposal(
        event: event, change: .addAnnotation(AnnotationID(ULID.generate(at: t0)), text: text, tags: []), base: base,
        author: author, time: t0)
}

@Suite struct StoreConformanceTests {
    /// An annotation added and changed in one commit is stored as it stands after the change (a PostgreSQL group
    /// once wrote the added annotation as added).
    @Test(arguments: Backend.allCases)
    func anAnnotationAddedAndChangedInOneCommitIsStoredChanged(backend: Backend) async throws {
        let dir = try TempDir()
        let store = try await backend.make(dir)
        let event = create("base")
        _ = try await store.append([event])
        let kept = annotate(event.event!, "first words")
        let gone = annotate(event.event!, "soon retracted")
        _ = try await store.append([
            kept, gone,
            Proposal(
                event: event.event!,
                change: .updateAnnotation(kept.change.annotationID!, AnnotationPatch(text: "second words")),
                base: 1, author: "ana", time: t0),
            Proposal(
                event: event.event!, change: .retractAnnotation(gone.change.annotationID!), base: 1, author: "ana",
                time: t0),
        ])
        let annotations = try #require(try await store.event(event.event!, asOf: nil)).annotations
        #expect(annotations.first { $0.id == kept.change.annotationID }?.text == "second words")
        #expect(annotations.first { $0.id == gone.change.annotationID }?.retracted == true)
        let report = try await store.verify()
        #expect(report.ok, "\(report)")
    }

    @Test(arguments: Backend.allCases)
    func concurrentAppendsGetContiguousVersions(backend: Backend) async throws {
        let dir = try TempDir()
        let store = try await backend.make(dir)
        let event = create("base")
        _ = try await store.append([event])
        let versions = try await withThrowingTaskGroup(of: [Int64].self) { group in
            for writer in 0..<64 {
                group.addTask {
                    var mine: [Int64] = []
                    for n in 0..<20 {
                        let edits = try await store.append([annotate(event.event!, "w\(writer) n\(n)")])
                        mine += edits.map(\.version)
                    }
                    return mine
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(versions.sorted() == Array(2...1281))
        #expect(try await store.currentVersion() == 1281)
        let report = try await store.verify()
        #expect(report.ok, "\(report)")
        #expect(try await store.event(event.event!, asOf: nil)?.annotations.count == 1280)
    }

    @Test(arguments: Backend.allCases)
    func batchIsAllOrNothingAndOthersAreUnaffected(backend: Backend) async throws {
        let dir = try TempDir()
        let store = try await backend.make(dir)
        let a = create("a")
        _ = try await store.append([a])
        let missing = EventID(ULID.generate(at: t0))
        let bad = [create("b"), create("c"), annotate(a.event!, "fine"), annotate(missing, "nowhere"), create("d")]
        // Both wait for the held writer, so that they land in one group commit.
        let held = try WriterHold(store)
        let refused = Task { try await store.append(bad) }
        try await held.waitForQueued(1)
        let accepted = Task { try await store.append([annotate(a.event!, "concurrent")]) }
        try await held.waitForQueued(2)
        held.release()
        await #expect {
            _ = try await refused.value
        } throws: { error in
            guard let r = error as? BatchRejection else { return false }
            return r.index == 3 && r.count == 5 && r.error.code == .notFound
        }
        #expect(try await accepted.value.map(\.version) == [2])
        #expect(try await store.currentVersion() == 2)
        #expect(try await store.events(matching: EventFilter()).map(\.event.title) == ["a"])
        #expect(try await store.verify().ok)
    }

    /// Units of one group commit share the writer's cache of events; a refused unit's changes to it (an event
    /// it created, a revision it moved) must go with its savepoint, or the units after it build on them.
    @Test(arguments: Backend.allCases)
    func aRefusedUnitInAGroupLeavesNoTraceForTheUnitsAfterIt(backend: Backend) async throws {
        let dir = try TempDir()
        let store = try await backend.make(dir)
        let a = create("a")
        _ = try await store.append([a])
        // The next three appends wait, in this order, while the writer is held, so they commit as one group.
        let held = try WriterHold(store)
        let b = create("b")
        let refused = Task {
            try await store.append([
                b, annotate(a.event!, "moves a to 2"), annotate(b.event!, "on b"),
                annotate(EventID(ULID.generate(at: t0)), "nowhere"),
            ])
        }
        try await held.waitForQueued(1)
        let onA = Task { try await store.append([annotate(a.event!, "a's real revision 2", base: 1)]) }
        try await held.waitForQueued(2)
        let onB = Task { try await store.append([annotate(b.event!, "b never existed")]) }
        try await held.waitForQueued(3)
        held.release()
        await #expect(throws: BatchRejection.self) { _ = try await refused.value }
        #expect(try await onA.value.map(\.revision) == [2])
        await #expect { _ = try await onB.value } throws: { ($0 as? BatchRejection)?.error.code == .notFound }
        // The next group reads from the cache the last one left.
        #expect(try await store.append([annotate(a.event!, "then 3", base: 2)]).map(\.revision) == [3])
        #expect(try await store.event(a.event!, asOf: nil)?.event.revision == 3)
        #expect(try await store.verify().ok)
    }
    /// An annotation ID is added once. A second add is refused with DUPLICATE_ID, its batch whole and the appends
    /// committed with it kept, whether the annotation was changed since (it has a row) or is still only its add
    /// (Schema, v6); and whether the writer had it cached or not (a reopened store).
    @Test(arguments: Backend.allCases)
    func anAnnotationIsAddedOnce(backend: Backend) async throws {
        let dir = try TempDir()
        let store = try await backend.make(dir)
        let event = create("e")
        let id = try #require(event.event)
        let kept = annotate(id, "never changed", base: 0)
        let changed = annotate(id, "changed", base: 0)
        _ = try await store.append([event, kept, changed])
        let changedID = try #require(changed.change.annotationID)
        _ = try await store.append([
            Proposal(
                event: id, change: .updateAnnotation(changedID, AnnotationPatch(text: "changed twice")), base: 0,
                author: "ana", time: t0)
        ])
        for reopened in [false, true] {
            let store = reopened ? try await backend.make(dir) : store
            for again in [kept, changed] {
                let before = try await store.head()
                // Submitted together, so that both land in one group commit.
                let refused = Task { try await store.append([annotate(id, "fresh", base: 0), again]) }
                let accepted = Task { try await store.append([annotate(id, "beside it", base: 0)]) }
                await #expect {
                    _ = try await refused.value
                } throws: { error in
                    guard let r = error as? BatchRejection else { return false }
                    return r.index == 1 && r.count == 2 && r.error.code == .duplicateID
                        && r.error.message.contains(again.change.annotationID!.description)
                }
                #expect(try await accepted.value.map(\.version) == [before.version + 1])
            }
            let annotations = try #require(try await store.event(id, asOf: nil)).annotations
            #expect(annotations.filter { $0.text == "never changed" }.count == 1)
            #expect(annotations.filter { $0.text == "changed twice" }.count == 1)
            #expect(annotations.count == (reopened ? 6 : 4))
            if let sqlite = store as? SQLiteStore {
                #expect(try await sqlite.annotation(changedID)?.text == "changed twice")
                #expect(try await sqlite.annotation(kept.change.annotationID!)?.text == "never changed")
                #expect(try await sqlite.annotation(AnnotationID(ULID.generate(at: t0))) == nil)
            }
            #expect(try await store.verify().ok)
        }
    }

    @Test(arguments: Backend.allCases)
    func asOfQueriesAndHistory(backend: Backend) async throws {
        let dir = try TempDir()
        let store = try await backend.make(dir)
        let e = create("first title", tags: ["a"])
        let id = e.event!
        _ = try await store.append([e, create("other")])
        _ = try await store.append([
            Proposal(
                event: id, change: .updateEvent(EventPatch(title: "second title", addTags: ["b"])), base: 1,
                author: "ben", time: t0)
        ])
        _ = try await store.append([annotate(id, "a note", base: 2)])
        #expect(try await store.event(id, asOf: 1)?.event.title == "first title")
        #expect(try await store.event(id, asOf: 2)?.event.title == "first title")
        #expect(try await store.event(id, asOf: 3)?.event.tags == ["a", "b"])
        #expect(try await store.event(id, asOf: 3)?.annotations.isEmpty == true)
        let now = try #require(try await store.event(id, asOf: nil))
        #expect(now.event.revision == 3)
        #expect(now.annotations.map(\.text) == ["a note"])
        #expect(try await store.event(id, asOf: 4) == now)
        #expect(try await store.event(EventID(ULID.generate(at: t0)), asOf: nil) == nil)
        let history = try await store.history(of: id)
        #expect(history.map(\.version) == [1, 3, 4])
        #expect(history.map(\.revision) == [1, 2, 3])
        #expect(history.map(\.author) == ["ana", "ben", "ana"])
    }

    /// GET's path from an event loop (`event(_:asOf:completion:)`) gives what awaiting `event(_:asOf:)` gives, and
    /// both give the event replayed from its own history (up to the version asked for): with annotations added,
    /// changed and retracted, none, for an event that does not exist and at past versions, many reads at once.
    @Test(arguments: Backend.allCases)
    func readsWithACompletionAgreeWithTheLogReplayed(backend: Backend) async throws {
        let dir = try TempDir()
        let store = try await backend.make(dir)
        let events = (0..<20).map { create("e\($0)") }
        _ = try await store.append(events)
        let added = try await store.append(
            events.prefix(10).flatMap { e in (0..<3).map { annotate(e.event!, "n\($0)", base: 0) } })
        let (first, ids) = (events[0].event!, added.prefix(3).compactMap(\.change.annotationID))
        _ = try await store.append([
            Proposal(
                event: first, change: .updateAnnotation(ids[2], AnnotationPatch(text: "changed")), base: 0,
                author: "ana", time: t0),
            Proposal(event: first, change: .retractAnnotation(ids[0]), base: 0, author: "ana", time: t0),
        ])
        func read(_ id: EventID, asOf: Int64?) async throws -> EventView? {
            try await withCheckedThrowingContinuation { c in store.event(id, asOf: asOf) { c.resume(with: $0) } }
        }
        func sorted(_ view: EventView?) -> EventView? {
            view.map { EventView(event: $0.event, annotations: $0.annotations.sorted { $0.id < $1.id }) }
        }
        let missing = EventID(ULID.generate(at: t0))
        var histories: [EventID: [Edit]] = [:]
        for e in events { histories[e.event!] = try await store.history(of: e.event!) }
        func replayed(_ id: EventID, asOf: Int64?) throws -> EventView? {
            try EventView.replaying((histories[id] ?? []).filter { $0.version <= asOf ?? .max })
        }
        try await withThrowingTaskGroup(of: (EventID, Int64?, EventView?).self) { group in
            for _ in 0..<5 {
                for id in events.map({ $0.event! }) + [missing] {
                    for asOf: Int64? in [nil, 1, 25] { group.addTask { (id, asOf, try await read(id, asOf: asOf)) } }
                }
            }
            var count = 0
            for try await (id, asOf, view) in group {
                #expect(try await store.event(id, asOf: asOf) == view)
                #expect(sorted(view) == sorted(try replayed(id, asOf: asOf)))
                count += 1
            }
            #expect(count == 5 * 21 * 3)
        }
        let now = try #require(try await read(first, asOf: nil))
        let expected = zip(ids, [("n0", true), ("n1", false), ("changed", false)]).sorted { $0.0 < $1.0 }
        #expect(now.annotations.map(\.id) == expected.map(\.0))
        #expect(now.annotations.map(\.text) == expected.map(\.1.0))
        #expect(now.annotations.map(\.retracted) == expected.map(\.1.1))
        #expect(try await read(events[15].event!, asOf: nil)?.annotations.isEmpty == true)
        #expect(try await read(missing, asOf: nil) == nil)
    }

    /// At most `width` reads run at once, they start in the order submitted, and a lane of width `w` does run
    /// `w` reads at once. Overlap is made certain rather than hoped for: while fewer than `width` reads are running,
    /// each one waits for the others (a barrier), so only lanes that start a thread per read get past it; a lane
    /// that ran its reads one after another would leave the barrier waiting until its deadline, and fail.
    @Test func readLanesKeepTheirWidthAndOrder() async throws {
        struct Seen {
            var running = 0
            var most = 0
            var started: [Int] = []
            /// Reads that found `width` running at once (so the barrier was met) before they returned.
            var met = 0
        }
        for (width, count) in [(1, 200), (3, 30)] {
            let lanes = ReadLanes(width: width)
            let seen = Mutex(Seen())
            let remaining = Mutex(count)
            // Generous: this only bounds how long a broken lane can hold the test, it never paces a correct one.
            let deadline = ContinuousClock.now + .seconds(30)
            await withCheckedContinuation { (all: CheckedContinuation<Void, Never>) in
                // Submitted one after another, as one event loop hands them over.
                for i in 0..<count {
                    lanes.submit {
                        seen.withLock {
                            $0.running += 1
                            $0.most = max($0.most, $0.running)
                            $0.started.append(i)
                        }
                        // The first `width` reads wait for each other; later ones pass at once.
                        if i < width {
                            while seen.withLock({ $0.running < width && $0.most < width }),
                                ContinuousClock.now < deadline
                            {
                                usleep(200)
                            }
                            seen.withLock { if $0.most >= width { $0.met += 1 } }
                        }
                        seen.withLock { $0.running -= 1 }
                        if remaining.withLock({ n in
                            n -= 1
                            return n == 0
                        }) {
                            all.resume()
                        }
                    }
                }
            }
            let result = seen.withLock { $0 }
            #expect(result.most <= width)
            #expect(result.started.count == count)
            #expect(Set(result.started) == Set(0..<count))
            if width == 1 { #expect(result.started == Array(0..<count)) }
            // Every one of the first `width` reads saw all `width` running at once.
            #expect(result.most == width)
            #expect(result.met == width)
        }
    }

    @Test(arguments: Backend.allCases)
    func staleUpdatesMergeOrConflictInsideTheStore(backend: Backend) async throws {
        let dir = try TempDir()
        let store = try await backend.make(dir)
        let e = create("t")
        let id = e.event!
        _ = try await store.append([e])
        func update(_ patch: EventPatch, base: Int64, by: String) -> [Proposal] {
            [Proposal(event: id, change: .updateEvent(patch), base: base, author: by, time: t0)]
        }
        _ = try await store.append(update(EventPatch(title: "ana"), base: 1, by: "ana"))
        _ = try await store.append(update(EventPatch(summary: "ben"), base: 1, by: "ben"))
        await #expect {
            _ = try await store.append(update(EventPatch(title: "cy"), base: 1, by: "cy"))
        } throws: { ($0 as? BatchRejection)?.error.code == .conflict }
        let now = try #require(try await store.event(id, asOf: nil)?.event)
        #expect((now.title, now.summary, now.revision) == ("ana", "ben", 3))
    }

    @Test(arguments: Backend.allCases)
    func pagingAndStreamingTheLog(backend: Backend) async throws {
        let dir = try TempDir()
        let store = try await backend.make(dir)
        _ = try await store.append((0..<2_500).map { create("e\($0)") })
        let page = try await store.edits(after: 100, limit: 50)
        #expect(page.map(\.version) == Array(101...150))
        var count: Int64 = 0
        var previous = Genesis.hash(dataset: store.dataset)
        for try await edit in store.editStream(after: 0, pageSize: 700) {
            count += 1
            #expect(edit.version == count)
            let body = EditCodec.canonicalBody(version: edit.version, revision: edit.revision, proposal: edit.proposal)
            #expect(SHA256.chain(prefix: previous.bytes, body) == edit.hash)
            previous = edit.hash
        }
        #expect(count == 2_500)
        #expect(try await store.head().hash == previous)
        await #expect(throws: TimelineError.self) { _ = try await store.edits(after: -1, limit: 10) }
    }

    /// PULL's bytes come straight from the stored bodies; they must equal the edits decoded and encoded again.
    @Test(arguments: Backend.allCases)
    func wireEditsAreTheEditsAsTheWireEncodesThem(backend: Backend) async throws {
        let store = try await backend.make(TempDir())
        _ = try await Importer.loadSample(into: store)
        let event = try await store.events(matching: EventFilter()).first!.event.id
        _ = try await store.append([
            annotate(event, #"quotes " and \ and {"hash":"x"}, and ü"#, base: 1),
            annotate(event, "line\nbreak", base: 2),
        ])
        let expected = try await store.edits(after: 0, limit: 1_000).map(WireEdit.init)
        #expect(expected.count == 31)
        #expect(try await store.wireEdits(after: 0, limit: 1_000) == expected)
        #expect(try await store.wireEdits(after: 29, limit: 1) == [expected[29]])
    }

    /// PULL reads the hash column where SQLite holds it: a stored hash of another length (only someone editing the
    /// file can make one) is refused as corrupt, naming what is wrong, rather than read past its end.
    @Test func wireEditsRefuseAStoredHashOfAnotherLength() async throws {
        let dir = try TempDir()
        let path = dir.path("timeline.sqlite")
        _ = try await Importer.loadSample(into: try SQLiteStore(path: path))
        try await rawQueue(path).write { db in
            try db.execute(sql: "DROP TRIGGER edits_append_only_update")
            try db.execute(sql: "UPDATE edits SET hash = substr(hash, 1, 31) WHERE version = 7")
        }
        let store = try SQLiteStore(path: path)
        #expect(try await store.wireEdits(after: 0, limit: 6).count == 6)
        await #expect(
            performing: { _ = try await store.wireEdits(after: 0, limit: 10) },
            throws: { error in
                let e = error as? TimelineError
                return e?.code == .corrupt && e?.message.contains("not 32 bytes") == true
            })
    }

    @Test(arguments: Backend.allCases)
    func stateHashIsTheReplayedStatesWhateverTheGrouping(backend: Backend) async throws {
        let dir = try TempDir()
        let doc = try SeedDocument.parse(Array(SampleTimeline.text.utf8))
        let proposals = doc.proposals(author: "s", time: t0, idSeed: "x")
        var state = TimelineState()
        for p in proposals { try state.admit(p) }
        _ = dir
        let one = try await backend.make(TempDir(), dataset: "d")
        _ = try await one.append(proposals)
        let many = try await backend.make(TempDir(), dataset: "d")
        for p in proposals { _ = try await many.append([p]) }
        #expect(try await one.stateHash() == state.stateHash)
        #expect(try await many.stateHash() == state.stateHash)
        #expect(try await one.head() == many.head())
    }

    @Test func verifyReportsTheFirstTamperedVersion() async throws {
        let dir = try TempDir()
        let path = dir.path("timeline.sqlite")
        do {
            let store = try SQLiteStore(path: path)
            _ = try await Importer.loadSample(into: store)
            let clean = try await store.verify()
            #expect(clean.ok, "\(clean)")
        }
        // Someone with the file edits the log: they must drop the append-only trigger first.
        let queue = try rawQueue(path)
        try await queue.write { db in
            #expect(throws: DatabaseError.self) {
                try db.execute(sql: "UPDATE edits SET body = body WHERE version = 5")
            }
            #expect(throws: DatabaseError.self) { try db.execute(sql: "DELETE FROM edits WHERE version = 29") }
            try db.execute(sql: "DROP TRIGGER edits_append_only_update")
            try db.execute(sql: "UPDATE edits SET body = replace(body, 'Washington', 'Tokyo') WHERE version = 6")
        }
        let report = try await SQLiteStore(path: path).verify()
        #expect(!report.ok)
        #expect(report.firstBadVersion == 6)
        // The materialized state tampered alone is caught too.
        let dir2 = try TempDir()
        let path2 = dir2.path("t.sqlite")
        _ = try await Importer.loadSample(into: try SQLiteStore(path: path2))
        try await rawQueue(path2).write { db in
            try db.execute(sql: "UPDATE events SET body = replace(body, 'Tokyo', 'Osaka')")
        }
        let report2 = try await SQLiteStore(path: path2).verify()
        #expect(!report2.ok)
        #expect(report2.problems.contains { $0.contains("differs from the log") })
        // A log row naming another annotation than its body (reads find an event's annotations by it; the log's
        // index of adds refuses a second add of the same one).
        let dir3 = try TempDir()
        let path3 = dir3.path("t.sqlite")
        let store3 = try SQLiteStore(path: path3)
        _ = try await Importer.loadSample(into: store3)
        let first = try #require(try await store3.events(matching: EventFilter()).first?.event.id)
        let added = try await store3.append([annotate(first, "one", base: 0), annotate(first, "two", base: 0)])
        try await rawQueue(path3).write { db in
            try db.execute(sql: "DROP TRIGGER edits_append_only_update")
            #expect(throws: DatabaseError.self) {
                try db.execute(
                    sql: "UPDATE edits SET annotation = ? WHERE version = ?",
                    arguments: [added[1].change.annotationID?.description, added[0].version])
            }
            try db.execute(
                sql: "UPDATE edits SET annotation = ? WHERE version = ?",
                arguments: [AnnotationID(ULID.generate(at: t0)).description, added[0].version])
        }
        let report3 = try await SQLiteStore(path: path3).verify()
        #expect(report3.firstBadVersion == added[0].version)
        #expect(report3.problems.contains { $0.contains("columns disagree") }, "\(report3.problems)")
        // A row for an annotation no edit changed: reads would take it over its add.
        let dir4 = try TempDir()
        let path4 = dir4.path("t.sqlite")
        let store4 = try SQLiteStore(path: path4)
        _ = try await Importer.loadSample(into: store4)
        let note = annotate(first, "as added", base: 0)
        _ = try await store4.append([note])
        try await rawQueue(path4).write { db in
            try db.execute(
                sql: "INSERT INTO annotations(id, event, retracted, body) VALUES (?, ?, 0, ?)",
                arguments: [
                    note.change.annotationID?.description, first.description,
                    String(decoding: note.addedAnnotation!.canonicalBytes, as: UTF8.self),
                ])
        }
        let report4 = try await SQLiteStore(path: path4).verify()
        #expect(!report4.ok)
        #expect(report4.problems.contains { $0.contains("have a row") }, "\(report4.problems)")
    }

    @Test(arguments: Backend.allCases)
    func reopeningKeepsHeadAndDataset(backend: Backend) async throws {
        let dir = try TempDir()
        let (dataset, head) = try await {
            let store = try await backend.make(dir)
            _ = try await store.append([create("x"), create("y")])
            return (store.dataset, try await store.head())
        }()
        let reopened = try await backend.make(dir)
        #expect(reopened.dataset == dataset)
        #expect(try await reopened.head() == head)
        _ = try await reopened.append([create("z")])
        #expect(try await reopened.verify().ok)
        await #expect { try await backend.make(dir, dataset: "another") } throws: {
            ($0 as? TimelineError)?.code == .wrongDataset
        }
    }

    @Test(arguments: Backend.allCases)
    func sampleImportFiltersAndPrefixes(backend: Backend) async throws {
        let dir = try TempDir()
        let store = try await backend.make(dir)
        let report = try await Importer.loadSample(into: store)
        #expect(report.events == 28)
        #expect(report.warnings.count == 1)
        let all = try await store.events(matching: EventFilter())
        #expect(all.count == 28)
        #expect(all.first?.event.date.text == "2009")
        #expect(Set(all.flatMap { $0.event.references.map(\.number) }).count == 29)
        let y2014 = try await store.events(
            matching: EventFilter(from: CivilDay(iso: "2014-01-01"), until: CivilDay(iso: "2014-12-31")))
        #expect(y2014.count == 11)
        #expect(try await store.events(matching: EventFilter(text: "yama sakura")).count == 1)
        #expect(try await store.events(matching: EventFilter(text: "'; DROP TABLE events; --")).isEmpty)
        let id = all[3].event.id
        _ = try await store.append([
            Proposal(event: id, change: .updateEvent(EventPatch(addTags: ["cyber"])), base: 1, author: "a", time: t0)
        ])
        #expect(try await store.events(matching: EventFilter(tag: "cyber")).map(\.event.id) == [id])
        #expect(try await store.events(matching: EventFilter(tag: "cyber' OR 1=1 --")).isEmpty)
        #expect(try await store.resolve(prefix: String(id.description.prefix(26)).lowercased(), limit: 5) == [id])
        // Sample IDs share their time prefix: a short prefix is ambiguous.
        #expect(try await store.resolve(prefix: String(id.description.prefix(4)), limit: 50).count == 28)
        // Loading the same sample again is refused whole: its IDs already exist.
        await #expect { _ = try await Importer.loadSample(into: store) } throws: {
            ($0 as? TimelineError)?.code == .duplicateID
        }
        #expect(try await store.currentVersion() == 30)
    }

    @Test(arguments: Backend.allCases)
    func jsonlRoundTripGivesTheIdenticalStateHash(backend: Backend) async throws {
        let dir = try TempDir()
        let store = try SQLiteStore(path: dir.path("a.sqlite"))
        _ = try await Importer.loadSample(into: store)
        let first = try #require(try await store.events(matching: EventFilter()).first?.event.id)
        _ = try await store.append([
            annotate(first, "note one", by: "ana"), annotate(first, "note two", base: 2, by: "ben"),
        ])
        var lines: [String] = []
        try await Exporter.jsonl(from: store) { lines.append($0) }
        let copy = try await backend.make(TempDir())
        let report = try await Importer.load(
            Array(lines.joined(separator: "\n").utf8), format: .jsonl, into: copy, author: "admin", time: t0,
            trusted: true)
        #expect(report.events == 28)
        #expect(try await copy.stateHash() == store.stateHash())
        #expect(try await copy.verify().ok)
    }

    @Test(arguments: Backend.allCases)
    func logByTagPagesInDateOrderAndFollowsDateChanges(backend: Backend) async throws {
        let store = try await backend.make(TempDir())
        let ids = (0..<4).map { _ in EventID(ULID.generate(at: t0)) }
        _ = try await store.append([
            create("c", date: "2012", tags: ["x"], id: ids[0]),
            create("a", date: "2009", tags: ["x", "y"], id: ids[1]),
            create("undated", date: "someday", tags: ["x"], id: ids[2]),
            create("b", date: "2010", tags: ["y"], id: ids[3]),
        ])
        func titles(_ filter: EventFilter) async throws -> [String] {
            try await store.events(matching: filter).map(\.event.title)
        }
        #expect(try await titles(EventFilter(tag: "x")) == ["a", "c", "undated"])
        #expect(try await titles(EventFilter(tag: "x", limit: 2)) == ["a", "c"])
        #expect(try await titles(EventFilter(from: CivilDay(iso: "2010-01-01"), tag: "x")) == ["c"])
        #expect(try await titles(EventFilter(tag: "x", text: "UNDATED")) == ["undated"])
        // Moving an event's date moves its place in every tag's order.
        _ = try await store.append([
            Proposal(
                event: ids[0], change: .updateEvent(EventPatch(date: EventDate(parsing: "2001"))), base: 1,
                author: "ana", time: t0)
        ])
        #expect(try await titles(EventFilter(tag: "x")) == ["c", "a", "undated"])
        #expect(try await titles(EventFilter(tag: "y")) == ["a", "b"])
        #expect(try await store.verify().ok)
    }

    /// Observers (WATCH, an office's forwarded writes) see every committed edit once, in version order, as one
    /// array per append a commit held; refused appends and empty arrays are not passed on.
    @Test(arguments: Backend.allCases)
    func commitsAreObservedOnceEachInVersionOrder(backend: Backend) async throws {
        let store = try await backend.make(TempDir())
        let event = create("e")
        let start = try await store.append([event])[0].version
        let seen = Mutex<[[[Int64]]]>([])
        store.observeCommits { units in seen.withLock { $0.append(units.map { $0.map(\.version) }) } }
        let accepted = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<40 {
                group.addTask {
                    // Every seventh append names an event that does not exist and is refused whole.
                    let target = i % 7 == 3 ? EventID(ULID.generate(at: t0)) : event.event!
                    let proposals = (0...(i % 3)).map { annotate(target, "n\(i).\($0)", base: 0) }
                    return (try? await store.append(proposals))?.count ?? 0
                }
            }
            return try await group.reduce(0, +)
        }
        let commits = seen.withLock { $0 }
        let versions = commits.flatMap { $0.flatMap { $0 } }
        #expect(versions == Array(start + 1...start + Int64(accepted)))
        #expect(commits.allSatisfy { !$0.isEmpty && $0.allSatisfy { !$0.isEmpty } })
        #expect(commits.map(\.count).reduce(0, +) == 40 - 6, "\(commits)")
    }

    /// An OK means the edit is on disk: the writer's commits must sync the log (synchronous = FULL, 2), which
    /// GRDB's WAL set-up quietly lowers to NORMAL (1) unless it is set again after opening.
    @Test func theWriterSyncsEveryCommit() async throws {
        let dir = try TempDir()
        let store = try SQLiteStore(path: dir.path("timeline.sqlite"))
        let level = try await store.pool.writeWithoutTransaction { db in
            try Int.fetchOne(db, sql: "PRAGMA synchronous")
        }
        #expect(level == 2)
        let reopened = try SQLiteStore(path: dir.path("timeline.sqlite"))
        #expect(
            try await reopened.pool.writeWithoutTransaction { try Int.fetchOne($0, sql: "PRAGMA synchronous") } == 2)
    }

    /// Units up to `PreparedProposals.limit` are encoded before the writer takes them, larger ones (imports) by
    /// the writer as it goes: both must give the same bytes.
    @Test func proposalsEncodedBeforeOrByTheWriterAreTheSame() throws {
        let event = EventID(ULID.generate(at: t0))
        let proposals =
            [create("e", tags: ["x"], id: event), annotate(event, "note"), annotate(event, "\"q\" \\")]
            + [Proposal(event: event, change: .deleteEvent, base: 3, author: "ana", time: t0)]
        let before = PreparedProposals(proposals)
        let by = PreparedProposals(proposals, limit: proposals.count - 1)
        for index in proposals.indices {
            for (version, revision) in [(Int64(1), Int64(1)), (123_456, 789)] {
                let body = EditCodec.canonicalBody(version: version, revision: revision, proposal: proposals[index])
                #expect(before.body(index, version: version, revision: revision) == body)
                #expect(by.body(index, version: version, revision: revision) == body)
            }
        }
    }

    /// A pulled page keeps its bodies end to end in one buffer; every one reads back as the canonical bytes.
    @Test func aLinkedPageKeepsEachEditsCanonicalBytes() throws {
        let event = EventID(ULID.generate(at: t0))
        let proposals =
            [create("e", tags: ["x"], id: event), annotate(event, "note"), annotate(event, "\"q\" \\")]
            + [Proposal(event: event, change: .deleteEvent, base: 3, author: "ana", time: t0)]
        var head = Genesis.hash(dataset: "packed")
        var edits: [Edit] = []
        for (index, proposal) in proposals.enumerated() {
            let (edit, _) = Edit.chained(
                after: head, version: Int64(index + 1), revision: Int64(index + 1), proposal: proposal)
            edits.append(edit)
            head = edit.hash
        }
        let page = try LinkedEdits(edits)
        #expect(page.bodies.count == edits.count)
        for (index, edit) in edits.enumerated() {
            let body = EditCodec.canonicalBody(version: edit.version, revision: edit.revision, proposal: edit.proposal)
            #expect(Array(page.bodies[index]) == body)
        }
    }

    /// SQLite's memory statistics take a process-wide mutex on every allocation; the store switches them off
    /// before SQLite's first connection. (Every connection of this process comes after it: `rawQueue`.)
    @Test func sqliteKeepsNoMemoryStatistics() async throws {
        let dir = try TempDir()
        let store = try SQLiteStore(path: dir.path("timeline.sqlite"))
        _ = try await Importer.loadSample(into: store)
        #expect(SQLiteStore.memoryStatisticsOff)
        #expect(timeline_sqlite_memory_used() == 0)
    }

    /// The writer does not checkpoint inside its commits; the checkpointer beside it keeps the WAL from growing
    /// with the log (without it, 12,000 edits leave a WAL of about 30 MiB here, and up to SQLite's own limit of 64
    /// MiB). It starts once the log has grown by the given number of bytes, 4 MiB here, counted in pages of the
    /// store's own size (a replica's are 16 KiB).
    @Test(arguments: [4_096, 16_384])
    func theWALIsCheckpointedBesideTheWriter(pageSize: Int) async throws {
        let dir = try TempDir()
        let path = dir.path("timeline.sqlite")
        let store = try SQLiteStore(path: path, options: .init(checkpointEveryBytes: 4 << 20, pageSize: pageSize))
        let event = EventID(ULID.generate(at: t0))
        _ = try await store.append([create("e", id: event)])
        for round in 0..<12 {
            _ = try await store.append((0..<1_000).map { annotate(event, "note \(round) \($0)", base: 0) })
        }
        let wal = try FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int ?? 0
        #expect(wal < 16 << 20, "WAL of \(wal) bytes after 12,000 edits")
        #expect(try await store.verify().ok)
    }

    /// A store is made with the page size its options ask for, and keeps the one it was made with when opened
    /// with others. Writes do not zero what they free (Debian builds SQLite to, by default).
    @Test func aStoreKeepsThePageSizeItWasMadeWith() async throws {
        let dir = try TempDir()
        func pragma(_ store: SQLiteStore, _ name: String) async throws -> Int? {
            try await store.pool.writeWithoutTransaction { try Int.fetchOne($0, sql: "PRAGMA \(name)") }
        }
        let event = EventID(ULID.generate(at: t0))
        for (name, options, size) in [("primary", SQLiteStore.Options(), 4_096), ("replica", .replica, 16_384)] {
            let store = try SQLiteStore(path: dir.path("\(name).sqlite"), options: options)
            _ = try await store.append([create("e", id: event), annotate(event, "note", base: 0)])
            #expect(try await pragma(store, "page_size") == size)
            #expect(try await pragma(store, "secure_delete") == 0)
            let other = try SQLiteStore(
                path: dir.path("\(name).sqlite"), options: .init(pageSize: size == 4_096 ? 16_384 : 4_096))
            #expect(try await pragma(other, "page_size") == size)
            _ = try await other.append([annotate(event, "another", base: 0)])
            #expect(try await other.verify().ok)
            #expect(try await other.currentVersion() == 3)
        }
    }

    /// A store made before the tag rows carried dates (migration v1 only) gets them filled in when opened.
    @Test func olderStoresGetTheirTagDatesFilledIn() async throws {
        let dir = try TempDir()
        let path = dir.path("timeline.sqlite")
        do {
            let store = try SQLiteStore(path: path)
            _ = try await store.append([
                create("late", date: "2012", tags: ["x"]), create("early", date: "2009", tags: ["x"]),
            ])
        }
        // Back to the v1 shape: no date column, no new indexes, the migration not yet applied.
        let queue = try rawQueue(path)
        try await queue.write { db in
            try db.execute(
                sql: """
                    DROP INDEX event_tags_by_date; DROP INDEX event_tags_by_event;
                    ALTER TABLE event_tags DROP COLUMN date_start;
                    DELETE FROM grdb_migrations WHERE identifier = 'v2-event-tags-by-date';
                    """)
        }
        try queue.close()
        let reopened = try SQLiteStore(path: path)
        #expect(try await reopened.events(matching: EventFilter(tag: "x")).map(\.event.title) == ["early", "late"])
        #expect(try await reopened.verify().ok)
    }

    /// A store made before migration v3 has its log rebuilt with the op check as comparisons: every edit and the
    /// state are kept, the log's rules still hold, and appending a row builds no temporary B-tree.
    /// A store of the sample and 50 annotations, and a file with the same rows under the schema as of the
    /// migration named `upTo`, as a store of that time left it.
    private func storeAndOlderCopy(upTo migration: String, in dir: TempDir) async throws -> (
        current: SQLiteStore, first: EventID, oldPath: String
    ) {
        let current = try SQLiteStore(path: dir.path("current.sqlite"))
        _ = try await Importer.loadSample(into: current)
        let first = try #require(try await current.events(matching: EventFilter()).first?.event.id)
        let added = try await current.append((0..<50).map { annotate(first, "note \($0)", base: 0) })
        // Every kind of annotation edit, whose log rows v4 gives the annotation's ID from their bodies.
        let ids = added.compactMap(\.change.annotationID)
        let base = try #require(try await current.event(first, asOf: nil)).event.revision
        _ = try await current.append([
            Proposal(
                event: first, change: .updateAnnotation(ids[0], AnnotationPatch(text: "changed")), base: base,
                author: "ana", time: t0),
            Proposal(event: first, change: .retractAnnotation(ids[1]), base: base + 1, author: "ana", time: t0),
        ])
        // Before v6 every annotation had its row.
        let annotations = try #require(try await current.event(first, asOf: nil)).annotations
        let oldPath = dir.path("old.sqlite")
        let old = try rawQueue(oldPath)
        defer { try? old.close() }
        try Schema.migrator.migrate(old, upTo: migration)
        try await old.writeWithoutTransaction { db in
            try db.execute(sql: "ATTACH DATABASE ? AS current", arguments: [dir.path("current.sqlite")])
            try db.inTransaction {
                // The log names the annotation an edit is about since v4.
                let named = try Bool.fetchOne(
                    db, sql: "SELECT count(*) FROM main.pragma_table_info('edits') WHERE name = 'annotation'")
                let log = "version, event, revision, op, body, hash" + (named == true ? ", annotation" : "")
                try db.execute(sql: "INSERT INTO main.edits(\(log)) SELECT \(log) FROM current.edits")
                // Before v5 an event's row held its revision and the version of its newest log row.
                let revisions = try Bool.fetchOne(
                    db, sql: "SELECT count(*) FROM main.pragma_table_info('events') WHERE name = 'revision'")
                if revisions == true {
                    try db.execute(
                        sql: """
                            INSERT INTO main.events(id, revision, version, deleted, date_start, date_end, body)
                            SELECT e.id, l.revision, l.version, e.deleted, e.date_start, e.date_end, e.body
                            FROM current.events e JOIN current.edits l ON l.event = e.id
                            WHERE l.revision = (SELECT max(revision) FROM current.edits WHERE event = e.id)
                            """)
                } else {
                    try db.execute(sql: "INSERT INTO main.events SELECT * FROM current.events")
                }
                for table in ["store_info", "event_tags", "timeline_meta"] {
                    try db.execute(sql: "INSERT INTO main.\(table) SELECT * FROM current.\(table)")
                }
                for a in annotations {
                    try db.execute(
                        sql: "INSERT INTO main.annotations(id, event, retracted, body) VALUES (?, ?, ?, ?)",
                        arguments: [
                            a.id.description, a.event.description, a.retracted,
                            String(decoding: a.canonicalBytes, as: UTF8.self),
                        ])
                }
                return .commit
            }
            try db.execute(sql: "DETACH DATABASE current")
        }
        return (current, first, oldPath)
    }

    /// The program SQLite compiles for a log row's INSERT (by default the columns every version of the log has;
    /// `sql` for another statement), as (opcode, p2) pairs.
    private func logInsertProgram(
        _ db: DatabaseQueue, or conflict: String = "",
        sql: String? = nil
    ) throws -> [(String, Int)] {
        let insert =
            sql ?? "INSERT \(conflict) INTO edits(version, event, revision, op, body, hash) VALUES (?,?,?,?,?,?)"
        // EXPLAIN compiles without running: every parameter may be NULL.
        let nulls = StatementArguments(Array(repeating: DatabaseValue.null, count: insert.filter { $0 == "?" }.count))
        return try db.read { db in
            try Row.fetchAll(db, sql: "EXPLAIN \(insert)", arguments: nulls).map {
                ($0["opcode"] as String, $0["p2"] as Int)
            }
        }
    }

    /// After a migration, the migrated store is the store it was copied from, and the log's rules still hold:
    /// ops are checked, versions stay contiguous, the log is append-only.
    private func expectSameStoreAndRules(
        _ migrated: SQLiteStore, as current: SQLiteStore, first: EventID, check: DatabaseQueue
    ) async throws {
        #expect(try await migrated.head() == current.head())
        #expect(try await migrated.stateHash() == current.stateHash())
        #expect(try await migrated.verify().ok)
        // An event's annotations are read through its log rows since v4: the same as before the migration.
        #expect(try await migrated.event(first, asOf: nil) == current.event(first, asOf: nil))
        #expect(try await migrated.event(first, asOf: nil)?.annotations.count == 50)
        _ = try await migrated.append([annotate(first, "after the migration", base: 0)])
        let head = try await migrated.head().version
        let row = "INSERT INTO edits(version, event, revision, op, body, hash, annotation) VALUES"
        let event = "'\(first)'"
        let annotated = try #require(try await migrated.event(first, asOf: nil)?.annotations.first?.id)
        // Each refused for its own rule: the message says which.
        let refusals = [
            ("\(row) (\(head + 1), NULL, 0, 'event.explode', '{}', zeroblob(32), NULL)", "CHECK constraint failed"),
            ("\(row) (\(head + 2), NULL, 0, 'timeline.meta', '{}', zeroblob(32), NULL)", "must be contiguous"),
            (
                "INSERT OR FAIL INTO edits(version, event, revision, op, body, hash) VALUES "
                    + "(\(head + 2), NULL, 0, 'timeline.meta', '{}', zeroblob(32))", "must be contiguous"
            ),
            (
                "\(row) (\(head + 1), \(event), 999, 'annotation.add', '{}', zeroblob(32), NULL)",
                "CHECK constraint failed"
            ),
            (
                "\(row) (\(head + 1), \(event), 999, 'event.update', '{}', zeroblob(32), \(event))",
                "CHECK constraint failed"
            ),
            (
                "\(row) (\(head + 1), \(event), 999, 'annotation.add', '{}', zeroblob(32), '\(annotated)')",
                "UNIQUE constraint failed: edits.annotation"
            ),
            ("UPDATE edits SET body = '{}' WHERE version = 1", "append-only"),
            ("DELETE FROM edits WHERE version = \(head)", "append-only"),
        ]
        for (sql, reason) in refusals {
            let error = #expect(throws: DatabaseError.self, "\(sql)") { try check.write { try $0.execute(sql: sql) } }
            #expect(error?.message?.contains(reason) == true, "\(sql): \(error?.message ?? "")")
        }
        #expect(try await migrated.event(first, asOf: nil)?.annotations.count == 51)
        #expect(try check.read { try Row.fetchOne($0, sql: "PRAGMA foreign_key_check") } == nil)
        let stored = try await check.read { try Int64.fetchOne($0, sql: "SELECT max(version) FROM edits") }
        #expect(stored == head, "the refused rows left nothing")
    }

    @Test func olderLogsGetAnOpCheckWithoutATemporaryTable() async throws {
        let dir = try TempDir()
        let (current, first, oldPath) = try await storeAndOlderCopy(upTo: "v2-event-tags-by-date", in: dir)
        let old = try rawQueue(oldPath)
        #expect(try logInsertProgram(old).contains { $0.0 == "OpenEphemeral" }, "the v2 schema's IN list")
        try old.close()

        let migrated = try SQLiteStore(path: oldPath)
        let check = try rawQueue(oldPath)
        defer { try? check.close() }
        #expect(try !logInsertProgram(check).contains { $0.0 == "OpenEphemeral" })
        try await expectSameStoreAndRules(migrated, as: current, first: first, check: check)
    }

    /// A store made before migration v4 has its log rebuilt so that the writer's INSERT OR FAIL of a log row
    /// runs without a statement journal. SQLite opens one for a statement that fires a trigger and may abort
    /// (sqlite3VdbeMakeReady: isMultiWrite && mayAbort); mayAbort comes from a constraint or RAISE with ABORT and
    /// from any function call, so the compiled program must have neither, and the trigger must raise FAIL.
    @Test func olderLogsAreWrittenWithoutAStatementJournal() async throws {
        let dir = try TempDir()
        let (current, first, oldPath) = try await storeAndOlderCopy(
            upTo: "v3-edits-op-check-without-in-list", in: dir)
        let abortOrFunction: ((String, Int)) -> Bool = { op in
            op.0 == "Function" || op.0 == "PureFunc" || ((op.0 == "Halt" || op.0 == "HaltIfNull") && op.1 == 2)
        }
        let old = try rawQueue(oldPath)
        #expect(try logInsertProgram(old, or: "OR FAIL").contains(where: abortOrFunction), "length() in v3")
        try old.close()

        let migrated = try SQLiteStore(path: oldPath)
        let check = try rawQueue(oldPath)
        defer { try? check.close() }
        // The writer's own statement.
        #expect(try !logInsertProgram(check, sql: StateWriter.insertLogRowSQL).contains(where: abortOrFunction))
        let trigger = try await check.read {
            try String.fetchOne($0, sql: "SELECT sql FROM sqlite_master WHERE name = 'edits_contiguous'")
        }
        #expect(trigger?.contains("RAISE(FAIL") == true)
        try await expectSameStoreAndRules(migrated, as: current, first: first, check: check)
    }

    /// A store made before migration v5 keeps its events without their revision and last version, which are read
    /// from the log: the same state, and the revision moves with annotation edits as before.
    @Test func olderEventRowsLeaveTheirRevisionToTheLog() async throws {
        let dir = try TempDir()
        let (current, first, oldPath) = try await storeAndOlderCopy(
            upTo: "v4-edits-name-annotations-without-statement-journal", in: dir)
        let migrated = try SQLiteStore(path: oldPath)
        let check = try rawQueue(oldPath)
        defer { try? check.close() }
        let columns = try await check.read {
            try String.fetchAll($0, sql: "SELECT name FROM pragma_table_info('events')")
        }
        #expect(columns == ["id", "deleted", "date_start", "date_end", "body"])
        let before = try #require(try await migrated.event(first, asOf: nil)).event.revision
        #expect(try await current.event(first, asOf: nil)?.event.revision == before)
        try await expectSameStoreAndRules(migrated, as: current, first: first, check: check)
        #expect(try await migrated.event(first, asOf: nil)?.event.revision == before + 1)
        let count = try await check.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM events") }
        #expect(count == 28)
    }

    /// A store made before migration v6 kept a row for every annotation; it keeps those of the annotations that
    /// were updated or retracted, and reads every other annotation from its add, as before.
    @Test func olderAnnotationRowsAreKeptOnlyOnceChanged() async throws {
        let dir = try TempDir()
        let (current, first, oldPath) = try await storeAndOlderCopy(
            upTo: "v5-event-revision-read-from-the-log", in: dir)
        func rows(_ path: String) throws -> [String] {
            let db = try rawQueue(path)
            defer { try? db.close() }
            return try db.read { try String.fetchAll($0, sql: "SELECT id FROM annotations ORDER BY id") }
        }
        #expect(try rows(oldPath).count == 50)
        let migrated = try SQLiteStore(path: oldPath)
        let check = try rawQueue(oldPath)
        defer { try? check.close() }
        let changed = try await check.read {
            try String.fetchAll(
                $0,
                sql: """
                    SELECT annotation FROM edits WHERE op = 'annotation.update' OR op = 'annotation.retract'
                    ORDER BY annotation
                    """)
        }
        #expect(changed.count == 2)
        #expect(try rows(oldPath) == changed)
        #expect(try rows(dir.path("current.sqlite")) == changed)
        try await expectSameStoreAndRules(migrated, as: current, first: first, check: check)
    }

    /// A page read off the wire keeps each line's bytes, without the hash member, as the body the hash covers:
    /// the same bodies an encoding of the decoded edits gives, so the replica ends as the source. A line that is
    /// not canonical is refused when it is read; one whose bytes changed does not link.
    @Test(arguments: Backend.allCases)
    func pagesReadFromWireLinesStoreTheLinesAsHashed(backend: Backend) async throws {
        let source = try await backend.make(TempDir())
        _ = try await Importer.loadSample(into: source)
        let first = try #require(try await source.events(matching: EventFilter()).first?.event.id)
        _ = try await source.append((0..<20).map { annotate(first, "note \($0) \"quoted\"\n", base: 0) })
        let lines = try await source.wireEdits(after: 0, limit: 100).map { String(decoding: $0.bytes, as: UTF8.self) }
        func read(_ lines: [String]) throws -> LinkedEdits {
            var reading = LinkedEdits.Reading(capacity: lines.count)
            for line in lines { try reading.append(Substring(line)) }
            return try LinkedEdits(reading)
        }
        let replica = try await backend.make(TempDir(), dataset: source.dataset)
        try await replica.appendVerified(try read(lines))
        #expect(try await replica.head() == source.head())
        #expect(try await replica.stateHash() == source.stateHash())
        #expect(try await replica.verify().ok)
        #expect(try await replica.wireEdits(after: 0, limit: 100) == source.wireEdits(after: 0, limit: 100))

        var spaced = lines
        spaced[35] = spaced[35].replacingOccurrences(of: #"","op":"#, with: #"", "op":"#)
        #expect(throws: TimelineError.self) { try read(spaced) }
        do { _ = try read(spaced) } catch let error as TimelineError {
            #expect(error.code == .badJSON && error.message.contains("not canonical: white space"), "\(error)")
        }
        // Nothing of a refused page reached the replica.
        #expect(try await replica.head() == source.head())
        var changed = lines
        changed[35] = changed[35].replacingOccurrences(of: "note", with: "NOTE")
        #expect(performing: { try read(changed) }, throws: { ($0 as? BatchRejection)?.index == 35 })
    }

    /// A pull links each page off the writer (`LinkedEdits`); the store then checks only the first link. Every
    /// link is still checked by one or the other.
    @Test(arguments: Backend.allCases)
    func linkedPagesAreCheckedAtEveryLink(backend: Backend) async throws {
        let source = try await backend.make(TempDir())
        _ = try await Importer.loadSample(into: source)
        let first = try #require(try await source.events(matching: EventFilter()).first?.event.id)
        _ = try await source.append((0..<20).map { annotate(first, "note \($0)", base: 0) })
        let replica = try await backend.make(TempDir(), dataset: source.dataset)
        try await replica.appendVerified(try LinkedEdits(try await source.edits(after: 0, limit: 30)))
        let rest = try await source.edits(after: 30, limit: 100)
        func corruptAt(_ index: Int) -> (any Error) -> Bool {
            { ($0 as? BatchRejection)?.index == index && ($0 as? BatchRejection)?.error.code == .corrupt }
        }
        // Inside a page, a tampered edit or a gap is refused while linking, at its place.
        var tampered = rest
        tampered[3].proposal.author = "mallory"
        #expect(performing: { try LinkedEdits(tampered) }, throws: corruptAt(3))
        var gap = rest
        gap.remove(at: 2)
        #expect(performing: { try LinkedEdits(gap) }, throws: corruptAt(2))
        // The first edit's link is the store's: a page that skips an edit, or whose first edit was changed (its
        // successors still link to its hash), is refused there, and nothing of it is written.
        let skipping = try LinkedEdits(Array(rest.dropFirst()))
        await #expect(performing: { try await replica.appendVerified(skipping) }, throws: corruptAt(0))
        var changedFirst = rest
        changedFirst[0].proposal.author = "mallory"
        let linked = try LinkedEdits(changedFirst)
        await #expect(performing: { try await replica.appendVerified(linked) }, throws: corruptAt(0))
        #expect(try await replica.currentVersion() == 30)
        try await replica.appendVerified(try LinkedEdits(rest))
        #expect(try await replica.head() == source.head())
        #expect(try await replica.stateHash() == source.stateHash())
        #expect(try await replica.verify().ok)
    }

    @Test(arguments: Backend.allCases)
    func replicasCopyVerifiedEditsAndRefuseAnythingElse(backend: Backend) async throws {
        let source = try await backend.make(TempDir())
        _ = try await Importer.loadSample(into: source)
        let first = try #require(try await source.events(matching: EventFilter()).first?.event.id)
        _ = try await source.append([annotate(first, "replicated")])
        let replica = try await backend.make(TempDir(), dataset: source.dataset)
        var after: Int64 = 0
        while true {
            let page = try await source.edits(after: after, limit: 7)
            if page.isEmpty { break }
            try await replica.appendVerified(page)
            after = page.last!.version
        }
        #expect(try await replica.head() == source.head())
        #expect(try await replica.stateHash() == source.stateHash())
        #expect(try await replica.verify().ok)
        // A tampered edit, a gap, and another dataset's log are all refused, and nothing is written.
        _ = try await source.append([annotate(first, "next", base: 2)])
        var tampered = try await source.edits(after: after, limit: 1)[0]
        tampered.proposal.author = "mallory"
        await #expect { try await replica.appendVerified([tampered]) } throws: {
            ($0 as? BatchRejection)?.error.code == .corrupt
        }
        await #expect { try await replica.appendVerified(try await source.edits(after: 5, limit: 1)) } throws: {
            ($0 as? BatchRejection)?.error.code == .corrupt
        }
        // A correctly chained edit that adds an annotation the replica already holds (a forged upstream).
        let added = try await source.edits(after: after - 1, limit: 1)[0]
        let head = try await replica.head()
        let (again, _) = Edit.chained(
            after: head.hash, version: after + 1, revision: added.revision + 1, proposal: added.proposal)
        await #expect { try await replica.appendVerified([again]) } throws: {
            ($0 as? BatchRejection)?.error.code == .corrupt
        }
        let stranger = try await backend.make(TempDir())
        await #expect { try await stranger.appendVerified(try await source.edits(after: 0, limit: 3)) } throws: {
            ($0 as? BatchRejection)?.error.code == .corrupt
        }
        #expect(try await stranger.currentVersion() == 0)
        #expect(try await replica.currentVersion() == after)
    }

    @Test(arguments: Backend.allCases)
    func badImportAppliesNothing(backend: Backend) async throws {
        let dir = try TempDir()
        let store = try await backend.make(dir)
        _ = try await store.append([create("existing")])
        let good = #"{"op":"event.create","date":"2009","title":"fine"}"#
        let orphan = #"{"op":"annotation.add","event":"01ARZ3NDEKTSV4RRFFQ69G5FAV","text":"to nowhere"}"#
        await #expect {
            _ = try await Importer.load(
                Array("\(good)\n\(good)\n\(orphan)\n".utf8), format: .jsonl, into: store, author: "a", time: t0,
                trusted: false)
        } throws: { error in
            let e = error as? TimelineError
            return e?.code == .notFound && e?.message.hasPrefix("line 3:") == true
        }
        #expect(try await store.currentVersion() == 1)
    }
}
