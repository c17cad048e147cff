import CoreMetrics
import Foundation
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
        /// The drain waiting for `target` requests to gather (`gather`).
        var waiter: CheckedContinuation<Void, Never>?
        var target = 0

        /// The waiter, taken, once enough requests wait (or `force`).
        mutating func takeWaiter(force: Bool = false) -> CheckedContinuation<Void, Never>? {
            guard let waiter, force || requests.count >= target else { return nil }
            self.waiter = nil
            return waiter
        }
    }

    private nonisolated let pending = NIOLockedValueBox(Pending())
    /// Edits per commit (`timeline_commit_edits`, a histogram when metrics are exported).
    private let groupSize = Recorder(label: "timeline_commit_edits")
    let client: PostgresClient
    let follower: PostgresFollower
    let maxEdits: Int
    let logger: Logger
    /// Rows as the last commit of this node left them, valid while the head is the one it left: a group that finds
    /// another head (another node committed) starts from an empty cache.
    private var cache = RowCache()
    /// Whether another node wrote during this node's last group: groups then take the head's lock first.
    private var contended = false

    init(client: PostgresClient, follower: PostgresFollower, maxEdits: Int, logger: Logger) {
        self.client = client
        self.follower = follower
        self.maxEdits = maxEdits
        self.logger = logger
    }

    nonisolated func submit(_ unit: Unit, completion: @escaping @Sendable (Result<[Edit], Error>) -> Void) {
        let (start, waiter) = pending.withLockedValue { p in
            p.requests.append(Request(unit: unit, completion: completion))
            if p.running { return (false, p.takeWaiter()) }
            p.running = true
            return (true, nil)
        }
        waiter?.resume()
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
        var last: (size: Int, took: Duration)?
        while true {
            // Everyone answered last time (`last.size`, those that were waiting included) will want to be in the next
            // group: wait a little for most of them. While other nodes write too, waiting for the turn does that.
            if let last, last.size > 1, !contended {
                await gather(last.size * 3 / 4, within: min(last.took / 2, .milliseconds(2)))
            }
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
            let started = ContinuousClock.now
            let answers = await commit(group)
            let edits = answers.reduce(0) { $0 + ((try? $1.1.get())?.count ?? 0) }
            if edits > 0 { groupSize.record(edits) }
            let waiting = pending.withLockedValue { $0.requests.count }
            last = (answers.count + waiting, ContinuousClock.now - started)
            for (request, result) in answers { request.completion(result) }
        }
    }

    /// Waits, at most `time`, until `count` appends are waiting. A group's callers are answered together and
    /// send their next edits together: without this, the first of them found the writer idle and went alone,
    /// the rest waited for it and went next, and groups alternated between one edit and all the others (a
    /// group's cost is mostly its round trip and the commit's WAL flush, whatever its size). PostgreSQL's own
    /// commit_delay does the same for its backends.
    private func gather(_ count: Int, within time: Duration) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let now = pending.withLockedValue { p -> Bool in
                if p.requests.count >= count { return true }
                p.waiter = continuation
                p.target = count
                return false
            }
            if now { return continuation.resume() }
            Task { [pending] in
                try? await Task.sleep(for: time)
                pending.withLockedValue { $0.takeWaiter(force: true) }?.resume()
            }
        }
    }

    /// Takes waiting requests that fit in `budget` edits: a group that waited for the head's lock takes in what
    /// arrived meanwhile, so that the wait serves as batching rather than as lost time.
    private nonisolated func takeMore(budget: Int) -> [Request] {
        pending.withLockedValue { p in
            var n = 0
            var edits = 0
            while n < p.requests.count, edits + p.requests[n].unit.count <= budget {
                edits += p.requests[n].unit.count
                n += 1
            }
            defer { p.requests.removeFirst(n) }
            return Array(p.requests.prefix(n))
        }
    }

    /// Commits a group (and what it took in while it waited for the lock); every request with its answer.
    private func commit(_ first: [Request]) async -> [(Request, Result<[Edit], Error>)] {
        let location = follower.location
        if follower.isUnreachable {
            let failure = PostgresErrors.unreachable(location, doing: "append")
            return first.map { ($0, .failure(failure)) }
        }
        let taken = NIOLockedValueBox<[Request]>([])
        let budget = maxEdits - first.reduce(0) { $0 + $1.unit.count }
        let more: @Sendable () -> [Request] = { [weak self] in
            let extra = self?.takeMore(budget: budget) ?? []
            taken.withLockedValue { $0 += extra }
            return extra
        }
        do {
            // Handed over, not copied: the admission then changes the cache's dictionaries in place (a copy made
            // each group cost more than the group's own work once the cache held thousands of rows).
            let box = CacheBox(cache)
            cache = RowCache()
            let wasContended = contended
            let (group, results, committed, head, others) = try await PostgresErrors.within(
                follower.timeout, doing: "append", at: location
            ) { [client, logger, follower] in
                try await client.withConnection { conn in
                    try await Self.transaction(
                        conn, group: first, more: more, cache: box.take(), contended: wasContended, follower: follower,
                        logger: logger)
                }
            }
            cache = committed
            contended = others
            if let head, case let units = results.compactMap({ (try? $0.get()).flatMap { $0.isEmpty ? nil : $0 } }),
                !units.isEmpty
            {
                await follower.deliverLocal(units, head: head)
            }
            return Array(zip(group, results))
        } catch {
            // Nothing of the group is known to be durable: each unit is answered with the failure.
            cache = RowCache()
            follower.cancelReservation()
            let failure = PostgresErrors.map(error, doing: "append", at: location)
            logger.warning("append failed: \(failure)")
            return (first + taken.withLockedValue { $0 }).map { ($0, .failure(failure)) }
        }
    }

    /// One group on `conn`: each unit's result, the rows cache after it, the new head (nil when nothing was
    /// written), and whether another node is writing too.
    ///
    /// Alone, a writer's cache knows the head (its own last commit): it admits the group against it and sends it
    /// as one statement, which writes only if the head is still that one. When another node committed meanwhile,
    /// the group is admitted again under the head's lock, and while other nodes keep writing, groups go straight
    /// there: admitting against a head that moves would fail again. Under the lock, the rows other nodes changed
    /// since the cache's head (read from the log's IDs) are forgotten and read again when named, the rest kept.
    private static func transaction(
        _ conn: PostgresConnection, group: [Request], more: @Sendable () -> [Request], cache start: consuming RowCache,
        contended: Bool, follower: PostgresFollower, logger: Logger
    ) async throws -> ([Request], [Result<[Edit], Error>], RowCache, ChainHead?, contended: Bool) {
        // Moved, not copied: the admission changes the cache's dictionaries in place, and a second reference to
        // them would copy them whole at its first change.
        var cache = consume start
        if let known = cache.head, !contended {
            var admission = Admission(taking: &cache)
            try await admission.load(conn, rowsFor: group.map(\.unit), addsToo: false, logger: logger)
            let results = try await admission.admitAll(group, conn, logger: logger)
            guard !admission.written.isEmpty else { return (group, results, admission.committed(), nil, false) }
            follower.reserve(from: admission.written[0].edit.version)
            var moved = false
            do {
                if try await admission.write(conn, expected: known.version, logger: logger) {
                    return (group, results, admission.committed(), admission.head, false)
                }
                moved = true
            } catch let error as PSQLError where error.serverInfo?[.sqlState] == "23505" {
                // A unique index refused the group (an annotation ID added before): nothing was written.
            }
            follower.cancelReservation()
            return try await locked(
                conn, group: group, more: more, cache: admission.forgettingGroup(at: known), addsToo: !moved,
                follower: follower, logger: logger)
        }
        return try await locked(
            conn, group: group, more: more, cache: consume cache, addsToo: false, follower: follower, logger: logger)
    }

    /// The group admitted and written in this node's turn (`PostgresReads.takeTurn`), which its append ends. Without
    /// `addsToo` the annotations that adds create are taken not to exist; if one does, the append fails on the log's
    /// unique index, and the group is admitted again with them read.
    private static func locked(
        _ conn: PostgresConnection, group first: [Request], more: @Sendable () -> [Request],
        cache start: consuming RowCache, addsToo: Bool, follower: PostgresFollower, logger: Logger
    ) async throws -> ([Request], [Result<[Edit], Error>], RowCache, ChainHead?, contended: Bool) {
        var group = first
        var cache = consume start
        do {
            let known = cache.head?.version ?? Int64.max
            let (head, changes) = try await PostgresReads.takeTurn(
                conn, changesAfter: known, wait: follower.timeout / 2, logger: logger)
            var others = false
            if known <= head.version, head.version - known <= 10_000 {
                others = known < head.version
                cache.apply(changes)
                cache.head = head
            } else {
                cache = RowCache(head: head)
            }
            // What arrived while this node waited for its turn joins the group.
            group += more()
            var admission = Admission(taking: &cache)
            try await admission.load(conn, rowsFor: group.map(\.unit), addsToo: addsToo, logger: logger)
            let results = try await admission.admitAll(group, conn, logger: logger)
            guard !admission.written.isEmpty else {
                try await PostgresReads.endTurn(conn, logger: logger)
                return (group, results, admission.committed(), nil, others)
            }
            follower.reserve(from: admission.written[0].edit.version)
            guard try await admission.write(conn, expected: head.version, logger: logger) else {
                throw TimelineError(.corrupt, "the head moved during this node's turn")
            }
            return (group, results, admission.committed(), admission.head, others)
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "23505" && !addsToo {
            // Nothing was written; the append ended the turn all the same (a session's advisory lock is not undone
            // with its transaction), so the group is admitted again in a new one.
            follower.cancelReservation()
            return try await locked(
                conn, group: group, more: { [] }, cache: RowCache(), addsToo: true, follower: follower, logger: logger)
        } catch {
            try? await PostgresReads.endTurn(conn, logger: logger)
            throw error
        }
    }
}

