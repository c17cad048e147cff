import Logging
import NIOConcurrencyHelpers
import NIOCore
import PostgresNIO
import TimelineCore
import TimelineStore

/// One node's writer: group commit on PostgreSQL.
///
/// The invariants, in one place:
/// - One drain at a time runs every appending transaction of this node, one group at a time. Appends that arrive
///   while it is busy wait together and go into the next transaction: one COMMIT, and one WAL flush, for all.
/// - A transaction first locks the head row (FOR UPDATE): every node's writer serialises there, so versions are
///   gapless and in commit order across nodes, and the chain has its previous hash.
/// - Proposals are admitted in memory against the rows the group read (`Admission`), so a refused unit is simply
///   left out of what is written: no savepoints. What the group admitted is written in a handful of set-based
///   statements, whatever its size.
/// - No caller is answered before COMMIT returned, nor before the follower handed the commit to this node's
///   observers. A failed commit answers every unit with the failure and drops the cached rows.
actor PostgresWriter {
    enum Unit: Sendable {
        case proposals([Proposal])
        case linked(LinkedEdits)

        var count: Int {
            switch self {
            case .proposals(let p): p.count
            case .linked(let l): l.edits.count
            }
        }
    }

    struct Request: Sendable {
        var unit: Unit
        var completion: @Sendable (Result<[Edit], Error>) -> Void
    }

    private struct Pending {
        var requests: [Request] = []
        var running = false
    }

    private nonisolated let pending = NIOLockedValueBox(Pending())
    let client: PostgresClient
    let follower: PostgresFollower
    let maxEdits: Int
    let logger: Logger
    /// Rows as the last commit of this node left them, valid while the head is the one it left: a group that finds
    /// another head (another node committed) starts from an empty cache.
    private var cache = RowCache()

    init(client: PostgresClient, follower: PostgresFollower, maxEdits: Int, logger: Logger) {
        self.client = client
        self.follower = follower
        self.maxEdits = maxEdits
        self.logger = logger
    }

    nonisolated func submit(_ unit: Unit, completion: @escaping @Sendable (Result<[Edit], Error>) -> Void) {
        let start = pending.withLockedValue { p in
            p.requests.append(Request(unit: unit, completion: completion))
            if p.running { return false }
            p.running = true
            return true
        }
        if start { Task { await self.drain() } }
    }

    /// For tests: appends made from now on wait (and then commit as one group) until `resume()`.
    nonisolated func hold() -> Bool {
        pending.withLockedValue { p in
            if p.running { return false }
            p.running = true
            return true
        }
    }

    nonisolated func resume() { Task { await self.drain() } }

    nonisolated var queued: Int { pending.withLockedValue { $0.requests.count } }

    private func drain() async {
        while true {
            let group = pending.withLockedValue { p -> [Request] in
                var n = 0
                var edits = 0
                // Always one request, however large; then others while they fit the commit's budget.
                while n < p.requests.count, n == 0 || edits + p.requests[n].unit.count <= maxEdits {
                    edits += p.requests[n].unit.count
                    n += 1
                }
                let group = Array(p.requests.prefix(n))
                p.requests.removeFirst(n)
                if group.isEmpty { p.running = false }
                return group
            }
            if group.isEmpty { return }
            let results = await commit(group)
            for (request, result) in zip(group, results) { request.completion(result) }
        }
    }

    private func commit(_ group: [Request]) async -> [Result<[Edit], Error>] {
        let location = follower.location
        if follower.unreachableSince != nil {
            let failure = PostgresErrors.unreachable(location, doing: "append")
            return group.map { _ in .failure(failure) }
        }
        do {
            let (results, committed, head) = try await PostgresErrors.within(
                follower.timeout, doing: "append", at: location
            ) { [client, logger, cache, follower] in
                try await client.withConnection { conn in
                    try await Self.transaction(conn, group: group, cache: cache, follower: follower, logger: logger)
                }
            }
            cache = committed
            if let head, case let units = results.compactMap({ (try? $0.get()).flatMap { $0.isEmpty ? nil : $0 } }),
                !units.isEmpty
            {
                await follower.deliverLocal(units, head: head)
            }
            return results
        } catch {
            // Nothing of the group is known to be durable: each unit is answered with the failure.
            cache = RowCache()
            follower.cancelReservation()
            let failure = PostgresErrors.map(error, doing: "append", at: location)
            logger.warning("append failed: \(failure)")
            return group.map { _ in .failure(failure) }
        }
    }

    /// One group's transaction on `conn`; returns each unit's result, the rows cache after it, and the new head
    /// (nil when nothing was written).
    private static func transaction(
        _ conn: PostgresConnection, group: [Request], cache: RowCache, follower: PostgresFollower, logger: Logger
    ) async throws -> ([Result<[Edit], Error>], RowCache, ChainHead?) {
        _ = try await conn.query("BEGIN", logger: logger)
        do {
            let start = try await PostgresReads.lockHead(conn, logger: logger)
            var admission = Admission(cache: cache.head == start ? cache : RowCache(head: start))
            try await admission.load(conn, rowsFor: group.map(\.unit), logger: logger)
            var results: [Result<[Edit], Error>] = []
            for request in group {
                do {
                    results.append(.success(try await admission.admit(request.unit, conn, logger: logger)))
                } catch let rejection as BatchRejection {
                    admission.rollbackUnit()
                    results.append(.failure(rejection))
                }
            }
            guard !admission.written.isEmpty else {
                _ = try await conn.query("ROLLBACK", logger: logger)
                return (results, admission.cache, nil)
            }
            try await admission.write(conn, logger: logger)
            follower.reserve(from: admission.written[0].edit.version)
            _ = try await conn.query("COMMIT", logger: logger)
            return (results, admission.committed(), admission.head)
        } catch {
            _ = try? await conn.query("ROLLBACK", logger: logger)
            throw error
        }
    }
}

