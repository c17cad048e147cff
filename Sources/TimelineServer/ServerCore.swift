import Dispatch
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Synchronization
import TimelineCore
import TimelineLink
import TimelineStore
import TimelineWire

/// What every connection of one server shares: the store, the tokens, the watchers, the limits.
/// The verbs that answer with a fixed list of lines are implemented here, free of any channel, so that they
/// read as plain async functions from a request to its replies.
final class ServerCore: Sendable {
    let store: any TimelineStore
    let tokens: TokenStore
    let limits: Limits
    let logger: Logger
    let broadcaster: Broadcaster
    let connectionCount = Atomic<Int>(0)
    let metrics = ServerMetrics()
    /// Numbers connections for the log (`connection`), from 1.
    let connectionNumbers = Atomic<UInt64>(0)
    let shuttingDown = Atomic<Bool>(false)
    /// The open connections, and who waits for the last of them to close (a graceful shutdown).
    let connections = NIOLockedValueBox<Connections>(Connections())

    struct Connections {
        var open: [ObjectIdentifier: any Channel] = [:]
        var drained: [CheckedContinuation<Void, Never>] = []
    }

    func opened(_ channel: any Channel) {
        connections.withLockedValue { $0.open[ObjectIdentifier(channel)] = channel }
    }

    func closed(_ channel: any Channel) {
        let waiters = connections.withLockedValue { c -> [CheckedContinuation<Void, Never>] in
            c.open.removeValue(forKey: ObjectIdentifier(channel))
            guard c.open.isEmpty else { return [] }
            defer { c.drained = [] }
            return c.drained
        }
        for waiter in waiters { waiter.resume() }
    }

    var openChannels: [any Channel] { connections.withLockedValue { Array($0.open.values) } }