/// Moves a cache into a group's task without a second reference to its storage.
final class CacheBox: @unchecked Sendable {
    private var value: RowCache
    init(_ value: RowCache) { self.value = value }
    /// Called once, by the one task that uses the box.
    func take() -> RowCache {
        defer { value = RowCache() }
        return value
    }
}

/// Events and annotations as this node's last commit left them, and the head they are valid at. `nil` values record
/// rows known not to exist.
struct RowCache: Sendable {
    var head: ChainHead?
    var events: [EventID: Event?] = [:]
    var annotations: [AnnotationID: Annotation?] = [:]

    init(head: ChainHead? = nil) { self.head = head }

    /// Brings the cache from its head to the one other nodes' edits (`changes`, in version order) left: an annotation
    /// edit only moves its event's revision, which is set; an event edit's row, and a changed annotation's, are
    /// forgotten (read again when named).
    mutating func apply(_ changes: [(event: EventID?, op: String, annotation: AnnotationID?, revision: Int64)]) {
        for change in changes {
            guard let id = change.event else { continue }
            if change.op.hasPrefix("annotation."), let cached = events[id], var event = cached {
                event.revision = change.revision
                events[id] = .some(event)
            } else {
                events[id] = nil
            }
            if let annotation = change.annotation { annotations[annotation] = nil }
        }
    }

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
    /// Events whose content (not only their revision) changed: their rows and tag rows are written again.
    var contentChanged: Set<EventID> = []
    var touchedAnnotations: Set<AnnotationID> = []
    /// Annotations updated or retracted: only these get a row (Schema, v5), as they now stand.
    var changedAnnotations: Set<AnnotationID> = []
    var touchedEvents: Set<EventID> = []
    /// Annotations this group added: known to the group (a second add of one is refused), but not kept in the cache
    /// after it, since most annotations are never changed.
    var added: [AnnotationID: Annotation] = [:]
    var meta: [(String, JSON)] = []
    /// Each event's edits after a revision, read from the log for stale proposals (merge) and for naming who deleted
    /// an event.
    var histories: [EventID: (after: Int64, edits: [Edit])] = [:]

