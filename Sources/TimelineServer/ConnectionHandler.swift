import Logging
import NIOConcurrencyHelpers
import NIOCore
import TimelineCore
import TimelineStore
import TimelineTLS
import TimelineWire

/// Asks a connection to finish what it is doing and close (graceful shutdown).
struct ShutdownRequested: Sendable {}

/// One client connection: reads framed lines, queues requests so that completions go out in request order,
/// runs one at a time, and streams WATCH. Confined to its channel's event loop; store calls run as tasks
/// whose results hop back to the loop.
final class ConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = Frame
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Work {
        case request(Request)
        case batch(Request, [String])
        /// A refusal decided while reading, sent in its turn.
        case reply(Reply)
        /// Lines to send, then close.
        case closeWith([Reply])
    }

    struct BatchCollector {
        var request: Request
        var expected: Int
        var lines: [String] = []
        var problem: Reply?
    }

    struct WatchState {
        var tag: String
        var lastSent: Int64
        var live = false
        var catchingUp = false
        var watcherID: UInt64 = 0
    }

    private let core: ServerCore
    private var context: ChannelHandlerContext?
    private var identity: TokenStore.Identity?
    /// The hash of the token `identity` came from: checked against the token file before each request, so that
    /// a revoked token stops at its next request, not at its next connection.
    private var tokenHash: Digest?
    /// The identity was dropped because its token was revoked: requests needing one say so.
    private var revoked = false
    private var revocationTimer: Scheduled<Void>?
    private var peer = "unknown"
    private var logger: Logger

    /// Works not started yet. A work leaves it when it starts, so that a long-lived connection does not keep the
    /// lines of every BATCH it has sent (an array with a moving head kept up to 64 of them).
    private var queue = CircularBuffer<Work>()
    private var busy = true  // until the greeting is out
    private var collecting: BatchCollector?
    private var watch: WatchState?
    private var heldRead = false
    private var inputClosed = false
    private var closing = false
    private var shuttingDown = false
    private var counted = false

    /// Writes (PROPOSE and BATCH on a primary) in flight, oldest first. Each is decoded, then submitted to the
    /// store in request order, and answered in that order; a later write is decoded, and committed with the
    /// earlier ones, while they commit. Any other request waits until none is in flight, so it sees them all.
    private struct Write {
        enum State {
            case decoding
            case ready([Proposal])
            case submitted
            case answered([Reply])
        }
        var tag: String
        var batch: Bool
        var state: State
    }
    private var writes: [Write] = []
    /// The request-order number of `writes[0]`, and of the next write to submit.
    private var writesBase = 0
    private var writesSubmitted = 0
    static let maxWritesInFlight = 32

    private var lastActivity = NIODeadline.now()
    private var idleTimer: Scheduled<Void>?
    private var authTimer: Scheduled<Void>?

    init(core: ServerCore) {
        self.core = core
        logger = core.logger
    }

    private var pendingWork: Int { queue.count + writes.count }

    /// Something is being executed or committed for this connection.
    private var working: Bool { busy || !writes.isEmpty }

    // MARK: Lifecycle

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
        let count = core.connectionCount.wrappingAdd(1, ordering: .relaxed).newValue
        core.opened(context.channel)
        if count > core.limits.maxConnections {
            logger.warning("connection refused: too many connections", metadata: ["connections": "\(count)"])
            send(
                [
                    .bye(
                        code: .tooManyConnections,
                        message: "the server has \(core.limits.maxConnections) connections already; try again later")
                ], close: true)
            return
        }
        if core.shuttingDown.load(ordering: .relaxed) {
            send([.bye(code: .shutdown, message: "the server is shutting down")], close: true)
            return
        }
        logger.debug("connection opened")
        scheduleIdleCheck(context: context, after: core.limits.idleTimeout)
        let channel = context.channel
        authTimer = context.eventLoop.assumeIsolated().scheduleTask(in: core.limits.authTimeout) { [weak self] in
            guard let self, self.identity == nil, !self.closing else { return }
            self.logger.info("closing: not authenticated in time")
            self.send([.bye(code: .authTimeout, message: "not authenticated in time")], close: true)
            _ = channel
        }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let core = self.core
        Task {
            let caps = await core.capabilities()
            bound.eventLoop.execute {
                let handler = bound.value
                handler.write(.hello(caps))
                handler.flush()
                handler.busy = false
                handler.drain()
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        closing = true
        idleTimer?.cancel()
        authTimer?.cancel()
        revocationTimer?.cancel()
        if let watch { core.broadcaster.remove(watch.watcherID) }
        watch = nil
        if counted {
            core.connectionCount.wrappingSubtract(1, ordering: .relaxed)
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
            beginShutdown()
            return
        }
        if let done = event as? TLSHandshakeCompleted {
            logger.debug("TLS established", metadata: ["tls": "\(done.protocolVersion) \(done.cipher)"])
        }
        context.fireUserInboundEventTriggered(event)
    }

    // MARK: Reading

    func read(context: ChannelHandlerContext) {
        // Backpressure: a client that pipelines faster than we answer stops being read. A closing connection
        // keeps reading: TLS below may still need the peer's handshake to deliver a last line.
        if pendingWork >= core.limits.maxPipelined, !closing {
            heldRead = true
        } else {
            context.read()
        }
    }

    private func resumeReadingIfHeld() {
        guard heldRead, pendingWork < core.limits.maxPipelined / 2, let context else { return }
        heldRead = false
        context.read()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !inputClosed, !closing else { return }
        lastActivity = .now()
        let frame = unwrapInboundIn(data)
        if collecting != nil {
            collectBatchLine(frame)
            return
        }
        if watch != nil {
            watchInput(frame)
            return
        }
        switch frame {
        case .tooLong(let head):
            enqueue(
                .reply(
                    .bad(
                        tag: Request.tag(of: head), code: .lineTooLong,
                        message: "the line is longer than \(core.limits.maxLineLength) bytes")))
        case .line(let line):
            if line.readableBytes == 0 { return }  // blank lines are ignored
            switch Request.parse(line) {
            case .failure(let error):
                enqueue(.reply(.refusal(error)))
            case .success(let request) where request.verb == .batch:
                startBatch(request)
            case .success(let request):
                enqueue(.request(request))
            }
        }
        drain()
    }

    private func startBatch(_ request: Request) {
        let n: Int
        switch request.command {
        case .success(.batch(let count)): n = count
        case .success: preconditionFailure("a BATCH request parses as BATCH")
        case .failure(let error):
            enqueue(.reply(.refusal(tag: request.tag, error)))
            drain()
            return
        }
        guard n <= core.limits.maxBatch else {
            // The server cannot tell where so large a batch would end, so it stops reading this connection.
            inputClosed = true
            enqueue(
                .closeWith([
                    .bad(
                        tag: request.tag, code: .batchTooLarge,
                        message: "a batch holds at most \(core.limits.maxBatch) edits"),
                    .bye(code: .protocolError, message: "cannot skip the lines of a batch over the limit"),
                ]))
            drain()
            return
        }
        collecting = BatchCollector(request: request, expected: n)
    }

    private func collectBatchLine(_ frame: Frame) {
        guard var batch = collecting else { return }
        // Leave the batch's lines uniquely referenced: appending to a shared array copies it, once per line.
        collecting = nil
        switch frame {
        case .tooLong:
            if batch.problem == nil {
                batch.problem = .bad(
                    tag: batch.request.tag, code: .lineTooLong,
                    message:
                        "line \(batch.lines.count + 1) of the batch is longer than \(core.limits.maxLineLength) bytes")
            }
            batch.lines.append("")
        case .line(let line):
            // The same rules, in the same order, as for a request line: a PROPOSE and a BATCH line are alike.
            let text = String(validating: line.readableBytesView, as: UTF8.self)
            let problem: (ErrorCode, String)? =
                text == nil
                ? (.badUTF8, "is not valid UTF-8")
                : Request.hasControlCharacters(line)
                    ? (.badSyntax, "contains control characters (U+0000 to U+001F)") : nil
            if let problem {
                if batch.problem == nil {
                    batch.problem = .bad(
                        tag: batch.request.tag, code: problem.0,
                        message: "line \(batch.lines.count + 1) of the batch \(problem.1)")
                }
                batch.lines.append("")
            } else {
                batch.lines.append(text!)
            }
        }
        if batch.lines.count == batch.expected {
            collecting = nil
            enqueue(batch.problem.map { .reply($0) } ?? .batch(batch.request, batch.lines))
            drain()
        } else {
            collecting = batch
        }
    }

    private func enqueue(_ work: Work) {
        queue.append(work)
    }

    // MARK: Executing

    private func drain() {
        while !busy, !closing, let work = queue.first {
            checkRevocation()
            let pipelined = pipelinable(work)
            if !writes.isEmpty, !pipelined || writes.count >= Self.maxWritesInFlight { break }
            queue.removeFirst()
            if pipelined { startWrite(work) } else { execute(work) }
        }
        if !working, shuttingDown, !closing {
            send([.bye(code: .shutdown, message: "the server is shutting down")], close: true)
        }
        resumeReadingIfHeld()
    }

    private func execute(_ work: Work) {
        switch work {
        case .reply(let reply):
            send([reply])
        case .closeWith(let replies):
            send(replies, close: true)
        case .batch(let request, let lines):
            guard let identity = authorize(request) else { return }
            guard let replicator = core.replicator else { return startWrite(work) }
            run { core in await core.forwardBatch(request.tag, lines: lines, identity: identity, via: replicator) }
        case .request(let request):
            guard let identity = authorize(request) else { return }
            let command: Command
            switch request.command {
            case .success(let c): command = c
            case .failure(let error): return send([.refusal(tag: request.tag, error)])
            }
            let tag = request.tag
            switch command {
            case .ping:
                send([.ok(tag: tag, .object(["time": .string(WallClock.now().rfc3339)]))])
            case .caps:
                run { core in [.data(kind: "CAPS", await core.capabilities()), .ok(tag: tag, nil)] }
            case .quit:
                send([.bye(code: .goodbye, message: "goodbye"), .ok(tag: tag, nil)], close: true)
            case .auth(let token):
                authenticate(tag, token: token)
            case .pull(let since, let limit):
                run { core in await core.pull(tag, since: since, limit: limit) }
            case .get(let ref, let at):
                answer { core, done in core.get(tag, ref, at: at, done: done) }
            case .log(let filter):
                run { core in await core.log(tag, filter) }
            case .history(let ref):
                run { core in await core.history(tag, ref) }
            case .propose(let edit):
                guard let replicator = core.replicator else { return startWrite(work) }
                run { core in await core.forward(tag, edit: edit, identity: identity, via: replicator) }
            case .watch(let since):
                startWatch(tag, since: since)
            case .conflicts:
                run { core in await core.conflicts(tag) }
            case .batch:
                break  // handled when read
            }
        }
    }

    // MARK: Writes in flight

    /// A write that can go in flight: PROPOSE or BATCH on a primary, by an identity allowed to make it.
    private func pipelinable(_ work: Work) -> Bool {
        guard core.replicator == nil, let identity else { return false }
        switch work {
        case .request(let request):
            // Only a well-formed PROPOSE: a malformed one is answered in turn, like any other refusal.
            guard case .success(.propose) = request.command else { return false }
            return identity.role.may(.propose)
        case .batch: return identity.role.may(.batch)
        case .reply, .closeWith: return false
        }
    }

    private func startWrite(_ work: Work) {
        guard let context, let identity else { return }
        let number = writesBase + writes.count
        switch work {
        case .request(let request):
            writes.append(Write(tag: request.tag, batch: false, state: .decoding))
            guard case .success(.propose(let edit)) = request.command else { preconditionFailure("a PROPOSE") }
            decoded(number, core.decodePropose(request.tag, edit: edit, identity: identity))
        case .batch(let request, let lines):
            writes.append(Write(tag: request.tag, batch: true, state: .decoding))
            // Off the event loop: a batch of thousands of lines takes milliseconds to decode.
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            let core = self.core
            Task {
                let result = core.decodeBatch(request.tag, lines: lines, identity: identity)
                bound.eventLoop.execute {
                    bound.value.decoded(number, result)
                    bound.value.drain()
                }
            }
        case .reply, .closeWith:
            break
        }
    }

    private func decoded(_ number: Int, _ result: ServerCore.Decoded) {
        guard number >= writesBase, number - writesBase < writes.count else { return }
        switch result {
        case .proposals(let proposals): writes[number - writesBase].state = .ready(proposals)
        case .refused(let reply): writes[number - writesBase].state = .answered([reply])
        }
        submitReady()
        deliverAnswered()
    }

    /// Submits decoded writes to the store in request order, up to the first one still being decoded.
    private func submitReady() {
        guard let context else { return }
        while writesSubmitted < writesBase + writes.count {
            let i = writesSubmitted - writesBase
            if case .decoding = writes[i].state { return }
            if case .ready(let proposals) = writes[i].state {
                writes[i].state = .submitted
                let number = writesSubmitted
                let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
                let (tag, batch, count) = (writes[i].tag, writes[i].batch, proposals.count)
                core.submit(proposals) { result in
                    bound.eventLoop.execute {
                        let handler = bound.value
                        handler.answered(number, handler.core.answer(result, tag: tag, batch: batch, count: count))
                        handler.drain()
                    }
                }
            }
            writesSubmitted += 1
        }
    }

    private func answered(_ number: Int, _ replies: [Reply]) {
        guard number >= writesBase, number - writesBase < writes.count else { return }
        writes[number - writesBase].state = .answered(replies)
        deliverAnswered()
    }

    /// Sends the answers of the oldest writes that have one, in request order.
    private func deliverAnswered() {
        var sent = false
        while let first = writes.first, case .answered(let replies) = first.state {
            writes.removeFirst()
            writesBase += 1
            if !closing { write(replies) }
            sent = true
        }
        if sent, !closing { flush() }
    }

    /// The caller's identity if the verb is allowed, else sends the refusal and returns nil.
    /// Verbs that need no identity get a placeholder reader identity that is never used for writing.
    private func authorize(_ request: Request) -> TokenStore.Identity? {
        let verb = request.verb
        guard Role.required(for: verb) != nil else { return identity ?? TokenStore.Identity(name: "", role: .reader) }
        guard let identity else {
            if revoked {
                send([
                    .no(
                        tag: request.tag, code: .authRevoked,
                        message: "the token this connection authenticated with was revoked; AUTH with another",
                        detail: nil)
                ])
            } else {
                send([
                    .no(
                        tag: request.tag, code: .authRequired, message: "\(verb.rawValue) needs AUTH first", detail: nil
                    )
                ])
            }
            return nil
        }
        guard identity.role.may(verb) else {
            send([
                .no(
                    tag: request.tag, code: .forbidden,
                    message: "role \(identity.role.rawValue) may not \(verb.rawValue)", detail: nil)
            ])
            return nil
        }
        return identity
    }

    /// Runs an async verb; its replies are sent in turn and the queue moves on.
    private func run(_ body: @escaping @Sendable (ServerCore) async -> [Reply]) {
        answer { core, done in Task { done(await body(core)) } }
    }

    /// `run` for a verb that answers through a callback, from whatever thread: a read that needs no task.
    private func answer(_ body: (ServerCore, @escaping @Sendable ([Reply]) -> Void) -> Void) {
        guard let context else { return }
        busy = true
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        body(core) { replies in
            bound.eventLoop.execute {
                let handler = bound.value
                handler.busy = false
                handler.send(replies)
                handler.drain()
            }
        }
    }

    private func authenticate(_ tag: String, token: String) {
        guard let context else { return }
        // One identity per connection: writes in flight and a WATCH would otherwise change author midway.
        if let identity {
            send([
                .no(
                    tag: tag, code: .alreadyAuthenticated,
                    message: "this connection is authenticated as \(identity.name); open another for another token",
                    detail: nil)
            ])
            return
        }
        let hash = SHA256.hash(Array(token.utf8))
        let found = token.utf8.count <= 256 ? core.tokens.identity(ofHash: hash) : nil
        core.recordAuth(success: found != nil, address: peer)
        if let found {
            identity = found
            tokenHash = hash
            revoked = false
            authTimer?.cancel()
            logger[metadataKey: "user"] = "\(found.name)"
            logger.info("authenticated", metadata: ["role": "\(found.role.rawValue)"])
            send([.ok(tag: tag, .object(["user": .string(found.name), "role": .string(found.role.rawValue)]))])
            return
        }
        // Never log the token. Hold the answer longer for each recent failure from this address.
        let delay = core.authDelay(for: peer)
        logger.warning("authentication failed")
        busy = true
        context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [weak self] in
            guard let self else { return }
            self.busy = false
            self.send([
                .no(tag: tag, code: .authFailed, message: "the token is unknown or revoked", detail: nil)
            ])
            self.drain()
        }
    }

    // MARK: Revocation

    /// Drops the identity if its token was revoked (or its role changed) since AUTH; a watcher is told and closed.
    /// Returns whether it was.
    @discardableResult
    private func checkRevocation() -> Bool {
        guard let identity, let tokenHash else { return false }
        let now = core.tokens.identity(ofHash: tokenHash)
        guard now != identity else { return false }
        logger.info("token revoked or changed: dropping the connection's identity")
        self.identity = nil
        self.tokenHash = nil
        revoked = true
        if watch != nil {
            if let watch { core.broadcaster.remove(watch.watcherID) }
            watch = nil
            send(
                [.bye(code: .authRevoked, message: "the token this connection authenticated with was revoked")],
                close: true)
        }
        return true
    }

    /// A watcher makes no requests: its token is checked each second while it watches.
    private func watchRevocation(context: ChannelHandlerContext) {
        revocationTimer?.cancel()
        revocationTimer = context.eventLoop.assumeIsolated().scheduleTask(in: .seconds(1)) { [weak self] in
            guard let self, self.watch != nil, !self.closing, !self.checkRevocation(), let context = self.context
            else { return }
            self.watchRevocation(context: context)
        }
    }

    // MARK: WATCH

    private func startWatch(_ tag: String, since: Int64) {
        guard let context else { return }
        busy = true
        var state = WatchState(tag: tag, lastSent: since)
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        state.watcherID = core.broadcaster.add { units in
            bound.eventLoop.execute { bound.value.live(units) }
        }
        watch = state
        idleTimer?.cancel()  // a watcher is not idle
        watchRevocation(context: context)
        let core = self.core
        Task {
            let head = (try? await core.store.head().version) ?? 0
            bound.eventLoop.execute {
                let handler = bound.value
                guard var watch = handler.watch else { return }
                if since > head {
                    handler.core.broadcaster.remove(watch.watcherID)
                    handler.watch = nil
                    handler.busy = false
                    // The same reply as PULL's: the head and the dataset, for a client to decide what to do.
                    handler.send([
                        .no(
                            tag: tag, code: .resync,
                            message:
                                "version \(since) is beyond this server's version \(head): this replica belongs to "
                                + "another dataset or a restored server; start again from 0",
                            detail: .object([
                                "version": .int(head), "dataset": .string(handler.core.store.dataset),
                            ]))
                    ])
                    handler.drain()
                    return
                }
                watch.catchingUp = true
                handler.watch = watch
                handler.catchUp()
            }
        }
    }

    /// Sends stored edits after `lastSent` a page at a time, each page only once the previous one has been
    /// written to the socket, until the store's head is reached; then live edits take over.
    private func catchUp() {
        guard let context, let watch, watch.catchingUp else { return }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let core = self.core
        let after = watch.lastSent
        Task {
            do {
                let page = try await core.store.edits(after: after, limit: 1_000)
                let head = try await core.store.head().version
                bound.eventLoop.execute { bound.value.caughtUpPage(page, head: head) }
            } catch {
                bound.eventLoop.execute { bound.value.endWatch(failure: error) }
            }
        }
    }

    /// How many bytes of edits a watcher is handed at once: half the outbound limit, so that a commit of any size
    /// (a BATCH of thousands of large edits) is streamed in parts, each written only once the one before has
    /// been, and what waits for a watcher stays within the limit.
    private var watchChunk: Int { max(64 << 10, core.limits.maxOutboundBuffer / 2) }

    /// Writes edits in order, up to `watchChunk` bytes (at least one edit); returns how many were written.
    private func writeEdits(_ edits: some Collection<Edit>) -> Int {
        guard let context else { return 0 }
        var buffer = context.channel.allocator.buffer(capacity: 4096)
        var count = 0
        for edit in edits {
            if count > 0, buffer.readableBytes >= watchChunk { break }
            Reply.data(kind: "EDIT", EditCodec.json(edit)).write(into: &buffer)
            count += 1
        }
        if count > 0 { context.write(wrapOutboundOut(buffer), promise: nil) }
        return count
    }

    /// Continues catching up once what was written has reached the socket; a watcher that does not read it
    /// within the close grace (the time a closing connection is given to read its last lines) is a slow consumer.
    private func catchUpOnceWritten() {
        guard let context else { return }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let stall = context.eventLoop.assumeIsolated().scheduleTask(in: core.limits.closeGrace) { [weak self] in
            self?.slowConsumer()
        }
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0))).whenComplete { _ in
            stall.cancel()
            bound.value.catchUp()
        }
    }

    private func slowConsumer() {
        guard !closing else { return }
        logger.warning("closing a watcher that does not read")
        send(
            [
                .bye(
                    code: .slowConsumer,
                    message: "more than \(core.limits.maxOutboundBuffer) bytes are waiting for you to read them")
            ], close: true)
    }

    private func caughtUpPage(_ page: [Edit], head: Int64) {
        guard watch != nil, !checkRevocation() else { return }
        guard var watch, !closing else { return }
        let fresh = page.filter { $0.version > watch.lastSent }
        let written = writeEdits(fresh)
        if written > 0 { watch.lastSent = fresh[written - 1].version }
        self.watch = watch
        if watch.lastSent < head || page.count == 1_000 || written < fresh.count {
            catchUpOnceWritten()
            return
        }
        flush()
        watch.catchingUp = false
        watch.live = true
        self.watch = watch
    }

    private func live(_ units: [[Edit]]) {
        guard watch != nil, !checkRevocation() else { return }
        guard var watch, watch.live, let context, !closing else { return }
        let fresh = units.joined().filter { $0.version > watch.lastSent }
        guard let first = fresh.first else { return }
        if first.version != watch.lastSent + 1 {
            // Edits committed while we switched from catching up to live: read them from the store.
            watch.live = false
            watch.catchingUp = true
            self.watch = watch
            catchUp()
            return
        }
        guard context.channel.isWritable else {
            slowConsumer()
            return
        }
        let written = writeEdits(fresh)
        watch.lastSent = fresh[written - 1].version
        if written < fresh.count {
            // A commit larger than a chunk: the rest is read from the store, a chunk at a time, as it is read.
            watch.live = false
            watch.catchingUp = true
            self.watch = watch
            catchUpOnceWritten()
            return
        }
        self.watch = watch
        flush()
    }

    private func watchInput(_ frame: Frame) {
        if case .line(let line) = frame,
            String(decoding: line.readableBytesView, as: UTF8.self).trimmingCharacters(in: " \t").uppercased() == "DONE"
        {
            endWatch(failure: nil)
            return
        }
        write(.bad(tag: nil, code: .expectedDone, message: "a WATCH is running; send DONE to end it"))
        flush()
    }

    private func endWatch(failure: Error?) {
        guard let watch else { return }
        core.broadcaster.remove(watch.watcherID)
        self.watch = nil
        busy = false
        if let failure {
            send([core.failure(watch.tag, failure)])
        } else {
            send([.ok(tag: watch.tag, .object(["version": .int(watch.lastSent)]))])
        }
        if let context { scheduleIdleCheck(context: context, after: core.limits.idleTimeout) }
        lastActivity = .now()
        drain()
    }

    // MARK: Shutdown and timers

    private func beginShutdown() {
        shuttingDown = true
        if let watch {
            core.broadcaster.remove(watch.watcherID)
            self.watch = nil
            send([.bye(code: .shutdown, message: "the server is shutting down")], close: true)
            return
        }
        // Requests not started yet are refused; the ones running (and writes in flight) finish, then BYE (see drain).
        let waiting = queue
        queue.removeAll()
        inputClosed = true
        for work in waiting {
            switch work {
            case .request(let r), .batch(let r, _):
                write(
                    .no(
                        tag: r.tag, code: .shuttingDown, message: "the server is shutting down; not executed",
                        detail: nil))
            case .reply(let reply):
                write(reply)
            case .closeWith:
                break
            }
        }
        flush()
        if !working { send([.bye(code: .shutdown, message: "the server is shutting down")], close: true) }
    }

    private func scheduleIdleCheck(context: ChannelHandlerContext, after delay: TimeAmount) {
        idleTimer?.cancel()
        idleTimer = context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [weak self] in
            guard let self, !self.closing, self.watch == nil else { return }
            let idle = NIODeadline.now() - self.lastActivity
            if idle >= self.core.limits.idleTimeout, !self.working {
                self.logger.info("closing an idle connection")
                self.send(
                    [
                        .bye(
                            code: .idleTimeout,
                            message:
                                "no request for \(self.core.limits.idleTimeout.nanoseconds / 1_000_000_000) seconds")
                    ], close: true)
            } else if let context = self.context {
                self.scheduleIdleCheck(context: context, after: max(.seconds(1), self.core.limits.idleTimeout - idle))
            }
        }
    }

    // MARK: Writing

    private func write(_ reply: Reply) { write(CollectionOfOne(reply)) }

    /// Writes the replies as one buffer: a PULL answers with a page of thousands of lines.
    private func write(_ replies: some Collection<Reply>) {
        guard let context, !replies.isEmpty else { return }
        var buffer = context.channel.allocator.buffer(capacity: 256 * replies.count)
        for reply in replies { reply.write(into: &buffer) }
        context.write(wrapOutboundOut(buffer), promise: nil)
    }

    private func flush() {
        context?.flush()
    }

    private func send(_ replies: [Reply], close: Bool = false) {
        guard let context, !closing else { return }
        write(replies)
        flush()
        if close {
            closing = true
            closeOnceWritten(context: context)
        }
    }

    /// Closes once everything written so far (the reason last) has reached the socket, so that a peer reading
    /// its backlog still learns why; a peer that does not read is closed after `closeGrace` regardless.
    private func closeOnceWritten(context: ChannelHandlerContext) {
        if let watch { core.broadcaster.remove(watch.watcherID) }
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

extension String {
    fileprivate func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
