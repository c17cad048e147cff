import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Synchronization
import TimelineCore
import TimelineLink
import TimelineStore

/// An office replica's link to its upstream server: follows the upstream log (PULL to catch up, then WATCH),
/// verifying every edit against the hash chain; forwards its analysts' edits upstream, or queues them in a
/// durable outbox while upstream is unreachable and sends them on reconnect, merging by event ID.
public final class Replicator: Sendable {
    public struct Upstream: Sendable {
        public var config: ClientConfig
        /// This office's name: forwarded edits are authored `user@office`.
        public var office: String
        /// Where the link's token is kept: read again at every connection, so that it is rotated by replacing the
        /// file (then revoking the old token upstream) without a restart.
        public var tokenFile: String?

        public init(config: ClientConfig, office: String, tokenFile: String? = nil) {
            self.config = config
            self.office = office
            self.tokenFile = tokenFile
        }

        /// The configuration for a connection now: with the token file's current token, or the last one read
        /// when the file cannot be read (the failure is said when the upstream refuses it).
        func connecting() -> ClientConfig {
            var config = self.config
            if let tokenFile, let text = try? String(contentsOfFile: tokenFile, encoding: .utf8) {
                let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
                if !token.isEmpty { config.token = token }
            }
            return config
        }
    }

    public enum State: String, Sendable {
        case connecting, following, disconnected
        /// The upstream log does not continue this replica's (another dataset, a broken chain): following has
        /// stopped for good, loudly. Local reads still serve the verified log up to the divergence.
        case diverged
    }

    struct Status: Sendable {
        var state = State.connecting
        var lastContact: Timestamp?
        var upstreamVersion: Int64 = 0
        var message = ""
        /// When the status file was last written (monotonic nanoseconds).
        var lastWritten: UInt64 = 0
    }

    let upstream: Upstream
    let store: any TimelineStore
    let outbox: Outbox
    let statusPath: String
    let logger: Logger
    let status = NIOLockedValueBox(Status())
    private let writer = NIOLockedValueBox<TimelineConnection?>(nil)
    /// The connection streaming WATCH, closed by `stop()` to end the stream.
    private let follower = NIOLockedValueBox<TimelineConnection?>(nil)
    private let task = NIOLockedValueBox<Task<Void, Never>?>(nil)

    public init(upstream: Upstream, store: any TimelineStore, outbox: Outbox, statusPath: String, logger: Logger) {
        self.upstream = upstream
        self.store = store
        self.outbox = outbox
        self.statusPath = statusPath
        self.logger = logger
        let waiters = self.waiters
        store.observeCommits { units in
            if let last = units.last?.last?.version { waiters.release(upTo: last) }
        }
    }

    /// Forwarded edits waiting to come back through replication, woken by the store's commit observer.
    private let waiters = VersionWaiters()

    /// Learns the upstream's dataset (for a replica's first start).
    public static func upstreamDataset(_ upstream: Upstream) async throws -> String {
        try await TimelineConnection.open(upstream.connecting()).closing { $0.dataset }
    }

    public func start() {
        let t = Task { await self.run() }
        task.withLockedValue { $0 = t }
    }

    public func stop() async {
        let t = task.withLockedValue { $0 }
        t?.cancel()
        let f = follower.withLockedValue { c -> TimelineConnection? in
            defer { c = nil }
            return c
        }
        await f?.close()
        let w = writer.withLockedValue { c -> TimelineConnection? in
            defer { c = nil }
            return c
        }
        await w?.close()
        _ = await t?.value
    }

    /// What the greeting, CAPS and `timelined status` say about the link.
    public func describe(localVersion: Int64) -> JSON {
        let s = status.withLockedValue { $0 }
        return .object([
            "upstream": .string("\(upstream.config.host):\(upstream.config.port)"), "office": .string(upstream.office),
            "state": .string(s.state.rawValue), "last_contact": s.lastContact.map { .string($0.rfc3339) } ?? .null,
            "upstream_version": .int(s.upstreamVersion), "behind": .int(max(0, s.upstreamVersion - localVersion)),
            "message": .string(s.message),
        ])
    }

    public var state: State { status.withLockedValue { $0.state } }