    // The current unit's journal.
    private var undoEvents: [(EventID, Event??)] = []
    private var undoAnnotations: [(AnnotationID, Annotation??)] = []
    private var undoAdded: [AnnotationID] = []
    private var undoAddedChanges: [(AnnotationID, Annotation)] = []
    private var undoChanged: [AnnotationID] = []
    private var unitStart = (written: 0, meta: 0, head: ChainHead?.none)

    init(cache: RowCache) {
        self.cache = cache
        head = cache.head!
    }

    /// Takes `cache` over, leaving an empty one: the only reference to its dictionaries is then this admission's,
    /// which changes them in place.
    init(taking cache: inout RowCache) {
        self.cache = RowCache()
        swap(&self.cache, &cache)
        head = self.cache.head!
    }

    /// Admits each request's unit in turn; a refused unit is taken back and answered with its refusal.
    mutating func admitAll(_ group: [PostgresWriter.Request], _ conn: PostgresConnection, logger: Logger)
        async throws -> [Result<[Edit], Error>]
    {
        var results: [Result<[Edit], Error>] = []
        for request in group {
            do {
                results.append(.success(try await admit(request.unit, conn, logger: logger)))
            } catch let rejection as BatchRejection {
                rollbackUnit()
                results.append(.failure(rejection))
            }
        }
        return results
    }

