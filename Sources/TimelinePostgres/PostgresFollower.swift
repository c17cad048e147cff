import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import PostgresNIO
import TimelineCore
import TimelineStore

/// Hands every commit in the database to this node's observers, in version order and once each: this node's own
/// commits as its writer makes them, other nodes' as they are read from the log. While the observers do not want
/// other nodes' commits (no WATCH on this node), those only move the head, which their NOTIFY names with its hash:
/// a node does not read back every edit of every other node for nobody.
///
/// LISTEN/NOTIFY delivers only on commit and keeps nothing for a listener that was away, so a notification is only
/// a prompt to read `version > cursor`: on (re)connecting the follower LISTENs first, then catches up, and it also
/// reads the head every `pollInterval` as a safety net. The listening connection is its own, outside the pool (a
/// pooled one held across a server restart is how others deadlocked).
final class PostgresFollower: Sendable {
    private enum Job: Sendable {
        /// This node committed these units, ending at `head`; `done` runs once they are handed over.
        case local([[Edit]], head: ChainHead, done: @Sendable () -> Void)
        /// Something may have been committed elsewhere: read the log past the cursor.
        case poke
    }

    private struct State {
        var delivered: ChainHead
        var observers: [@Sendable ([[Edit]]) -> Void] = []
        var pokeQueued = false
        /// The newest head a queued poke was told of; nil when it must read the log regardless (a poll, a reconnect).
        var pokedUpTo: Int64? = 0
        /// The newest head a NOTIFY named, with its hash.
        var notified: ChainHead?
        /// Whether observers get other nodes' commits (`TimelineStore.wantOthersCommits`).
        var othersWanted = true
        /// The first version of a commit this node's writer is making: reads stop below it until the writer hands
        /// the commit over (as one array per append) or gives it up. Nobody else can commit past it meanwhile,
        /// since the writer holds the head row.
        var reserved: Int64?
        var tasks: [Task<Void, Never>] = []
        var listening = false
        /// Since when the LISTEN connection has failed to connect again: the database is away.
        var downSince: ContinuousClock.Instant?
        /// Called when another node announces a change of tokens, and at every poll.
        var tokenWatchers: [@Sendable () -> Void] = []
    }

    private let state: NIOLockedValueBox<State>
    private let jobs: AsyncStream<Job>
    private let submit: AsyncStream<Job>.Continuation
    let client: PostgresClient
    let connection: PostgresConnection.Configuration
    let pollInterval: Duration
    let logger: Logger
    let location: PostgresLocation
    let timeout: Duration

    init(
        client: PostgresClient, head: ChainHead, connection: PostgresConnection.Configuration, pollInterval: Duration,
        location: PostgresLocation, timeout: Duration, logger: Logger
    ) {
        self.client = client
        self.connection = connection
        self.pollInterval = pollInterval
        self.logger = logger
        self.location = location
        self.timeout = timeout
        state = NIOLockedValueBox(State(delivered: head))
        (jobs, submit) = AsyncStream.makeStream(of: Job.self)
    }

    /// The last version handed to the observers.
    var delivered: ChainHead { state.withLockedValue { $0.delivered } }

    /// Whether the LISTEN connection is up: commits elsewhere then arrive within moments, not at the next poll.
    var isListening: Bool { state.withLockedValue { $0.listening } }

    /// Whether the database has been unreachable for a while (connecting failed and failed again): requests are
    /// then answered at once instead of each waiting out the timeout.
    var isUnreachable: Bool {
        state.withLockedValue { s in s.downSince.map { ContinuousClock.now - $0 > .seconds(1) } ?? false }
    }

    func addObserver(_ observer: @escaping @Sendable ([[Edit]]) -> Void) {
        state.withLockedValue { $0.observers.append(observer) }
    }

    /// Whether observers get other nodes' commits from now on. Set under the lock that a quiet move of the head
    /// takes too: someone who says `true` and then reads `delivered` is handed every commit after what they read.
    func want(others wanted: Bool) {
        state.withLockedValue { $0.othersWanted = wanted }
    }

    /// Moves the head to `head` without reading the edits up to it, if others' commits are not wanted and no commit
    /// of this node's writer is under way below it; false if they must be read (and handed over) instead.
    private func moveQuietly(to head: ChainHead) -> Bool {
        state.withLockedValue { s in
            guard !s.othersWanted else { return false }
            if let reserved = s.reserved, head.version >= reserved {
                // This node's commit is under way: its delivery moves the head past it, then takes this one.
                return true
            }
            if head.version > s.delivered.version { s.delivered = head }
            return true
        }
    }