    private func update(_ change: (inout Status) -> Void) {
        let snapshot = status.withLockedValue { s -> Status? in
            let before = (s.state, s.message)
            change(&s)
            // A small file for `timelined status --data DIR` (another process): rewritten when the state changes,
            // otherwise at most once a second, not for every burst of edits.
            let now = DispatchTime.now().uptimeNanoseconds
            guard (s.state, s.message) != before || now &- s.lastWritten >= 1_000_000_000 else { return nil }
            s.lastWritten = now
            return s
        }
        guard let snapshot else { return }
        let json = JSON.object([
            "state": .string(snapshot.state.rawValue),
            "last_contact": snapshot.lastContact.map { .string($0.rfc3339) } ?? .null,
            "upstream_version": .int(snapshot.upstreamVersion), "message": .string(snapshot.message),
            "upstream": .string("\(upstream.config.host):\(upstream.config.port)"), "office": .string(upstream.office),
        ])
        let temp = statusPath + ".tmp"
        if FileManager.default.createFile(atPath: temp, contents: Data(json.canonicalBytes + [0x0A])) {
            rename(temp, statusPath)
        }
    }

    // MARK: Following

    struct Diverged: Error { var message: String }

    private func run() async {
        var delay: UInt64 = 500_000_000
        while !Task.isCancelled {
            do {
                try await followOnce()
                delay = 500_000_000
            } catch let diverged as Diverged {
                logger.critical("replication stopped: \(diverged.message)")
                update {
                    $0.state = .diverged
                    $0.message = diverged.message
                }
                return
            } catch {
                if Task.isCancelled { return }
                let message = (error as? TimelineError)?.description ?? "\(error)"
                if status.withLockedValue({ $0.state }) != .disconnected {
                    logger.warning("upstream unreachable; serving the local copy", metadata: ["error": "\(message)"])
                }
                update {
                    $0.state = .disconnected
                    $0.message = message
                }
            }
            try? await Task.sleep(nanoseconds: delay)
            delay = min(delay * 2, 10_000_000_000)
        }
    }

    private func followOnce() async throws {
        let conn = try await TimelineConnection.open(upstream.connecting())
        follower.withLockedValue { $0 = conn }
        try await conn.closing { try await self.follow(on: $0) }
    }

    private func follow(on conn: TimelineConnection) async throws {
        if Task.isCancelled { return }
        guard conn.dataset == store.dataset else {
            throw Diverged(message: "upstream holds dataset \(conn.dataset), this replica \(store.dataset)")
        }
        update {
            $0.state = .following
            $0.lastContact = WallClock.now()
            $0.upstreamVersion = conn.serverVersion
            $0.message = ""
        }
        logger.info("following upstream", metadata: ["upstream_version": "\(conn.serverVersion)"])
        // Catch up page by page: the upstream's streaming, this replica's decoding and its writing overlap.
        // A page is refused while it is decoded (its own links) or stored (its first link): either way, diverged.
        try await Self.divergedIfRefused {
            try await conn.pullPages(after: try await store.currentVersion(), pageSize: 5_000) { linked, page in
                try await self.store.appendVerified(linked)
                self.update {
                    $0.lastContact = WallClock.now()
                    $0.upstreamVersion = page.json?["version"]?.intValue ?? $0.upstreamVersion
                }
            }
        }
        try await flushOutbox()
        // Edits arrive on the connection's thread; a doorbell wakes the applier, which takes everything that
        // has arrived and stores it in one commit, so a burst upstream is one fsync here, not one per edit.
        let inbox = Inbox()
        let (doorbell, ring) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let since = try await store.currentVersion()
        let watching = Task {
            defer { ring.finish() }
            _ = try await conn.send(.watch(since: since)) { line in
                if let edit = try? TimelineConnection.edit(fromLine: line) {
                    inbox.append(edit)
                    ring.yield()
                }
            }
        }
        for await _ in doorbell {
            if Task.isCancelled { break }
            let edits = inbox.takeAll()
            try await apply(edits)
            if let last = edits.last {
                update {
                    $0.lastContact = WallClock.now()
                    $0.upstreamVersion = max($0.upstreamVersion, last.version)
                }
            }
        }
        if Task.isCancelled { return }
        try await apply(inbox.takeAll())
        _ = try await watching.value
        throw TimelineError(.unreachable, "the upstream closed the stream")
    }

    /// Edits received and not yet stored.
    final class Inbox: Sendable {
        private let edits = NIOLockedValueBox<[Edit]>([])
        func append(_ edit: Edit) { edits.withLockedValue { $0.append(edit) } }
        func takeAll() -> [Edit] {
            edits.withLockedValue { e in
                defer { e.removeAll(keepingCapacity: true) }
                return e
            }
        }
    }

    private func apply(_ edits: [Edit]) async throws {
        try await Self.divergedIfRefused { try await store.appendVerified(edits) }
    }

    private static func divergedIfRefused(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let rejection as BatchRejection {
            throw Diverged(message: "the upstream log does not continue this replica's: \(rejection.error.message)")
        }
    }