    /// Reads, in two statements, the rows the group's proposals name that the cache does not hold. Without
    /// `addsToo`, the annotations that adds create are taken not to exist: the log's unique index of adds refuses
    /// the group's statement if one does, and the group is admitted again with them read.
    mutating func load(
        _ conn: PostgresConnection, rowsFor units: [PostgresWriter.Unit], addsToo: Bool, logger: Logger
    ) async throws {
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
                if let id = p.change.annotationID, cache.annotations[id] == nil,
                    addsToo || p.change.operation != .annotationAdd
                {
                    annotationIDs.insert(id)
                }
            }
        }
        for id in eventIDs { cache.events[id] = .some(nil) }
        for id in annotationIDs { cache.annotations[id] = .some(nil) }
        if !eventIDs.isEmpty {
            let ids = eventIDs.map(\.description)
            for try await (revision, body) in try await conn.query(
                "SELECT \(unescaped: PostgresSchema.revision), body FROM events WHERE id = ANY(\(ids))",
                logger: logger
            ).decode((Int64, String).self) {
                let event = try Event(json: try JSON(parsing: body), revision: revision)
                cache.events[event.id] = event
            }
        }
        if !annotationIDs.isEmpty {
            let ids = annotationIDs.map(\.description)
            for try await (state, added) in try await conn.query(
                "SELECT s.body, e.body \(unescaped: PostgresReads.annotationSource) AND e.annotation = ANY(\(ids))",
                logger: logger
            ).decode((String?, String).self) {
                let annotation = try Annotation.stored(state: state, added: added)
                cache.annotations[annotation.id] = annotation
            }
        }
    }

    private func event(_ id: EventID) -> Event? { cache.events[id] ?? nil }
    private func annotation(_ id: AnnotationID) -> Annotation? {
        // Not `added[id] ?? cache.annotations[id] ?? nil`: the first nil would be lifted to the inner one.
        if let own = added[id] { return own }
        return cache.annotations[id] ?? nil
    }

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
        undoAdded = []
        undoAddedChanges = []
        undoChanged = []
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
                let p = edit.proposal
                let applied = try page.check(
                    index, after: head, event: p.event.flatMap(event),
                    annotation: p.change.annotationID.flatMap(annotation))
                let body = Array(page.bodies[index])
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
        undoEvents.append((e.id, cache.events[e.id]))
        cache.events[e.id] = .some(e)
        touchedEvents.insert(e.id)
        switch p.change.operation {
        case .eventCreate, .eventUpdate, .eventDelete:
            contentChanged.insert(e.id)
        default:
            break
        }
        if let a = applied.annotation {
            if p.change.operation == .annotationAdd {
                undoAdded.append(a.id)
                added[a.id] = a
            } else if let before = added[a.id] {
                // Added by this group and changed since: what is written is the annotation as it now stands.
                undoAddedChanges.append((a.id, before))
                added[a.id] = a
            } else {
                undoAnnotations.append((a.id, cache.annotations[a.id]))
                cache.annotations[a.id] = .some(a)
            }
            touchedAnnotations.insert(a.id)
            if p.change.operation != .annotationAdd, changedAnnotations.insert(a.id).inserted {
                undoChanged.append(a.id)
            }
        }
    }

    /// Takes back everything the refused unit recorded. Touched sets may keep its IDs: their rows are written as the
    /// cache holds them, which is as before the unit.
    mutating func rollbackUnit() {
        for (id, value) in undoEvents.reversed() { cache.events[id] = value }
        for (id, value) in undoAnnotations.reversed() { cache.annotations[id] = value }
        for (id, value) in undoAddedChanges.reversed() { added[id] = value }
        for id in undoAdded { added[id] = nil }
        for id in undoChanged { changedAnnotations.remove(id) }
        written.removeSubrange(unitStart.written...)
        meta.removeSubrange(unitStart.meta...)
        if let saved = unitStart.head { head = saved }
        undoEvents = []
        undoAnnotations = []
        undoChanged = []
    }

    /// The cache after COMMIT: valid at the new head. The group's adds leave it unknown (not "absent", which a
    /// read before the add may have recorded), since most annotations are never changed.
    /// The cache as it was before the group, at `head`, when the group's statement was not written: what the group
    /// changed in it is forgotten (read again when named).
    mutating func forgettingGroup(at head: ChainHead) -> RowCache {
        var out = RowCache()
        swap(&out, &cache)
        for id in touchedEvents { out.events[id] = nil }
        for id in touchedAnnotations { out.annotations[id] = nil }
        for id in added.keys { out.annotations[id] = nil }
        out.head = head
        return out
    }

    /// Moves the cache out (a copy would copy its dictionaries on the first change below).
    mutating func committed() -> RowCache {
        var out = RowCache()
        swap(&out, &cache)
        for id in added.keys { out.annotations[id] = nil }
        out.head = head
        out.trim()
        return out
    }

    /// Writes the group in one statement (`timeline_append`, Schema v3): the log rows, the events and the changed
    /// annotations as they now stand, the tags of events whose content changed, the metadata, and the head (whose
    /// NOTIFY reaches the other nodes on commit). Returns false, having written nothing, when the head is no longer
    /// `expected`.
    func write(_ conn: PostgresConnection, expected: Int64, logger: Logger) async throws -> Bool {
        let edits = written
        // Rows only for events whose content changed: a revision lives in the log (Schema, v1).
        let retagged = contentChanged.compactMap { cache.events[$0] ?? nil }
        let events = retagged
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
        let annotations = changedAnnotations.compactMap { annotation($0) }
        // The last value of each key, in order; a null value (delete) travels as ''.
        var metaKeys: [String] = []
        var metaValues: [String] = []
        for (key, value) in meta {
            metaKeys.append(key)
            metaValues.append(value.isNull ? "" : value.canonicalString)
        }
        var written = false
        for try await ok in try await conn.query(
            """
            SELECT timeline_append(\(expected), \(head.version), \(ByteBuffer(bytes: head.hash.bytes)),
                \(edits.map(\.edit.version)), \(edits.map { $0.edit.event?.description ?? "" }),
                \(edits.map(\.edit.revision)), \(edits.map(\.edit.operation.rawValue)),
                \(edits.map { $0.edit.change.annotationID?.description ?? "" }),
                \(edits.map { String(decoding: $0.body, as: UTF8.self) }),
                \(edits.map { ByteBuffer(bytes: $0.edit.hash.bytes) }),
                \(events.map(\.id.description)), \(events.map(\.deleted)),
                \(events.map { $0.date.start?.iso ?? "" }), \(events.map { $0.date.end?.iso ?? "" }),
                \(events.map(\.contentJSON.canonicalString)),
                \(retagged.map(\.id.description)), \(tags), \(owners), \(starts),
                \(annotations.map(\.id.description)), \(annotations.map(\.event.description)),
                \(annotations.map(\.retracted)), \(annotations.map { String(decoding: $0.canonicalBytes, as: UTF8.self) }),
                \(metaKeys), \(metaValues))
            """, logger: logger
        ).decode(Bool.self) {
            written = ok
        }
        return written
    }
}