    /// Calls `watcher` whenever tokens may have changed elsewhere (a NOTIFY on the tokens' channel, or a poll).
    func watchTokens(_ watcher: @escaping @Sendable () -> Void) {
        state.withLockedValue { $0.tokenWatchers.append(watcher) }
    }

    private func tokensMayHaveChanged() {
        for watcher in state.withLockedValue({ $0.tokenWatchers }) { watcher() }
    }

    func start() {
        let tasks = [
            Task { await self.deliverJobs() },
            Task { await self.listen() },
            Task { await self.poll() },
        ]
        state.withLockedValue { $0.tasks = tasks }
    }

    /// Cancels the follower's tasks without waiting for them (a store released without `close()`).
    func cancel() {
        submit.finish()
        for task in state.withLockedValue({ $0.tasks }) { task.cancel() }
    }

    func stop() async {
        let tasks = state.withLockedValue { s in
            defer { s.tasks = [] }
            return s.tasks
        }
        submit.finish()
        for task in tasks { task.cancel() }
        for task in tasks { await task.value }
    }

    /// Hands this node's commit to the observers, after any commit of other nodes before it; returns once done.
    func deliverLocal(_ units: [[Edit]], head: ChainHead) async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            let result = submit.yield(.local(units, head: head, done: { done.resume() }))
            if case .terminated = result { done.resume() }
        }
    }

    /// The writer is about to commit versions from `version` on.
    func reserve(from version: Int64) { state.withLockedValue { $0.reserved = version } }

    /// The writer's commit failed, or its outcome is unknown: whatever of it is in the log is read like anyone's.
    func cancelReservation() {
        state.withLockedValue { $0.reserved = nil }
        poke()
    }

    /// A NOTIFY named `version` (and, from nodes that send it, its hash) as the new head.
    private func notified(_ payload: String) {
        let parts = payload.split(separator: " ")
        guard let version = parts.first.flatMap({ Int64($0) }) else { return poke() }
        if parts.count == 2, let hash = Digest(hex: String(parts[1])) {
            state.withLockedValue { s in
                if (s.notified?.version ?? 0) < version { s.notified = ChainHead(version: version, hash: hash) }
            }
        }
        poke(upTo: version)
    }

    /// Asks for a read of the log past the cursor: up to `version` when a NOTIFY named it (a commit this node has
    /// delivered already, its own included, then costs nothing), or whatever is there.
    func poke(upTo version: Int64? = nil) {
        let queue = state.withLockedValue { s in
            if s.pokeQueued {
                s.pokedUpTo = s.pokedUpTo.flatMap { old in version.map { max(old, $0) } }
            } else {
                s.pokedUpTo = version
            }
            defer { s.pokeQueued = true }
            return !s.pokeQueued
        }
        if queue { submit.yield(.poke) }
    }

    /// The one consumer of jobs: delivery is serial, so the cursor only moves forward and nothing goes twice.
    private func deliverJobs() async {
        for await job in jobs {
            switch job {
            case .local(let units, let head, let done):
                let cursor = delivered.version
                if units.first?.first?.version == cursor + 1 {
                    publish(units, through: head)
                } else if head.version > cursor, !publishQuietly(units, through: head) {
                    // Other nodes committed between this node's last delivery and this commit: read them (and this
                    // commit) from the log, in order. If the database went away meanwhile, the commit is durable
                    // anyway: its callers are answered, and the next poll delivers it.
                    await catchUp(through: head.version)
                }
                let later = state.withLockedValue { s in
                    s.reserved = nil
                    return s.notified
                }
                // Other nodes' commits announced while this one was under way.
                if let later, later.version > head.version { _ = moveQuietly(to: later) }
                done()
            case .poke:
                let upTo = state.withLockedValue { s in
                    s.pokeQueued = false
                    return s.pokedUpTo
                }
                if let upTo, upTo <= delivered.version { continue }
                if let known = state.withLockedValue({ $0.notified }), let upTo, known.version >= upTo,
                    moveQuietly(to: known)
                {
                    continue
                }
                if let head = await readHead(), moveQuietly(to: head) { continue }
                await catchUp()
            }
        }
    }

    private func publish(_ units: [[Edit]], through head: ChainHead) {
        let observers = state.withLockedValue { s in
            s.delivered = head
            return s.observers
        }
        for observer in observers { observer(units) }
    }

    /// This node's commit handed over after a gap left by other nodes' commits, if those are not wanted; false if
    /// they are (they must be read first).
    private func publishQuietly(_ units: [[Edit]], through head: ChainHead) -> Bool {
        let observers = state.withLockedValue { s -> [@Sendable ([[Edit]]) -> Void]? in
            guard !s.othersWanted else { return nil }
            if head.version > s.delivered.version { s.delivered = head }
            return s.observers
        }
        guard let observers else { return false }
        for observer in observers { observer(units) }
        return true
    }

    /// The head row, when others' commits are not wanted (nil when they are, or the database does not answer).
    private func readHead() async -> ChainHead? {
        guard !state.withLockedValue({ $0.othersWanted }) else { return nil }
        return try? await PostgresErrors.within(timeout, doing: "read the head", at: location) { [client, logger] in
            try await client.withConnection { conn in try await PostgresReads.head(conn, logger: logger) }
        }
    }

    /// Reads and hands over every edit past the cursor, a page at a time.
    private func catchUp(through last: Int64? = nil) async {
        while !Task.isCancelled {
            let cursor = delivered.version
            let reserved = state.withLockedValue { $0.reserved }
            let end = last ?? reserved.map { $0 - 1 } ?? Int64.max
            guard end > cursor else { return }
            var page: [Edit]
            do {
                page = try await PostgresErrors.within(timeout, doing: "follow the log", at: location) {
                    [client, logger] in
                    try await client.withConnection { conn in
                        try await PostgresReads.edits(
                            conn,
                            "SELECT body, hash FROM edits WHERE version > \(cursor) AND version <= \(end) ORDER BY version LIMIT 1000",
                            logger: logger)
                    }
                }
            } catch {
                logger.debug(
                    "could not read the log past \(cursor): \(PostgresErrors.map(error, doing: "follow the log", at: location))"
                )
                return
            }
            let read = page.count
            if last == nil, let reserved = state.withLockedValue({ $0.reserved }) {
                // The writer reserved while the page was read, and may have committed before the read's snapshot:
                // its commit is its own to hand over, as the arrays its appends made.
                page.removeAll { $0.version >= reserved }
            }
            guard let newest = page.last else { return }
            publish([page], through: ChainHead(version: newest.version, hash: newest.hash))
            if read < 1_000 { return }
        }
    }

    /// Keeps one connection LISTENing, reconnecting with a growing pause while the database is away.
    private func listen() async {
        var pause = Duration.milliseconds(100)
        var id = 1
        while !Task.isCancelled {
            do {
                let conn = try await PostgresConnection.connect(configuration: connection, id: id, logger: logger)
                id += 1
                defer { Task { try? await conn.close() } }
                try await conn.listen(on: PostgresStore.channel) { edits in
                    try await conn.listen(on: PostgresStore.tokensChannel) { tokens in
                        // Listening before reading: a commit made from here on is either read now or notified.
                        let wasDown = state.withLockedValue { s in
                            defer {
                                s.listening = true
                                s.downSince = nil
                            }
                            return s.downSince != nil
                        }
                        if wasDown { logger.notice("PostgreSQL at \(location.address) is back") }
                        pause = .milliseconds(100)
                        poke()
                        tokensMayHaveChanged()
                        try await withThrowingTaskGroup(of: Void.self) { group in
                            group.addTask {
                                for try await notification in edits { self.notified(notification.payload) }
                            }
                            group.addTask { for try await _ in tokens { self.tokensMayHaveChanged() } }
                            // Either ends only when the connection does.
                            try await group.next()
                            group.cancelAll()
                        }
                    }
                }
            } catch {
                if Task.isCancelled { break }
                logger.debug("LISTEN connection lost: \(PostgresErrors.map(error, doing: "listen", at: location))")
            }
            let lost = state.withLockedValue { s in
                defer {
                    s.listening = false
                    if s.downSince == nil { s.downSince = .now }
                }
                return s.downSince == nil
            }
            if lost, !Task.isCancelled {
                logger.warning(
                    "lost PostgreSQL at \(location.address); requests are answered STORE_UNAVAILABLE until it is back"
                )
            }
            try? await Task.sleep(for: pause)
            // Short: requests are refused at once while the database is away, so it is looked for often.
            pause = min(pause * 2, .seconds(1))
        }
        state.withLockedValue { $0.listening = false }
    }

    private func poll() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: pollInterval)
            poke()
            tokensMayHaveChanged()
        }
    }
}
