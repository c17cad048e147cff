import Logging
import NIOCore
import TimelineCore
import TimelineStore
import TimelineTLS
import TimelineWire

/// Asks a connection to finish what it is doing and close (graceful shutdown).
struct ShutdownRequested: Sendable {}

/// One client connection on its channel: reports what happens to a `ConnectionStateMachine`, which decides,
/// and performs the actions it returns. Confined to its channel's event loop; store calls run elsewhere and
/// their results hop back to the loop as events.
final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = Frame
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let core: ServerCore
    private var machine: ConnectionStateMachine
    private var context: ChannelHandlerContext?
    private var peer = "unknown"
    private var logger: Logger
    private var counted = false
    private var watcherID: UInt64?
    /// The verb of each request in flight, by tag: its answer is counted and logged with it.
    private let verbs = VerbLedger()
    private var idleTimer: Scheduled<Void>?
    private var authTimer: Scheduled<Void>?
    private var revocationTimer: Scheduled<Void>?

    init(core: ServerCore) {
        self.core = core
        logger = core.logger
        let tokens = core.tokens
        let metrics = core.metrics
        var configuration = ConnectionStateMachine.Configuration(
            limits: core.limits, dataset: core.store.dataset, forwardsWrites: core.replicator != nil,
            identityOfToken: { tokens.identity(ofHash: $0) })
        let verbs = verbs
        configuration.requestParsed = { tag, verb in if let tag { verbs.byTag[tag] = verb } }
        configuration.editsWatched = { metrics.editsWatched.increment(by: Int64($0)) }
        machine = ConnectionStateMachine(configuration: configuration, now: .now())
    }

    // MARK: Channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { opened(context: context) }
    }

    /// The context holds this handler, and this handler holds the context: without letting go of it here, every
    /// connection's handler (with its queue, a BATCH's lines among it) and channel outlived the connection.
    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        opened(context: context)
        context.fireChannelActive()
    }

    private func opened(context: ChannelHandlerContext) {
        guard !counted else { return }
        counted = true
        peer = context.channel.remoteAddress?.ipAddress ?? "unknown"
        logger[metadataKey: "peer"] = "\(peer)"
        logger[metadataKey: "connection"] = "\(core.connectionNumbers.wrappingAdd(1, ordering: .relaxed).newValue)"
        let count = core.connectionCount.wrappingAdd(1, ordering: .relaxed).newValue
        core.metrics.connections.increment()
        core.metrics.connectionsOpen.record(count)
        core.opened(context.channel)
        logger.debug("connection opened")
        perform(machine.opened(connections: count, shuttingDown: core.shuttingDown.load(ordering: .relaxed)))
    }

    func channelInactive(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        authTimer?.cancel()
        revocationTimer?.cancel()
        perform(machine.closed())
        if counted {
            let count = core.connectionCount.wrappingSubtract(1, ordering: .relaxed).newValue
            core.metrics.connectionsOpen.record(count)
            core.closed(context.channel)
        }
        logger.debug("connection closed")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // TLS failures (plaintext clients, bad handshakes) and resets: log and close, never crash.
        logger.info("connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ShutdownRequested {
            perform(machine.shutdownRequested())
            return
        }
        if let done = event as? TLSHandshakeCompleted {
            logger.debug("TLS established", metadata: ["tls": "\(done.protocolVersion) \(done.cipher)"])
        }
        context.fireUserInboundEventTriggered(event)
    }

    func read(context: ChannelHandlerContext) {
        perform(machine.readRequested())
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        perform(machine.lineRead(unwrapInboundIn(data), now: .now()))
    }

    // MARK: Performing actions

    private func perform(_ actions: [ConnectionStateMachine.Action]) {
        for action in actions { perform(action) }
    }

    private func perform(_ action: ConnectionStateMachine.Action) {
        guard let context else { return }
        switch action {
        case .send(let replies):
            write(replies)
            context.flush()
        case .write(let replies):
            write(replies)
        case .writeEdits(let buffer):
            context.write(wrapOutboundOut(buffer), promise: nil)
        case .flush:
            context.flush()
        case .close:
            closeOnceWritten(context: context)
        case .read:
            context.read()
        case .greet:
            onLoop({ await $0.capabilities() }) { $0.machine.greeted($1) }
        case .run(let tag, let command, let identity):
            run(tag, command, identity)
        case .forwardBatch(let tag, let lines, let identity):
            guard let replicator = core.replicator else { return }
            onLoop({ await $0.forwardBatch(tag, lines: lines, identity: identity, via: replicator) }) {
                $0.machine.answered($1)
            }
        case .decodePropose(let number, let tag, let edit, let identity):
            perform(machine.decoded(number, core.decodePropose(tag, edit: edit, identity: identity)))
        case .decodeBatch(let number, let tag, let lines, let identity):
            // Off the event loop: a batch of thousands of lines takes milliseconds to decode.
            onLoop({ $0.decodeBatch(tag, lines: lines, identity: identity) }) { $0.machine.decoded(number, $1) }
        case .submit(let number, let tag, let batch, let proposals):
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            let count = proposals.count
            core.submit(proposals) { result in
                bound.eventLoop.execute {
                    let handler = bound.value
                    let replies = handler.core.answer(result, tag: tag, batch: batch, count: count)
                    handler.perform(handler.machine.committed(number, replies))
                }
            }
        case .authenticate(let tag, let token):
            authenticate(tag, token: token)
        case .delayRefusal(let tag):
            context.eventLoop.assumeIsolated().scheduleTask(in: core.authDelay(for: peer)) { [weak self] in
                guard let self else { return }
                self.perform(self.machine.refusalDue(tag))
            }
        case .startWatch:
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            watcherID = core.broadcaster.add { units in
                bound.eventLoop.execute {
                    let handler = bound.value
                    let writable = handler.context?.channel.isWritable ?? false
                    handler.perform(handler.machine.live(units, writable: writable))
                }
            }
            core.metrics.watchers.record(core.broadcaster.count)
            onLoop({ (try? await $0.store.head().version) ?? 0 }) { $0.machine.watchHead($1) }
        case .stopWatch:
            if let watcherID { core.broadcaster.remove(watcherID) }
            watcherID = nil
            core.metrics.watchers.record(core.broadcaster.count)
            revocationTimer?.cancel()
        case .fetchWatchPage(let after):
            let page = machine.configuration.watchPage
            onLoop({ core -> Result<([Edit], Int64), Error> in
                do {
                    let edits = try await core.store.edits(after: after, limit: page)
                    return .success((edits, try await core.store.head().version))
                } catch {
                    return .failure(error)
                }
            }) { handler, result in
                switch result {
                case .success(let (edits, head)): handler.machine.watchPage(edits, head: head)
                case .failure(let error):
                    handler.machine.watchFailed(
                        handler.core.failure(handler.machine.watchTag ?? "*", error), now: .now())
                }
            }
        case .reportWhenWritten:
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            let stall = context.eventLoop.assumeIsolated().scheduleTask(in: core.limits.closeGrace) { [weak self] in
                guard let self else { return }
                self.perform(self.machine.watchStalled())
            }
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).whenComplete { _ in
                stall.cancel()
                let handler = bound.value
                handler.perform(handler.machine.watchWritten())
            }
        case .scheduleRevocationCheck:
            revocationTimer?.cancel()
            revocationTimer = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(1)) { [weak self] in
                guard let self else { return }
                self.perform(self.machine.revocationCheckDue())
            }
        case .scheduleAuthTimer(let after):
            authTimer = context.eventLoop.assumeIsolated().scheduleTask(in: after) { [weak self] in
                guard let self else { return }
                self.perform(self.machine.authTimerFired())
            }
        case .scheduleIdleCheck(let after):
            idleTimer?.cancel()
            idleTimer = context.eventLoop.assumeIsolated().scheduleTask(in: after) { [weak self] in
                guard let self else { return }
                self.perform(self.machine.idleCheckDue(now: .now()))
            }
        case .cancelIdleCheck:
            idleTimer?.cancel()
        case .cancelAuthTimer:
            authTimer?.cancel()
        case .log(let level, let message):
            logger.log(level: level, "\(message)")
        }
    }

    /// Runs `work` off the event loop, then reports its result to the machine on the loop.
    private func onLoop<T: Sendable>(
        _ work: @escaping @Sendable (ServerCore) async -> T,
        then report: @escaping (ConnectionHandler, T) -> [ConnectionStateMachine.Action]
    ) {
        guard let context else { return }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let core = self.core
        let reportBound = NIOLoopBound(report, eventLoop: context.eventLoop)
        Task {
            let result = await work(core)
            bound.eventLoop.execute {
                let handler = bound.value
                handler.perform(reportBound.value(handler, result))
            }
        }
    }

    /// Executes a verb; its replies are reported as the verb's answer.
    private func run(_ tag: String, _ command: Command, _ identity: TokenStore.Identity) {
        let answered: (ConnectionHandler, [Reply]) -> [ConnectionStateMachine.Action] = { $0.machine.answered($1) }
        switch command {
        case .ping:
            perform(machine.answered([.ok(tag: tag, .object(["time": .string(WallClock.now().rfc3339)]))]))
        case .caps:
            onLoop({ [.data(kind: "CAPS", await $0.capabilities()), .ok(tag: tag, nil)] }, then: answered)
        case .pull(let since, let limit):
            onLoop({ await $0.pull(tag, since: since, limit: limit) }, then: answered)
        case .get(let ref, let at):
            // A read that needs no task: the store answers on its reader's thread.
            guard let context else { return }
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            core.get(tag, ref, at: at) { replies in
                bound.eventLoop.execute {
                    let handler = bound.value
                    handler.perform(handler.machine.answered(replies))
                }
            }
        case .log(let filter):
            onLoop({ await $0.log(tag, filter) }, then: answered)
        case .history(let ref):
            onLoop({ await $0.history(tag, ref) }, then: answered)
        case .propose(let edit):
            guard let replicator = core.replicator else { return }
            onLoop({ await $0.forward(tag, edit: edit, identity: identity, via: replicator) }, then: answered)
        case .conflicts:
            onLoop({ await $0.conflicts(tag) }, then: answered)
        case .auth, .batch, .watch, .quit:
            preconditionFailure("\(command.verb) is decided by the state machine")
        }
    }

    private func authenticate(_ tag: String, token: String) {
        let hash = SHA256.hash(Array(token.utf8))
        let found = token.utf8.count <= 256 ? core.tokens.identity(ofHash: hash) : nil
        guard found == nil, token.utf8.count <= 256, core.tokens.isShared else {
            return perform(authenticated(tag, as: found, tokenHash: hash))
        }
        // Tokens in a database: one added through another node (or `timelined token add`) a moment ago may not be
        // in this node's copy yet.
        onLoop({ await $0.tokens.refreshedIdentity(ofHash: hash) }) { handler, found in
            handler.authenticated(tag, as: found, tokenHash: hash)
        }
    }

    private func authenticated(_ tag: String, as found: TokenStore.Identity?, tokenHash hash: Digest)
        -> [ConnectionStateMachine.Action]
    {
        core.recordAuth(success: found != nil, address: peer)
        guard let found else { return machine.authenticationFailed(tag, why: core.tokens.refusal(ofHash: hash)) }
        core.tokens.recordUse(ofHash: hash)
        logger[metadataKey: "user"] = "\(found.name)"
        return machine.authenticated(tag, as: found, tokenHash: hash)
    }

    // MARK: Writing

    /// Writes the replies as one buffer: a PULL answers with a page of thousands of lines.
    private func write(_ replies: [Reply]) {
        guard let context, !replies.isEmpty else { return }
        var buffer = context.channel.allocator.buffer(capacity: 256 * replies.count)
        for reply in replies {
            reply.write(into: &buffer)
            let (tag, code): (String?, ErrorCode?)
            switch reply {
            case .ok(let t, _): (tag, code) = (t, nil)
            case .no(let t, let c, _, _): (tag, code) = (t, c)
            case .bad(let t, let c, _): (tag, code) = (t, c)
            case .bye(let c, _):
                core.metrics.disconnected(c)
                continue
            default: continue
            }
            // A tagged line ends its request.
            let verb = tag.flatMap { verbs.byTag.removeValue(forKey: $0) } ?? "INVALID"
            core.metrics.answered(verb: verb, result: code?.rawValue ?? "OK")
            if let code, logger.logLevel <= .debug {
                logger.debug("refused", metadata: ["tag": "\(tag ?? "*")", "verb": "\(verb)", "code": "\(code)"])
            }
        }
        context.write(wrapOutboundOut(buffer), promise: nil)
    }

    /// Closes once everything written so far (the reason last) has reached the socket, so that a peer reading
    /// its backlog still learns why; a peer that does not read is closed after `closeGrace` regardless.
    private func closeOnceWritten(context: ChannelHandlerContext) {
        let channel = context.channel
        let deadline = context.eventLoop.assumeIsolated().scheduleTask(in: core.limits.closeGrace) {
            channel.close(promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).whenComplete { _ in
            deadline.cancel()
            channel.close(promise: nil)
        }
    }
}

/// Tags to verbs for the requests of one connection, touched only on its event loop (the state machine parses there,
/// and replies are written there).
final class VerbLedger: @unchecked Sendable {
    var byTag: [String: String] = [:]
}