/// Events and annotations as this node's last commit left them, and the head they are valid at. `nil` values record
/// rows known not to exist.
struct RowCache: Sendable {
    var head: ChainHead?
    var events: [EventID: Event?] = [:]
    var annotations: [AnnotationID: Annotation?] = [:]

    init(head: ChainHead? = nil) { self.head = head }

    /// Kept small: a node that touched a million events over its life does not keep them all.
    mutating func trim() {
        if events.count > 50_000 { events = [:] }
        if annotations.count > 50_000 { annotations = [:] }
    }
}

/// A group's admission, in memory: the rows the group reads, the edits it admits, and a journal per unit so that a
/// refused unit leaves nothing behind.
struct Admission {
    var cache: RowCache
    var head: ChainHead
    /// Edits admitted by the group's accepted units, with their stored bodies.
    var written: [(edit: Edit, body: [UInt8])] = []
    /// Events whose content (not only revision) changed, with their tags before the group.
    var contentChanged: [EventID: [String]?] = [:]
    var touchedEvents: Set<EventID> = []
    var touchedAnnotations: Set<AnnotationID> = []
    var meta: [(String, JSON)] = []
    /// Each event's edits after a revision, read from the log for stale proposals (merge) and for naming who deleted
    /// an event.
    var histories: [EventID: (after: Int64, edits: [Edit])] = [:]

    // The current unit's journal.
    private var undoEvents: [(EventID, Event??)] = []
    private var undoAnnotations: [(AnnotationID, Annotation??)] = []
    private var unitStart = (written: 0, meta: 0, head: ChainHead?.none)

    init(cache: RowCache) {
        self.cache = cache
        head = cache.head!
    }