    /// Sends what was queued while upstream was unreachable.
    private func flushOutbox() async throws {
        guard try !outbox.queued().isEmpty else { return }
        let conn = try await writerConnection()
        let report = try await outbox.push(using: conn)
        if let stopped = report.stopped { throw stopped }
        logger.info(
            "sent queued edits upstream",
            metadata: ["accepted": "\(report.accepted)", "conflicts": "\(report.conflicts)"])
    }

    // MARK: Forwarding

    /// A connection for forwarding (the following connection is busy with WATCH).
    private func writerConnection() async throws -> TimelineConnection {
        if let existing = writer.withLockedValue({ $0 }) { return existing }
        let conn = try await TimelineConnection.open(upstream.connecting())
        writer.withLockedValue { $0 = conn }
        return conn
    }

    private func dropWriter() {
        writer.withLockedValue { $0 = nil }
    }

    public enum Forwarded: Sendable {
        /// Upstream's completion, passed on as it is.
        case answered(Completion)
        /// Upstream unreachable: stored in the outbox under this number.
        case queued(Int64)
    }

    /// Forwards one edit of a local analyst; waits (briefly) for the accepted edit to arrive back through
    /// replication, so that the analyst's next read sees it.
    func forward(_ proposal: JSON, author: String) async throws -> Forwarded {
        guard case .object(var o) = proposal else { throw TimelineError(.badJSON, "an edit must be a JSON object") }
        o["on_behalf_of"] = .string("\(author)@\(upstream.office)")
        let edit = JSON.object(o)
        if state == .diverged {
            throw TimelineError(
                .upstreamDiverged, "this replica stopped following its upstream")
        }
        do {
            let conn = try await writerConnection()
            let reply = try await conn.send(.propose(edit: edit.canonicalString))
            if reply.status == .ok, let version = reply.json?["version"]?.intValue { await waitForLocal(version) }
            return .answered(reply)
        } catch let error as TimelineError where error.code == .unreachable || error.code == .shutdown {
            dropWriter()
            let id = try outbox.enqueue(edit, event: o["event"]?.stringValue.flatMap(EventID.init))
            logger.info("upstream unreachable; edit queued", metadata: ["outbox": "\(id)"])
            return .queued(id)
        }
    }

    /// Forwards a batch as it is; a batch is not queued (it would lose its atomicity): while upstream is
    /// unreachable it is refused with `UPSTREAM_UNAVAILABLE`.
    func forwardBatch(_ lines: [JSON], author: String) async throws -> Completion {
        let stamped = lines.map { line -> String in
            guard case .object(var o) = line else { return line.canonicalString }
            o["on_behalf_of"] = .string("\(author)@\(upstream.office)")
            return JSON.object(o).canonicalString
        }
        do {
            let conn = try await writerConnection()
            let reply = try await conn.send(.batch(count: stamped.count), lines: stamped)
            if reply.status == .ok, let version = reply.json?["last"]?.intValue { await waitForLocal(version) }
            return reply
        } catch let error as TimelineError where error.code == .unreachable {
            dropWriter()
            throw TimelineError(
                .upstreamUnavailable,
                "the upstream server is unreachable; a batch is not queued, send it again later")
        }
    }

    /// Waits until the edit forwarded as `version` is stored here (or 5 s pass: it is accepted upstream either way).
    private func waitForLocal(_ version: Int64) async {
        let id = waiters.nextID()
        let timeout = Task { [waiters] in
            try await Task.sleep(nanoseconds: 5_000_000_000)
            waiters.release(id: id)
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            // Registered before looking at the head, so a commit in between cannot be missed.
            waiters.add(id: id, version: version, continuation)
            Task { [store, waiters] in
                if let head = try? await store.currentVersion(), head >= version { waiters.release(id: id) }
            }
        }
        timeout.cancel()
    }
}

/// Continuations waiting for a version; whoever takes one out of the list resumes it, exactly once.
final class VersionWaiters: Sendable {
    private struct Waiter {
        var id: UInt64
        var version: Int64
        var continuation: CheckedContinuation<Void, Never>
    }

    private let list = NIOLockedValueBox<[Waiter]>([])
    private let ids = Atomic<UInt64>(0)

    func nextID() -> UInt64 { ids.wrappingAdd(1, ordering: .relaxed).newValue }

    func add(id: UInt64, version: Int64, _ continuation: CheckedContinuation<Void, Never>) {
        list.withLockedValue { $0.append(Waiter(id: id, version: version, continuation: continuation)) }
    }

    func release(upTo version: Int64) { release { $0.version <= version } }

    func release(id: UInt64) { release { $0.id == id } }

    private func release(where due: (Waiter) -> Bool) {
        let ready = list.withLockedValue { waiting -> [Waiter] in
            let found = waiting.filter(due)
            waiting.removeAll(where: due)
            return found
        }
        for w in ready { w.continuation.resume() }
    }
}
