import Foundation
import Synchronization
import Testing
import TimelineCore

@testable import TimelinePostgres
@testable import TimelineStore

/// What only the PostgreSQL store has: a schema that guards the log against anyone with `psql`, several nodes on one
/// database, and a database that is not there. The rest is the conformance suite's, run on both stores.
@Suite struct PostgresStoreTests {
    @Test func theSchemaRefusesChangesToTheLogAndAWrongHead() async throws {
        let dir = try TempDir()
        let store = try await Backend.postgres.make(dir)
        _ = try await Importer.loadSample(into: store)
        let location = try await TestPostgres.database(dir.database)
        for sql in [
            "UPDATE edits SET body = body WHERE version = 5", "DELETE FROM edits WHERE version = 29",
            "TRUNCATE edits CASCADE", "DELETE FROM timeline_head", "UPDATE timeline_head SET version = 3",
            "UPDATE timeline_head SET version = 30",
            "INSERT INTO edits (version, event, revision, op, body, hash) SELECT 31, event, 9, op, body, hash FROM edits WHERE version = 2",
        ] {
            await #expect(throws: (any Error).self, "\(sql)") { try await TestPostgres.execute(location, sql) }
        }
        #expect(try await store.verify().ok)
        #expect(try await store.currentVersion() == 29)
    }

    @Test func verifyReportsTheFirstTamperedVersion() async throws {
        let dir = try TempDir()
        let store = try await Backend.postgres.make(dir)
        _ = try await Importer.loadSample(into: store)
        #expect(try await store.verify().ok)
        let location = try await TestPostgres.database(dir.database)
        // Someone with the database edits the log: they must drop the append-only trigger first.
        try await TestPostgres.execute(location, "DROP TRIGGER edits_append_only ON edits")
        try await TestPostgres.execute(
            location, "UPDATE edits SET body = replace(body, 'Washington', 'Tokyo') WHERE version = 6")
        let report = try await store.verify()
        #expect(!report.ok)
        #expect(report.firstBadVersion == 6)
        // The materialized state tampered alone is caught too.
        let dir2 = try TempDir()
        let store2 = try await Backend.postgres.make(dir2)
        _ = try await Importer.loadSample(into: store2)
        try await TestPostgres.execute(
            try await TestPostgres.database(dir2.database), "UPDATE events SET body = replace(body, 'Tokyo', 'Osaka')")
        let report2 = try await store2.verify()
        #expect(report2.problems.contains { $0.contains("differs from the log") }, "\(report2)")
    }