    /// Reads, in two statements, the rows the group's proposals name that the cache does not hold.
    mutating func load(_ conn: PostgresConnection, rowsFor units: [PostgresWriter.Unit], logger: Logger) async throws {
        var eventIDs = Set<EventID>()
        var annotationIDs = Set<AnnotationID>()
        for unit in units {
            let proposals: [Proposal]
            switch unit {
            case .proposals(let p): proposals = p
            case .linked(let page): proposals = page.edits.map(\.proposal)
            }
            for p in proposals {
                if let id = p.event, cache.events[id] == nil { eventIDs.insert(id) }
                if let id = p.change.annotationID, cache.annotations[id] == nil { annotationIDs.insert(id) }
            }
        }
        for id in eventIDs { cache.events[id] = .some(nil) }
        for id in annotationIDs { cache.annotations[id] = .some(nil) }
        if !eventIDs.isEmpty {
            let ids = eventIDs.map(\.description)
            for try await (revision, body) in try await conn.query(
                "SELECT revision, body FROM events WHERE id = ANY(\(ids))", logger: logger
            ).decode((Int64, String).self) {
                let event = try Event(json: try JSON(parsing: body), revision: revision)
                cache.events[event.id] = event
            }
        }
        if !annotationIDs.isEmpty {
            let ids = annotationIDs.map(\.description)
            for try await body in try await conn.query(
                "SELECT body FROM annotations WHERE id = ANY(\(ids))", logger: logger
            ).decode(String.self) {
                let annotation = try Annotation(json: try JSON(parsing: body))
                cache.annotations[annotation.id] = annotation
            }
        }
    }

    private func event(_ id: EventID) -> Event? { cache.events[id] ?? nil }
    private func annotation(_ id: AnnotationID) -> Annotation? { cache.annotations[id] ?? nil }

    private struct NeedHistory: Error {
        var event: EventID
        var after: Int64
    }

    /// The event's edits after revision `base`: those read from the log, then those this group admitted.
    private func since(_ id: EventID, _ base: Int64) throws -> [Edit] {
        guard let read = histories[id], read.after <= base else { throw NeedHistory(event: id, after: base) }
        return read.edits.filter { $0.revision > base }
            + written.lazy.map(\.edit).filter { $0.event == id && $0.revision > base }
    }

    mutating func admit(_ unit: PostgresWriter.Unit, _ conn: PostgresConnection, logger: Logger) async throws -> [Edit]
    {
        undoEvents = []
        undoAnnotations = []
        unitStart = (written.count, meta.count, head)
        switch unit {
        case .proposals(let batch):
            var out: [Edit] = []
            out.reserveCapacity(batch.count)
            for (index, proposal) in batch.enumerated() {
                let applied: Applied
                while true {
                    do {
                        applied = try Rules.admit(
                            proposal, event: proposal.event.flatMap(event),
                            annotation: proposal.change.annotationID.flatMap(annotation),
                            since: { base in try since(proposal.event!, base) })
                        break
                    } catch let need as NeedHistory {
                        // Read once, then admitted again: the rule is pure.
                        histories[need.event] = (
                            need.after,
                            try await PostgresReads.history(conn, need.event, after: need.after, logger: logger)
                        )
                    } catch let error as TimelineError {
                        throw BatchRejection(index: index, count: batch.count, error: error)
                    }
                }
                let version = head.version + 1
                let (edit, body) = Edit.chained(
                    after: head.hash, version: version, revision: applied.revision, proposal: proposal)
                record(proposal, applied, edit: edit, body: body)
                out.append(edit)
            }
            return out
        case .linked(let page):
            let batch = page.edits
            for (index, edit) in batch.enumerated() {
                func refuse(_ message: String) -> BatchRejection {
                    BatchRejection(index: index, count: batch.count, error: TimelineError(.corrupt, message))
                }
                guard edit.version == head.version + 1 else {
                    throw refuse("edit \(edit.version) does not follow version \(head.version)")
                }
                let body = Array(page.bodies[index])
                if index == 0, SHA256.chain(prefix: head.hash.bytes, body) != edit.hash {
                    throw refuse("edit \(edit.version)'s hash does not follow the chain: the logs have diverged")
                }
                let p = edit.proposal
                let applied: Applied
                do {
                    applied = try Rules.apply(
                        p, event: p.event.flatMap(event), annotation: p.change.annotationID.flatMap(annotation))
                } catch {
                    throw refuse("edit \(edit.version) does not apply: \(error)")
                }
                guard applied.revision == edit.revision else {
                    throw refuse(
                        "edit \(edit.version) says revision \(edit.revision), applying it gives \(applied.revision)")
                }
                record(p, applied, edit: edit, body: body)
            }
            return batch
        }
    }