extension PostgresWriter {
    /// Copies another store's whole log into this empty database in one transaction, a page at a time: all of it,
    /// verified link by link and applied, or nothing. For `timelined migrate`, before any node serves the database.
    func copyAll(from source: any TimelineStore, pageSize: Int) async throws -> ChainHead {
        try await client.withConnection { [logger] conn in
            _ = try await conn.query("BEGIN", logger: logger)
            do {
                // The writers' turn first, then the head's row, in the order every append takes them.
                _ = try await conn.query(
                    "SELECT pg_advisory_xact_lock(\(unescaped: PostgresSchema.turn))", logger: logger)
                let start = try await PostgresReads.lockHead(conn, logger: logger)
                guard start.version == 0 else {
                    throw TimelineError(
                        .wrongDataset,
                        "the database holds a timeline already (version \(start.version)); migrate --to needs an empty "
                            + "database")
                }
                var cache = RowCache(head: start)
                var after: Int64 = 0
                while true {
                    let page = try await source.edits(after: after, limit: pageSize)
                    guard let last = page.last else { break }
                    let linked = try LinkedEdits(page)
                    var admission = Admission(cache: cache)
                    try await admission.load(conn, rowsFor: [.linked(linked)], addsToo: true, logger: logger)
                    _ = try await admission.admit(.linked(linked), conn, logger: logger)
                    _ = try await admission.write(conn, expected: after, logger: logger)
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