    /// Two nodes (two stores) on one database, written at once: one gapless sequence, one chain, and each node's
    /// observers see every edit, the other node's included, once and in order.
    @Test func twoNodesShareOneLogAndSeeEachOthersCommits() async throws {
        let dir = try TempDir()
        let a = try await Backend.postgres.make(dir)
        let b = try await Backend.postgres.make(dir)
        #expect(a.dataset == b.dataset)
        let event = create("shared")
        _ = try await a.append([event])
        // Observers get what a node hands over from when they are added: let b take in version 1 first.
        while try await b.head().version < 1 { try await Task.sleep(for: .milliseconds(5)) }
        let seenA = Mutex<[Int64]>([])
        let seenB = Mutex<[Int64]>([])
        a.observeCommits { units in seenA.withLock { $0 += units.flatMap { $0.map(\.version) } } }
        b.observeCommits { units in seenB.withLock { $0 += units.flatMap { $0.map(\.version) } } }
        let versions = try await withThrowingTaskGroup(of: [Int64].self) { group in
            for writer in 0..<8 {
                let store = writer % 2 == 0 ? a : b
                group.addTask {
                    var mine: [Int64] = []
                    for n in 0..<25 {
                        mine += try await store.append([annotate(event.event!, "w\(writer) n\(n)", base: 0)]).map(
                            \.version)
                    }
                    return mine
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
        #expect(versions.sorted() == Array(2...201))
        // Each node hears of the other's commits by NOTIFY (or its poll): wait until both have seen the last.
        let deadline = ContinuousClock.now + .seconds(30)
        while (seenA.withLock { $0.last } != 201 || seenB.withLock { $0.last } != 201) && ContinuousClock.now < deadline
        {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(seenA.withLock { $0 } == Array(2...201))
        #expect(seenB.withLock { $0 } == Array(2...201))
        #expect(try await a.head() == b.head())
        let (ra, rb) = (try await a.verify(), try await b.verify())
        #expect(ra.ok && rb.ok, "\(ra) \(rb)")
        #expect(ra.stateHash == rb.stateHash && ra.headHash == rb.headHash)
        #expect(try await a.wireEdits(after: 0, limit: 500) == b.wireEdits(after: 0, limit: 500))
        #expect(try await a.event(event.event!, asOf: nil)?.annotations.count == 200)
    }

    /// Requests submitted at once on one node keep their order when another node's commits cut in (the node's group
    /// is then admitted again under the lock). Each annotation here is retracted by the request submitted right
    /// after its add, without waiting for it: a retraction admitted before its add would be refused, and one written
    /// in the same group as its add must be stored retracted.
    @Test func requestsSubmittedAtOnceKeepTheirOrderWhenAnotherNodeCutsIn() async throws {
        let dir = try TempDir()
        let a = try await Backend.postgres.make(dir)
        let b = try await Backend.postgres.make(dir)
        let event = create("busy")
        _ = try await a.append([event])
        let id = event.event!
        while try await b.head().version < 1 { try await Task.sleep(for: .milliseconds(5)) }
        let seenA = Mutex<[Int64]>([])
        a.observeCommits { units in seenA.withLock { $0 += units.flatMap { $0.map(\.version) } } }
        let answers = Answers()
        let pairs = 300
        let fromB = try await withThrowingTaskGroup(of: Int.self) { group in
            for writer in 0..<4 {
                group.addTask {
                    var n = 0
                    while answers.results.withLock({ $0.count }) < 2 * pairs {
                        _ = try await b.append([annotate(id, "b\(writer) \(n)", base: 0)])
                        n += 1
                    }
                    return n
                }
            }
            group.addTask {
                for k in 0..<pairs {
                    let add = annotate(id, "a \(k)", base: 0)
                    let retract = Proposal(
                        event: id, change: .retractAnnotation(add.change.annotationID!), base: 0, author: "ana",
                        time: t0)
                    for proposal in [add, retract] {
                        a.append([proposal]) { result in answers.results.withLock { $0.append(result) } }
                    }
                    if k % 4 == 0 { try await Task.sleep(for: .microseconds(300)) }
                }
                let deadline = ContinuousClock.now + .seconds(60)
                while answers.results.withLock({ $0.count }) < 2 * pairs && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(10))
                }
                return 0
            }
            return try await group.reduce(0, +)
        }
        let results = answers.results.withLock { $0 }
        #expect(results.count == 2 * pairs)
        let refused = results.compactMap { result -> String? in
            if case .failure(let error) = result { return "\(error)" }
            return nil
        }
        #expect(refused.isEmpty, "\(refused.prefix(3))")
        let head = Int64(1 + 2 * pairs + fromB)
        let deadline = ContinuousClock.now + .seconds(60)
        for node in [a, b] {
            while try await node.head().version < head && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
            }
            #expect(try await node.head().version == head)
        }
        while seenA.withLock({ $0.last }) != head && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(seenA.withLock { $0 } == Array(2...head))
        let (ra, rb) = (try await a.verify(), try await b.verify())
        #expect(ra.ok && rb.ok && ra.stateHash == rb.stateHash, "\(ra) \(rb)")
        let annotations = try #require(try await b.event(id, asOf: nil)).annotations
        let standing = annotations.filter { $0.text.hasPrefix("a ") && !$0.retracted }
        #expect(standing.isEmpty, "\(standing.count) of this node's annotations still stand")
    }

    /// A node whose commits keep finding the other's before them writes in its turn (an advisory lock its session
    /// holds from reading the head until its append commits). A turn that writes nothing, because every unit was
    /// refused or an added ID was taken, ends too: the other node's next append goes through, and no session is left
    /// holding the lock.
    @Test func aTurnThatWritesNothingEndsAllTheSame() async throws {
        let dir = try TempDir()
        let a = try await Backend.postgres.make(dir)
        let b = try await Backend.postgres.make(dir)
        let event = create("turns")
        _ = try await a.append([event])
        let id = event.event!
        let taken = annotate(id, "first", base: 0)
        _ = try await a.append([taken])
        for round in 0..<3 {
            // b finds a's commit before its own each time: it takes its turn.
            _ = try await b.append([annotate(id, "b \(round)", base: 0)])
            _ = try await a.append([annotate(id, "a \(round)", base: 0)])
            await #expect("a unit refused by the rules") {
                _ = try await b.append([
                    Proposal(
                        event: EventID(ULID.generate(at: t0)), change: .updateEvent(EventPatch(title: "none")), base: 1,
                        author: "ana", time: t0)
                ])
            } throws: { ($0 as? BatchRejection)?.error.code == .notFound }
            _ = try await a.append([annotate(id, "a again \(round)", base: 0)])
            await #expect("an annotation ID added before") {
                _ = try await b.append([taken])
            } throws: { ($0 as? BatchRejection)?.error.code == .duplicateID }
            _ = try await a.append([annotate(id, "a last \(round)", base: 0)])
        }
        let location = try await TestPostgres.database(dir.database)
        let held = try await TestPostgres.count(
            location,
            """
            SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
            WHERE l.locktype = 'advisory' AND d.datname = current_database()
            """)
        #expect(held == 0)
        let (ra, rb) = (try await a.verify(), try await b.verify())
        #expect(ra.ok && rb.ok && ra.stateHash == rb.stateHash, "\(ra) \(rb)")
        #expect(try await a.head().version == 2 + 3 * 4)
    }

    /// The follower reads the log past its cursor at every poll, stopping below what the writer reserved; the writer
    /// may reserve and commit while such a read is under way. What it committed is still handed over by the writer,
    /// one array per append, and not inside the read's page. Polled every millisecond here, on one pooled
    /// connection, so that reads keep waiting for the writer's commits.
    @Test func pollsWhileTheWriterCommitsLeaveItsAppendsWhole() async throws {
        let dir = try TempDir()
        var options = TestPostgres.options
        options.pollInterval = .milliseconds(1)
        // One connection: a read waits for the writer's, and starts once the writer has committed.
        options.maxConnections = 1
        let store = try await PostgresStore.open(
            try await TestPostgres.database(dir.database), password: nil, options: options)
        let event = create("polled")
        _ = try await store.append([event])
        let seen = Mutex<[[Int]]>([])
        store.observeCommits { units in seen.withLock { $0.append(units.map(\.count)) } }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<8 {
                group.addTask {
                    for n in 0..<60 {
                        let unit = (0...(n % 2)).map { annotate(event.event!, "w\(writer) n\(n) \($0)", base: 0) }
                        _ = try await store.append(unit)
                    }
                }
            }
            try await group.waitForAll()
        }
        let units = seen.withLock { $0.flatMap { $0 } }
        #expect(units.count == 8 * 60, "\(units.filter { $0 > 2 }.prefix(5)) among \(units.count) arrays")
        #expect(units.allSatisfy { $0 == 1 || $0 == 2 })
        await store.close()
    }

    /// A stale proposal on one node merges with what the other node committed since its base.
    @Test func aStaleEditMergesWithTheOtherNodesEdits() async throws {
        let dir = try TempDir()
        let a = try await Backend.postgres.make(dir)
        let b = try await Backend.postgres.make(dir)
        let e = create("title", tags: ["x"])
        _ = try await a.append([e])
        _ = try await a.append([
            Proposal(event: e.event!, change: .updateEvent(EventPatch(title: "by a")), base: 1, author: "ana", time: t0)
        ])
        // b's update was made at revision 1: a different field merges, the same field conflicts.
        let merged = try await b.append([
            Proposal(
                event: e.event!, change: .updateEvent(EventPatch(summary: "by b")), base: 1, author: "ben", time: t0)
        ])
        #expect(merged.map(\.revision) == [3])
        await #expect {
            _ = try await b.append([
                Proposal(
                    event: e.event!, change: .updateEvent(EventPatch(title: "also b")), base: 1, author: "ben", time: t0
                )
            ])
        } throws: { ($0 as? BatchRejection)?.error.code == .conflict }
        let now = try #require(try await b.event(e.event!, asOf: nil)).event
        #expect(now.title == "by a" && now.summary == "by b")
    }

    /// A database whose nodes wrote a row for every annotation (before Schema v5) keeps rows only for the changed
    /// ones once a node of this version opens it, and reads, verifies and hashes as before.
    @Test func olderAnnotationRowsAreKeptOnlyOnceChanged() async throws {
        let dir = try TempDir()
        let store = try await Backend.postgres.make(dir)
        _ = try await Importer.loadSample(into: store)
        let event = try #require(try await store.events(matching: EventFilter()).first?.event.id)
        let adds = (0..<20).map { annotate(event, "note \($0)", base: 0) }
        _ = try await store.append(adds)
        let (kept, gone) = (adds[3].change.annotationID!, adds[7].change.annotationID!)
        _ = try await store.append([
            Proposal(
                event: event, change: .updateAnnotation(kept, AnnotationPatch(text: "changed")), base: 0,
                author: "ana", time: t0),
            Proposal(event: event, change: .retractAnnotation(gone), base: 0, author: "ana", time: t0),
        ])
        let before = try await store.verify()
        let view = try #require(try await store.event(event, asOf: nil))
        #expect(before.ok, "\(before)")
        await (store as? PostgresStore)?.close()
        // As an older node left it: a row for every annotation, and the index and function it had.
        let location = try await TestPostgres.database(dir.database)
        let rows = view.annotations.map { a in
            "('\(a.id)', '\(a.event)', \(a.retracted), '\(String(decoding: a.canonicalBytes, as: UTF8.self))')"
        }
        for sql in [
            "DELETE FROM timeline_migrations WHERE name = 'v5-annotation-rows-only-once-changed'",
            "CREATE INDEX annotations_by_event ON annotations (event, id)",
            "INSERT INTO annotations (id, event, retracted, body) VALUES \(rows.joined(separator: ",")) "
                + "ON CONFLICT (id) DO NOTHING",
            PostgresSchema.appendV3.replacing("CREATE FUNCTION", with: "CREATE OR REPLACE FUNCTION"),
        ] {
            try await TestPostgres.execute(location, sql)
        }
        let older = try await TestPostgres.count(location, "SELECT count(*) FROM annotations")
        #expect(older == view.annotations.count)
        let migrated = try await Backend.postgres.make(dir)
        #expect(try await TestPostgres.count(location, "SELECT count(*) FROM annotations") == 2)
        let after = try await migrated.verify()
        #expect(after.ok, "\(after)")
        #expect(after.stateHash == before.stateHash && after.headHash == before.headHash)
        #expect(try await migrated.event(event, asOf: nil) == view)
        // Written from now on: an add gets no row, a change does.
        let more = annotate(event, "after", base: 0)
        _ = try await migrated.append([more])
        _ = try await migrated.append([
            Proposal(
                event: event, change: .retractAnnotation(more.change.annotationID!), base: 0, author: "ana", time: t0)
        ])
        #expect(try await TestPostgres.count(location, "SELECT count(*) FROM annotations") == 3)
        #expect(try await migrated.verify().ok)
    }

    @Test func anUnreachableDatabaseIsStoreUnavailableAtOnce() async throws {
        var location = try TestPostgres.admin
        // A loopback port nobody listens on.
        location.port = 1
        var options = TestPostgres.options
        options.timeout = .seconds(5)
        let started = ContinuousClock.now
        await #expect {
            _ = try await PostgresStore.open(location, password: nil, options: options)
        } throws: { error in
            let e = error as? TimelineError
            return e?.code == .storeUnavailable && e?.message.contains("127.0.0.1:1") == true
        }
        #expect(ContinuousClock.now - started < .seconds(30))
    }

    @Test func aURLIsParsedAndAPasswordInItRefused() throws {
        let l = try PostgresLocation(url: "postgresql://tl@db.example:5433/timeline?sslmode=require")
        #expect(l == PostgresLocation(user: "tl", host: "db.example", port: 5433, database: "timeline", tls: .require))
        #expect(l.description == "postgresql://tl@db.example:5433/timeline?sslmode=require")
        #expect(throws: TimelineError.self) { try PostgresLocation(url: "postgresql://tl:secret@db/timeline") }
        #expect(throws: TimelineError.self) { try PostgresLocation(url: "postgresql://db/timeline") }
        #expect(throws: TimelineError.self) { try PostgresLocation(url: "postgresql://tl@db/") }
        #expect(throws: TimelineError.self) { try PostgresLocation(url: "mysql://tl@db/timeline") }
        #expect(throws: TimelineError.self) { try PostgresLocation(url: "postgresql://tl@db/t?sslmode=maybe") }
    }
}

/// Answers collected from completion callbacks (a class: a task group's tasks share it).
private final class Answers: Sendable {
    let results = Mutex<[Result<[Edit], Error>]>([])
}