    private mutating func record(_ p: Proposal, _ applied: Applied, edit: Edit, body: [UInt8]) {
        written.append((edit, body))
        head = ChainHead(version: edit.version, hash: edit.hash)
        if case .setMeta(let set) = p.change {
            for key in set.keys.sorted() { meta.append((key, set[key]!)) }
            return
        }
        guard let e = applied.event else { return }
        let before = event(e.id)
        undoEvents.append((e.id, cache.events[e.id]))
        cache.events[e.id] = .some(e)
        touchedEvents.insert(e.id)
        switch p.change.operation {
        case .eventCreate, .eventUpdate, .eventDelete:
            if contentChanged[e.id] == nil { contentChanged[e.id] = .some(before?.tags) }
        default:
            break
        }
        if let a = applied.annotation {
            undoAnnotations.append((a.id, cache.annotations[a.id]))
            cache.annotations[a.id] = .some(a)
            touchedAnnotations.insert(a.id)
        }
    }

    /// Takes back everything the refused unit recorded. Touched sets may keep its IDs: their rows are written as the
    /// cache holds them, which is as before the unit.
    mutating func rollbackUnit() {
        for (id, value) in undoEvents.reversed() { cache.events[id] = value }
        for (id, value) in undoAnnotations.reversed() { cache.annotations[id] = value }
        written.removeSubrange(unitStart.written...)
        meta.removeSubrange(unitStart.meta...)
        if let saved = unitStart.head { head = saved }
        undoEvents = []
        undoAnnotations = []
    }

    /// The cache after COMMIT: valid at the new head.
    func committed() -> RowCache {
        var out = cache
        out.head = head
        out.trim()
        return out
    }