    /// Returns once no connection is open.
    func drained() async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            let now = connections.withLockedValue { c -> Bool in
                if c.open.isEmpty { return true }
                c.drained.append(done)
                return false
            }
            if now { done.resume() }
        }
    }
    /// Failed AUTH attempts per peer address, to slow down guessing.
    let authFailures = NIOLockedValueBox<[String: (count: Int, last: NIODeadline)]>([:])
    /// Set on an office replica: reads are local, edits go upstream.
    let replicator: Replicator?
    static let serverName = "timelined/0.1.0"

    init(store: any TimelineStore, tokens: TokenStore, limits: Limits, logger: Logger, replicator: Replicator? = nil) {
        self.store = store
        self.replicator = replicator
        self.tokens = tokens
        self.limits = limits
        self.logger = logger
        let broadcaster = Broadcaster(demand: { [store] in store.wantOthersCommits($0) })
        self.broadcaster = broadcaster
        store.observeCommits { units in broadcaster.publish(units) }
        // Nobody watches yet.
        store.wantOthersCommits(false)
    }

    /// The log's version when the server started, and how many edits since then `timeline_edits_appended_total`
    /// has counted: it counts versions, which are contiguous, whichever node or link appended them.
    private let appended = NIOLockedValueBox<(start: Int64?, counted: Int64)>((nil, 0))

    /// Starts counting appended edits from `version`.
    func countAppended(from version: Int64) {
        appended.withLockedValue { $0 = (version, 0) }
    }

    /// Brings `timeline_edits_appended_total` up to the log's `version`.
    func countAppended(upTo version: Int64) {
        let more = appended.withLockedValue { a -> Int64 in
            guard let start = a.start, version - start > a.counted else { return 0 }
            defer { a.counted = version - start }
            return version - start - a.counted
        }
        if more > 0 { metrics.editsAppended.increment(by: more) }
    }

    /// The greeting's and CAPS's description of this server.
    func capabilities() async -> JSON {
        let head = (try? await store.head())?.version ?? 0
        var replica: JSON = .null
        if let replicator { replica = replicator.describe(localVersion: head) }
        return .object([
            "replica": replica,
            "server": .string(Self.serverName),
            "store": .object(["engine": .string(store.engine), "reachable": .bool(store.isReachable)]),
            "dataset": .string(store.dataset),
            "version": .int(head),
            "first_version": 1,
            "verbs": .array(Verb.allCases.map { .string($0.rawValue) }),
            "operations": .array(Operation.allCases.map { .string($0.rawValue) }),
            "auth": ["token"],
            "limits": .object([
                "line_bytes": .int(Int64(limits.maxLineLength)),
                "batch_edits": .int(Int64(limits.maxBatch)),
                "pull_edits": .int(Int64(limits.maxPull)),
                "idle_seconds": .int(limits.idleTimeout.nanoseconds / 1_000_000_000),
                "auth_seconds": .int(limits.authTimeout.nanoseconds / 1_000_000_000),
                "outbound_bytes": .int(Int64(limits.maxOutboundBuffer)),
                "pipelined": .int(Int64(limits.maxPipelined)),
            ]),
        ])
    }

    // MARK: AUTH

    /// How long to hold a failed AUTH's answer: doubling per recent failure from this address, capped.
    func authDelay(for address: String) -> TimeAmount {
        authFailures.withLockedValue { table in
            guard let entry = table[address] else { return .zero }
            if NIODeadline.now() - entry.last > .seconds(300) {
                table[address] = nil
                return .zero
            }
            return .milliseconds(min(5_000, 100 << min(entry.count, 10)))
        }
    }

    func recordAuth(success: Bool, address: String) {
        if !success { metrics.authFailures.increment() }
        authFailures.withLockedValue { table in
            if success {
                table[address] = nil
            } else {
                let count = (table[address]?.count ?? 0) + 1
                table[address] = (count, .now())
                if table.count > 100_000 { table.removeAll() }  // bounded under a spray of addresses
            }
        }
    }

    // MARK: Reading verbs

    func pull(_ tag: String, since: Int64, limit asked: Int?) async -> [Reply] {
        let limit = min(asked ?? limits.defaultPull, limits.maxPull)
        do {
            let head = try await store.head().version
            if since > head {
                return [
                    .no(
                        tag: tag, code: .resync,
                        message: "version \(since) is beyond this server's version \(head): this replica belongs to "
                            + "another dataset or a restored server; start again from 0",
                        detail: .object(["version": .int(head), "dataset": .string(store.dataset)]))
                ]
            }
            let edits = try await store.wireEdits(after: since, limit: limit)
            metrics.editsPulled.increment(by: Int64(edits.count))
            var replies = edits.map { Reply.encoded(kind: "EDIT", $0.bytes) }
            let last = edits.last?.version ?? since
            replies.append(
                .ok(tag: tag, .object(["version": .int(head), "last": .int(last), "more": .bool(last < head)])))
            return replies
        } catch {
            return [failure(tag, error)]
        }
    }

    enum Resolution {
        case found(EventID)
        case refused(Reply)
    }

    /// The event a reference names: its ID, or the one event its prefix starts.
    func resolve(_ ref: EventReference, tag: String) async throws -> Resolution {
        let text: String
        switch ref {
        case .id(let id): return .found(id)
        case .prefix(let prefix): text = prefix
        }
        let matches = try await store.resolve(prefix: String(text), limit: 10)
        switch matches.count {
        case 0:
            return .refused(
                .no(tag: tag, code: .notFound, message: "no event starts with \(text)", detail: nil))
        case 1: return .found(matches[0])
        default:
            return .refused(
                .no(
                    tag: tag, code: .ambiguous,
                    message: "\(matches.count >= 10 ? "10 or more" : "\(matches.count)") events start with \(text)",
                    detail: .object(["candidates": .array(matches.map { .string($0.description) })])))
        }
    }

    /// GET for a connection's event loop: a full event ID with no AT is read with one hand-off to a reader
    /// and back, which is most GETs; the rest take `get(_:)`'s path. `done` runs on some other thread.
    func get(_ tag: String, _ ref: EventReference, at: Int64?, done: @escaping @Sendable ([Reply]) -> Void) {
        guard case .id(let id) = ref, at == nil else {
            Task { done(await get(tag, ref, at: at)) }
            return
        }
        store.event(id, asOf: nil) { result in
            switch result {
            case .success(let view): done(self.answer(tag, id, asOf: nil, view))
            case .failure(let error): done([self.failure(tag, error)])
            }
        }
    }

    /// GET's answer: the event, or NOT_FOUND naming the version asked for.
    private func answer(_ tag: String, _ id: EventID, asOf: Int64?, _ view: EventView?) -> [Reply] {
        guard let view else {
            let when = asOf.map { " at version \($0)" } ?? ""
            return [.no(tag: tag, code: .notFound, message: "event \(id) does not exist\(when)", detail: nil)]
        }
        return [.data(kind: "EVENT", view.json), .ok(tag: tag, nil)]
    }

    func get(_ tag: String, _ ref: EventReference, at asOf: Int64?) async -> [Reply] {
        do {
            let id: EventID
            switch try await resolve(ref, tag: tag) {
            case .found(let found): id = found
            case .refused(let reply): return [reply]
            }
            if let asOf, asOf > (try await store.head().version) {
                return [
                    .bad(tag: tag, code: .badVersion, message: "version \(asOf) is beyond the log")
                ]
            }
            return answer(tag, id, asOf: asOf, try await store.event(id, asOf: asOf))
        } catch {
            return [failure(tag, error)]
        }
    }

    func log(_ tag: String, _ filter: EventFilter) async -> [Reply] {
        do {
            let views = try await store.events(matching: filter)
            return views.map { Reply.data(kind: "EVENT", $0.json) } + [
                .ok(tag: tag, .object(["count": .int(Int64(views.count))]))
            ]
        } catch {
            return [failure(tag, error)]
        }
    }

    func history(_ tag: String, _ ref: EventReference) async -> [Reply] {
        do {
            let id: EventID
            switch try await resolve(ref, tag: tag) {
            case .found(let found): id = found
            case .refused(let reply): return [reply]
            }
            let edits = try await store.history(of: id)
            guard !edits.isEmpty else {
                return [
                    .no(tag: tag, code: .notFound, message: "event \(id) does not exist", detail: nil)
                ]
            }
            return edits.map { Reply.data(kind: "EDIT", EditCodec.json($0)) } + [
                .ok(tag: tag, .object(["count": .int(Int64(edits.count))]))
            ]
        } catch {
            return [failure(tag, error)]
        }
    }

    // MARK: Writing verbs

    /// Decodes one edit line as `identity`'s, stamped now, and checks the role may make it.
    func proposal(from text: String, identity: TokenStore.Identity) throws(TimelineError) -> Proposal {
        let members: JSONMembers?
        do { members = try JSON.parseObject(text) } catch { throw TimelineError(.badJSON, "\(error)") }
        if identity.role == .replicator, members?["on_behalf_of"] == nil {
            throw TimelineError(.badField, "a replicator names the author of each edit in \"on_behalf_of\"")
        }
        guard let members else { throw TimelineError(.badJSON, "an edit must be a JSON object") }
        var proposal = try EditCodec.decodeProposal(
            members, author: identity.name, time: WallClock.now(), allowOnBehalf: identity.role == .replicator)
        guard identity.role.mayPropose(proposal.change.operation) else {
            throw TimelineError(
                .forbidden, "role \(identity.role.rawValue) may not \(proposal.change.operation.rawValue)")
        }
        proposal.ownAnnotationsOnly = identity.role == .annotator
        return proposal
    }

    /// On an office replica, whose upstream trusts its replicator token: an annotator changes only their own
    /// annotations (authored `user@office` once forwarded), checked against this copy before forwarding.
    func checkOwnership(_ p: Proposal, identity: TokenStore.Identity) async throws {
        guard p.ownAnnotationsOnly, let replicator, let event = p.event, let id = p.change.annotationID,
            p.change.operation == .annotationUpdate || p.change.operation == .annotationRetract,
            let view = try await store.event(event, asOf: nil),
            let annotation = view.annotations.first(where: { $0.id == id })
        else { return }
        let author = "\(identity.name)@\(replicator.upstream.office)"
        if annotation.author != author {
            throw TimelineError(
                .forbidden, "annotation \(id) is \(annotation.author)'s; only its author or an editor may change it")
        }
    }

    /// PROPOSE on an office replica: checked here (syntax, role, ownership), decided upstream. (A primary's
    /// connections decode and submit their writes themselves: `decodePropose`, `submit`.)
    func forward(_ tag: String, edit: String, identity: TokenStore.Identity, via replicator: Replicator) async
        -> [Reply]
    {
        let p: Proposal
        switch decodePropose(tag, edit: edit, identity: identity) {
        case .refused(let reply): return [reply]
        case .proposals(let proposals): p = proposals[0]
        }
        do {
            try await checkOwnership(p, identity: identity)
            switch try await replicator.forward(try JSON(parsing: edit), author: identity.name) {
            case .answered(let c): return [Self.reply(tag, c)]
            case .queued(let id):
                return [
                    .ok(
                        tag: tag,
                        .object([
                            "queued": true, "outbox": .int(id),
                            "event": p.event.map { .string($0.description) } ?? .null,
                        ]))
                ]
            }
        } catch {
            return [failure(tag, error)]
        }
    }

    /// Decodes PROPOSE's argument as `identity`'s edit, stamped now (on the connection's event loop).
    func decodePropose(_ tag: String, edit: String, identity: TokenStore.Identity) -> DecodedWrite {
        do { return .proposals([try proposal(from: edit, identity: identity)]) } catch {
            return .refused(failure(tag, error))
        }
    }

    /// Decodes a BATCH's lines as `identity`'s edits; the refusal names the first line that does not decode.
    func decodeBatch(_ tag: String, lines: [String], identity: TokenStore.Identity) -> DecodedWrite {
        var proposals: [Proposal] = []
        proposals.reserveCapacity(lines.count)
        for (index, line) in lines.enumerated() {
            do {
                proposals.append(try proposal(from: line, identity: identity))
            } catch {
                return .refused(Reply.refusal(tag: tag, error.at("line \(index + 1) of \(lines.count)")))
            }
        }
        return .proposals(proposals)
    }

    /// Submits a decoded PROPOSE or BATCH to the store of a primary; `done` gets the store's result on the
    /// writer's thread once it is durable or refused, and `answer` turns it into the reply on the connection's
    /// own thread: built on the writer, which every write waits for, the replies had cost 4 % of its time (the
    /// concurrent-PROPOSE benchmark, under perf). Writes are committed in the order submitted.
    func submit(_ proposals: [Proposal], done: @escaping @Sendable (Result<[Edit], Error>) -> Void) {
        precondition(replicator == nil, "an office replica forwards its writes upstream")
        let started = DispatchTime.now().uptimeNanoseconds
        let latency = metrics.commitSeconds
        store.append(proposals) { result in
            latency.recordNanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - started))
            done(result)
        }
    }

    /// The reply to a PROPOSE (`batch: false`) or a BATCH of `count` proposals, from what `submit` gave.
    func answer(_ result: Result<[Edit], Error>, tag: String, batch: Bool, count: Int) -> [Reply] {
        [batch ? batchAnswer(tag, count: count, result) : proposeAnswer(tag, result)]
    }

    private func proposeAnswer(_ tag: String, _ result: Result<[Edit], Error>) -> Reply {
        switch result {
        case .success(let edits): .ok(tag: tag, Self.acknowledgement(edits[0]))
        case .failure(let error): failure(tag, error)
        }
    }

    private func batchAnswer(_ tag: String, count: Int, _ result: Result<[Edit], Error>) -> Reply {
        switch result {
        case .success(let edits):
            return .ok(
                tag: tag,
                .object([
                    "first": .int(edits.first?.version ?? 0), "last": .int(edits.last?.version ?? 0),
                    "count": .int(Int64(edits.count)), "hash": .string(edits.last?.hash.hex ?? ""),
                ]))
        case .failure(let rejection as BatchRejection):
            return Reply.refusal(tag: tag, rejection.error.at("line \(rejection.index + 1) of \(count)"))
        case .failure(let error):
            return failure(tag, error)
        }
    }

    static func acknowledgement(_ edit: Edit) -> JSON {
        var o: [String: JSON] = [
            "version": .int(edit.version), "revision": .int(edit.revision), "hash": .string(edit.hash.hex),
        ]
        if let event = edit.event { o["event"] = .string(event.description) }
        if let annotation = edit.change.annotationID { o["annotation"] = .string(annotation.description) }
        return .object(o)
    }

    /// BATCH on an office replica: checked here, forwarded upstream as one unit. (A primary's connections
    /// decode and submit their writes themselves: `decodeBatch`, `submit`.)
    func forwardBatch(_ tag: String, lines: [String], identity: TokenStore.Identity, via replicator: Replicator)
        async -> [Reply]
    {
        let proposals: [Proposal]
        switch decodeBatch(tag, lines: lines, identity: identity) {
        case .refused(let reply): return [reply]
        case .proposals(let p): proposals = p
        }
        do {
            for (index, p) in proposals.enumerated() {
                do { try await checkOwnership(p, identity: identity) } catch let e as TimelineError {
                    return [Reply.refusal(tag: tag, e.at("line \(index + 1) of \(lines.count)"))]
                }
            }
            let json = try lines.map { try JSON(parsing: $0) }
            return [Self.reply(tag, try await replicator.forwardBatch(json, author: identity.name))]
        } catch {
            return [failure(tag, error)]
        }
    }

    /// An upstream completion passed on as it is.
    static func reply(_ tag: String, _ c: Completion) -> Reply {
        switch c.status {
        case .ok: return .ok(tag: tag, c.json)
        case .no: return .no(tag: tag, code: c.code ?? .internalError, message: c.message, detail: c.json)
        case .bad: return .bad(tag: tag, code: c.code ?? .internalError, message: c.message)
        }
    }

    /// The office replica's recorded conflicts (none on a primary).
    func conflicts(_ tag: String) async -> [Reply] {
        guard let replicator else { return [.ok(tag: tag, .object(["count": 0]))] }
        do {
            let list = try replicator.outbox.notTaken()
            return list.map { Reply.data(kind: "CONFLICT", $0.json) }
                + [
                    .ok(
                        tag: tag,
                        .object([
                            "count": .int(Int64(list.count)),
                            "queued": .int(Int64(try replicator.outbox.queued().count)),
                        ]))
                ]
        } catch {
            return [failure(tag, error)]
        }
    }

    func failure(_ tag: String, _ error: Error) -> Reply {
        if let e = error as? TimelineError { return Reply.refusal(tag: tag, e) }
        if let r = error as? BatchRejection { return Reply.refusal(tag: tag, r.error) }
        logger.error("request failed", metadata: ["error": "\(error)"])
        return .no(tag: tag, code: .internalError, message: "the server could not complete the request", detail: nil)
    }
}