    /// Writes the group: the log rows, the events and annotations as they now stand, the tags of events whose content
    /// changed, the metadata, and the head (whose update notifies the other nodes on commit).
    func write(_ conn: PostgresConnection, logger: Logger) async throws {
        let edits = written
        _ = try await conn.query(
            """
            INSERT INTO edits (version, event, revision, op, annotation, body, hash)
            SELECT v, NULLIF(e, ''), r, o, NULLIF(a, ''), b, h
            FROM unnest(\(edits.map(\.edit.version)), \(edits.map { $0.edit.event?.description ?? "" }),
                        \(edits.map(\.edit.revision)), \(edits.map(\.edit.operation.rawValue)),
                        \(edits.map { $0.edit.change.annotationID?.description ?? "" }),
                        \(edits.map { String(decoding: $0.body, as: UTF8.self) }),
                        \(edits.map { ByteBuffer(bytes: $0.edit.hash.bytes) })) AS u(v, e, r, o, a, b, h)
            """, logger: logger)
        let events = touchedEvents.compactMap { cache.events[$0] ?? nil }
        if !events.isEmpty {
            _ = try await conn.query(
                """
                INSERT INTO events (id, revision, deleted, date_start, date_end, body)
                SELECT i, r, d, NULLIF(s, ''), NULLIF(e, ''), b
                FROM unnest(\(events.map(\.id.description)), \(events.map(\.revision)), \(events.map(\.deleted)),
                            \(events.map { $0.date.start?.iso ?? "" }), \(events.map { $0.date.end?.iso ?? "" }),
                            \(events.map(\.contentJSON.canonicalString))) AS u(i, r, d, s, e, b)
                ON CONFLICT (id) DO UPDATE SET revision = excluded.revision, deleted = excluded.deleted,
                    date_start = excluded.date_start, date_end = excluded.date_end, body = excluded.body
                """, logger: logger)
        }
        let retagged = contentChanged.keys.compactMap { cache.events[$0] ?? nil }
        if !retagged.isEmpty {
            // Rewritten whole for each event whose content changed: its tags or its date (which the tag rows carry
            // for LOG's order) may have moved.
            _ = try await conn.query(
                "DELETE FROM event_tags WHERE event = ANY(\(retagged.map(\.id.description)))", logger: logger)
            var tags: [String] = []
            var owners: [String] = []
            var starts: [String] = []
            for e in retagged {
                for tag in e.tags {
                    tags.append(tag)
                    owners.append(e.id.description)
                    starts.append(e.date.start?.iso ?? "")
                }
            }
            if !tags.isEmpty {
                _ = try await conn.query(
                    """
                    INSERT INTO event_tags (tag, event, date_start)
                    SELECT t, e, NULLIF(s, '') FROM unnest(\(tags), \(owners), \(starts)) AS u(t, e, s)
                    """, logger: logger)
            }
        }
        let annotations = touchedAnnotations.compactMap { cache.annotations[$0] ?? nil }
        if !annotations.isEmpty {
            _ = try await conn.query(
                """
                INSERT INTO annotations (id, event, retracted, body)
                SELECT i, e, r, b FROM unnest(\(annotations.map(\.id.description)),
                    \(annotations.map(\.event.description)), \(annotations.map(\.retracted)),
                    \(annotations.map { String(decoding: $0.canonicalBytes, as: UTF8.self) })) AS u(i, e, r, b)
                ON CONFLICT (id) DO UPDATE SET event = excluded.event, retracted = excluded.retracted,
                    body = excluded.body
                """, logger: logger)
        }
        for (key, value) in meta {
            if value.isNull {
                _ = try await conn.query("DELETE FROM timeline_meta WHERE key = \(key)", logger: logger)
            } else {
                _ = try await conn.query(
                    """
                    INSERT INTO timeline_meta (key, value) VALUES (\(key), \(value.canonicalString))
                    ON CONFLICT (key) DO UPDATE SET value = excluded.value
                    """, logger: logger)
            }
        }
        // The head, checked by its trigger against the log; the NOTIFY is delivered on COMMIT, to every node
        // listening, with the new version only (a payload must stay small; the edits are read from the log).
        _ = try await conn.query(
            """
            UPDATE timeline_head SET version = \(head.version), hash = \(ByteBuffer(bytes: head.hash.bytes))
            RETURNING pg_notify('\(unescaped: PostgresStore.channel)', version::text)
            """, logger: logger)
    }
}

extension PostgresWriter {
    /// Copies another store's whole log into this empty database in one transaction, a page at a time: all of it,
    /// verified link by link and applied, or nothing. For `timelined migrate`, before any node serves the database.
    func copyAll(from source: any TimelineStore, pageSize: Int) async throws -> ChainHead {
        try await client.withConnection { [logger] conn in
            _ = try await conn.query("BEGIN", logger: logger)
            do {
                let start = try await PostgresReads.lockHead(conn, logger: logger)
                guard start.version == 0 else {
                    throw TimelineError(
                        .wrongDataset,
                        "the database holds a timeline already (version \(start.version)); migrate into an empty one")
                }
                var cache = RowCache(head: start)
                var after: Int64 = 0
                while true {
                    let page = try await source.edits(after: after, limit: pageSize)
                    guard let last = page.last else { break }
                    let linked = try LinkedEdits(page)
                    var admission = Admission(cache: cache)
                    try await admission.load(conn, rowsFor: [.linked(linked)], logger: logger)
                    _ = try await admission.admit(.linked(linked), conn, logger: logger)
                    try await admission.write(conn, logger: logger)
                    cache = admission.committed()
                    after = last.version
                }
                _ = try await conn.query("COMMIT", logger: logger)
                return cache.head ?? start
            } catch {
                _ = try? await conn.query("ROLLBACK", logger: logger)
                throw error
            }
        }
    }
}
