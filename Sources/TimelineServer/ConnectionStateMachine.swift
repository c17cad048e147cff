import Logging
import NIOCore
import TimelineCore
import TimelineStore
import TimelineWire

/// Every decision of one client connection, without a socket: the handler reports what happened (a line read,
/// a verb answered, a write decoded or committed, a timer fired, a shutdown asked) and performs the actions it
/// gets back, in order. What the machine promises, and its tests check:
/// - completions go out in request order; pipelined PROPOSE and BATCH on a primary commit together, in order,
///   and any other request waits until none is in flight, so that it sees them;
/// - at most `maxPipelined` requests are read ahead; reading resumes below half of it;
/// - a BATCH's lines are collected and checked as they arrive; one over the limit closes the connection,
///   since where it would end cannot be known;
/// - a WATCH streams edits in order, each once, and only DONE is read while it runs;
/// - a connection is closed (its reason written first) on QUIT, idleness, no AUTH in time, a watcher that does
///   not read, a revoked token while watching, and shutdown, which lets what runs finish and refuses the rest.
/// One file holds the machine's state and every decision on it, private to it; the events it is told and the
/// actions it returns are in ConnectionStateMachine+Actions.swift. Split further, its state could not be private.
struct ConnectionStateMachine {
    enum Work {
        case request(Request)
        case batch(Request, [String])
        /// A refusal decided while reading, sent in its turn.
        case reply(Reply)
        /// Lines to send, then close.
        case closeWith([Reply])
    }

    private struct BatchCollector {
        var request: Request
        var expected: Int
        var lines: [String] = []
        var problem: Reply?
    }

    private struct WatchState {
        var tag: String
        var lastSent: Int64
        var live = false
        var catchingUp = false
    }

    /// A write (PROPOSE or BATCH on a primary) in flight. Each is decoded, then submitted to the store in request
    /// order, and answered in that order; a later write is decoded, and committed with the earlier ones, while
    /// they commit.
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

    let configuration: Configuration
    private var limits: Limits { configuration.limits }

    /// Who the connection authenticated as, and the hash of the token it used (checked before each request by
    /// the handler, so that a revoked token stops at its next request).
    private(set) var identity: Identity?
    private(set) var tokenHash: Digest?
    /// The identity was dropped because its token was revoked or expired: requests needing one say so.
    private var revoked = false

    /// Works not started yet. A work leaves it when it starts, so that a long-lived connection does not keep the
    /// lines of every BATCH it has sent.
    private var queue = CircularBuffer<Work>()
    /// A verb is executing (or the greeting is not out yet).
    private var busy = true
    private var collecting: BatchCollector?
    private var watch: WatchState?
    private var heldRead = false
    private var inputClosed = false
    private(set) var closing = false
    private var shuttingDown = false
    private var writes: [Write] = []
    /// The request-order number of `writes[0]`, and of the next write to submit.
    private var writesBase = 0
    private var writesSubmitted = 0
    private var lastActivity: NIODeadline

    private var actions: [Action] = []

    init(configuration: Configuration, now: NIODeadline) {
        self.configuration = configuration
        lastActivity = now
    }

    /// The running WATCH's tag.
    var watchTag: String? { watch?.tag }
    private var pendingWork: Int { queue.count + writes.count }
    /// Something is being executed or committed for this connection.
    private var working: Bool { busy || !writes.isEmpty }

    private mutating func take() -> [Action] {
        defer { actions.removeAll(keepingCapacity: true) }
        return actions
    }

    // MARK: Lifecycle

    /// The connection is open; `connections` counts it.
    mutating func opened(connections: Int, shuttingDown serverShuttingDown: Bool) -> [Action] {
        if connections > limits.maxConnections {
            actions.append(.log(.warning, "connection refused: too many connections (\(connections))"))
            send(
                [
                    .bye(
                        code: .tooManyConnections,
                        message: "the server has \(limits.maxConnections) connections already; try again later")
                ], close: true)
        } else if serverShuttingDown {
            send([.bye(code: .shutdown, message: "the server is shutting down")], close: true)
        } else {
            actions.append(.scheduleIdleCheck(after: limits.idleTimeout))
            actions.append(.scheduleAuthTimer(after: limits.authTimeout))
            actions.append(.greet)
        }
        return take()
    }

    mutating func greeted(_ capabilities: JSON) -> [Action] {
        guard !closing else { return take() }
        send([.hello(capabilities)])
        busy = false
        drain()
        return take()
    }

    /// The channel closed: nothing more is sent.
    mutating func closed() -> [Action] {
        closing = true
        if watch != nil { actions.append(.stopWatch) }
        watch = nil
        return take()
    }

    /// The channel asks whether to read more: not while `maxPipelined` requests wait (a closing connection keeps
    /// reading: TLS below may still need the peer's handshake to deliver a last line).
    mutating func readRequested() -> [Action] {
        if pendingWork >= limits.maxPipelined, !closing {
            heldRead = true
        } else {
            actions.append(.read)
        }
        return take()
    }

    // MARK: Reading

    mutating func lineRead(_ frame: Frame, now: NIODeadline) -> [Action] {
        guard !inputClosed, !closing else { return take() }
        lastActivity = now
        if collecting != nil {
            collectBatchLine(frame)
        } else if watch != nil {
            watchInput(frame)
        } else {
            switch frame {
            case .tooLong(let head):
                queue.append(
                    .reply(
                        .bad(
                            tag: Request.tag(of: head), code: .lineTooLong,
                            message: "the line is longer than \(limits.maxLineLength) bytes")))
            case .line(let line):
                if line.readableBytes == 0 { return take() }  // blank lines are ignored
                switch Request.parse(line) {
                case .failure(let refused):
                    configuration.requestParsed(refused.tag, "INVALID")
                    queue.append(.reply(.refusal(refused)))
                case .success(let request):
                    configuration.requestParsed(request.tag, request.verb.rawValue)
                    if request.verb == .batch { startBatch(request) } else { queue.append(.request(request)) }
                }
            }
            drain()
        }
        return take()
    }

    private mutating func startBatch(_ request: Request) {
        let n: Int
        switch request.command {
        case .success(.batch(let count)): n = count
        case .success: preconditionFailure("a BATCH request parses as BATCH")
        case .failure(let error):
            queue.append(.reply(.refusal(tag: request.tag, error)))
            return
        }
        guard n <= limits.maxBatch else {
            // Where so large a batch would end cannot be known, so this connection is read no more.
            inputClosed = true
            queue.append(
                .closeWith([
                    .bad(
                        tag: request.tag, code: .batchTooLarge,
                        message: "a batch holds at most \(limits.maxBatch) edits"),
                    .bye(code: .protocolError, message: "cannot skip the lines of a batch over the limit"),
                ]))
            return
        }
        collecting = BatchCollector(request: request, expected: n)
    }

    private mutating func collectBatchLine(_ frame: Frame) {
        guard var batch = collecting else { return }
        // Leave the batch's lines uniquely referenced: appending to a shared array copies it, once per line.
        collecting = nil
        switch frame {
        case .tooLong:
            if batch.problem == nil {
                batch.problem = .bad(
                    tag: batch.request.tag, code: .lineTooLong,
                    message: "line \(batch.lines.count + 1) of the batch is longer than \(limits.maxLineLength) bytes")
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
            queue.append(batch.problem.map { .reply($0) } ?? .batch(batch.request, batch.lines))
            drain()
        } else {
            collecting = batch
        }
    }

    // MARK: Executing

    private mutating func drain() {
        while !busy, !closing, let work = queue.first {
            checkRevocation()
            let pipelined = pipelinable(work)
            if !writes.isEmpty, !pipelined || writes.count >= configuration.maxWritesInFlight { break }
            queue.removeFirst()
            if pipelined { startWrite(work) } else { execute(work) }
        }
        if !working, shuttingDown, !closing {
            send([.bye(code: .shutdown, message: "the server is shutting down")], close: true)
        }
        if heldRead, pendingWork < limits.maxPipelined / 2 {
            heldRead = false
            actions.append(.read)
        }
    }

    private mutating func execute(_ work: Work) {
        switch work {
        case .reply(let reply):
            send([reply])
        case .closeWith(let replies):
            send(replies, close: true)
        case .batch(let request, let lines):
            guard let identity = authorize(request) else { return }
            guard configuration.forwardsWrites else { return startWrite(work) }
            busy = true
            actions.append(.forwardBatch(tag: request.tag, lines: lines, identity))
        case .request(let request):
            guard let identity = authorize(request) else { return }
            let command: Command
            switch request.command {
            case .success(let c): command = c
            case .failure(let error): return send([.refusal(tag: request.tag, error)])
            }
            switch command {
            case .quit:
                send([.bye(code: .goodbye, message: "goodbye"), .ok(tag: request.tag, nil)], close: true)
            case .auth(let token):
                authenticate(request.tag, token: token)
            case .watch(let since):
                busy = true
                watch = WatchState(tag: request.tag, lastSent: since)
                actions.append(.startWatch(since: since))
                actions.append(.cancelIdleCheck)  // a watcher is not idle
                actions.append(.scheduleRevocationCheck)
            case .batch:
                preconditionFailure("BATCH is collected when read")
            case .propose where !configuration.forwardsWrites:
                startWrite(work)
            case .ping, .caps, .pull, .get, .log, .history, .propose, .conflicts:
                busy = true
                actions.append(.run(tag: request.tag, command, identity))
            }
        }
    }

    /// A verb's replies: sent in its turn, and the queue moves on.
    mutating func answered(_ replies: [Reply]) -> [Action] {
        busy = false
        send(replies)
        drain()
        return take()
    }

    /// The caller's identity if the verb is allowed, else the refusal is sent and nil returned. Verbs that need
    /// no identity get a reader placeholder, never used for writing.
    private mutating func authorize(_ request: Request) -> Identity? {
        let verb = request.verb
        guard Role.required(for: verb) != nil else { return identity ?? Identity(name: "", role: .reader) }
        guard let identity else {
            let (code, message): (ErrorCode, String) =
                revoked
                ? (
                    .authRevoked,
                    "the token this connection authenticated with was revoked or has expired; AUTH with another"
                )
                : (.authRequired, "\(verb.rawValue) needs AUTH first")
            send([.no(tag: request.tag, code: code, message: message, detail: nil)])
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

    // MARK: Writes in flight

    /// A write that can go in flight: a well-formed PROPOSE, or a BATCH, on a primary, by an identity allowed to
    /// make it. A malformed one is answered in turn, like any other refusal.
    private func pipelinable(_ work: Work) -> Bool {
        guard !configuration.forwardsWrites, let identity else { return false }
        switch work {
        case .request(let request):
            guard case .success(.propose) = request.command else { return false }
            return identity.role.may(.propose)
        case .batch: return identity.role.may(.batch)
        case .reply, .closeWith: return false
        }
    }

    private mutating func startWrite(_ work: Work) {
        guard let identity else { return }
        let number = writesBase + writes.count
        switch work {
        case .request(let request):
            guard case .success(.propose(let edit)) = request.command else { return }
            writes.append(Write(tag: request.tag, batch: false, state: .decoding))
            actions.append(.decodePropose(number: number, tag: request.tag, edit: edit, identity))
        case .batch(let request, let lines):
            writes.append(Write(tag: request.tag, batch: true, state: .decoding))
            actions.append(.decodeBatch(number: number, tag: request.tag, lines: lines, identity))
        case .reply, .closeWith:
            break
        }
    }

    /// A write in flight was decoded: its proposals, or the refusal to send in its place.
    mutating func decoded(_ number: Int, _ result: DecodedWrite) -> [Action] {
        if number >= writesBase, number - writesBase < writes.count {
            switch result {
            case .proposals(let proposals): writes[number - writesBase].state = .ready(proposals)
            case .refused(let reply): writes[number - writesBase].state = .answered([reply])
            }
            submitReady()
            deliverAnswered()
        }
        drain()
        return take()
    }

    /// Submits decoded writes to the store in request order, up to the first one still being decoded.
    private mutating func submitReady() {
        while writesSubmitted < writesBase + writes.count {
            let i = writesSubmitted - writesBase
            if case .decoding = writes[i].state { return }
            if case .ready(let proposals) = writes[i].state {
                writes[i].state = .submitted
                actions.append(
                    .submit(number: writesSubmitted, tag: writes[i].tag, batch: writes[i].batch, proposals))
            }
            writesSubmitted += 1
        }
    }

    /// A write in flight was committed or refused by the store.
    mutating func committed(_ number: Int, _ replies: [Reply]) -> [Action] {
        if number >= writesBase, number - writesBase < writes.count {
            writes[number - writesBase].state = .answered(replies)
            deliverAnswered()
        }
        drain()
        return take()
    }

    /// Sends the answers of the oldest writes that have one, in request order.
    private mutating func deliverAnswered() {
        var sent = false
        while let first = writes.first, case .answered(let replies) = first.state {
            writes.removeFirst()
            writesBase += 1
            if !closing { actions.append(.write(replies)) }
            sent = true
        }
        if sent, !closing { actions.append(.flush) }
    }

    // MARK: AUTH

    private mutating func authenticate(_ tag: String, token: String) {
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
        busy = true
        actions.append(.authenticate(tag: tag, token: token))
    }

    mutating func authenticated(_ tag: String, as found: Identity, tokenHash hash: Digest) -> [Action] {
        identity = found
        tokenHash = hash
        revoked = false
        busy = false
        actions.append(.cancelAuthTimer)
        actions.append(.log(.info, "authenticated as \(found.name), role \(found.role.rawValue)"))
        send([.ok(tag: tag, .object(["user": .string(found.name), "role": .string(found.role.rawValue)]))])
        drain()
        return take()
    }

    /// Never logs the token; `why` says which kind of refusal it was (for the operator's log, never the client).
    /// The answer is held: `refusalDue` sends it.
    mutating func authenticationFailed(_ tag: String, why: String = "unknown token") -> [Action] {
        actions.append(.log(.warning, "authentication failed: \(why)"))
        actions.append(.delayRefusal(tag: tag))
        return take()
    }

    mutating func refusalDue(_ tag: String) -> [Action] {
        busy = false
        send([.no(tag: tag, code: .authFailed, message: "the token is unknown, revoked or expired", detail: nil)])
        drain()
        return take()
    }

    mutating func authTimerFired() -> [Action] {
        guard identity == nil, !closing else { return take() }
        actions.append(.log(.info, "closing: not authenticated in time"))
        send([.bye(code: .authTimeout, message: "not authenticated in time")], close: true)
        return take()
    }

    // MARK: Revocation

    /// Drops the identity if its token was revoked or expired (or its role changed) since AUTH; a watcher is told and
    /// closed. Returns whether it was.
    @discardableResult
    private mutating func checkRevocation() -> Bool {
        guard let identity, let tokenHash, configuration.identityOfToken(tokenHash) != identity else { return false }
        actions.append(.log(.info, "token revoked, expired or changed: dropping the connection's identity"))
        self.identity = nil
        self.tokenHash = nil
        revoked = true
        if watch != nil {
            watch = nil
            actions.append(.stopWatch)
            send(
                [
                    .bye(
                        code: .authRevoked,
                        message: "the token this connection authenticated with was revoked or has expired")
                ],
                close: true)
        }
        return true
    }

    /// A watcher makes no requests: its token is checked each second while it watches.
    mutating func revocationCheckDue() -> [Action] {
        if watch != nil, !closing, !checkRevocation() { actions.append(.scheduleRevocationCheck) }
        return take()
    }

    // MARK: WATCH

    mutating func watchHead(_ head: Int64) -> [Action] {
        guard var watch, !closing else { return take() }
        if watch.lastSent > head {
            self.watch = nil
            busy = false
            actions.append(.stopWatch)
            // The same reply as PULL's: the head and the dataset, for a client to decide what to do.
            send([
                .no(
                    tag: watch.tag, code: .resync,
                    message: "version \(watch.lastSent) is beyond this server's version \(head): this replica belongs "
                        + "to another dataset or a restored server; start again from 0",
                    detail: .object(["version": .int(head), "dataset": .string(configuration.dataset)]))
            ])
            drain()
            return take()
        }
        watch.catchingUp = true
        self.watch = watch
        actions.append(.fetchWatchPage(after: watch.lastSent))
        return take()
    }

    /// How many bytes of edits a watcher is handed at once: half the outbound limit, so that a commit of any size
    /// (a BATCH of thousands of large edits) is streamed in parts, each written only once the one before has
    /// been, and what waits for a watcher stays within the limit.
    private var watchChunk: Int { max(64 << 10, limits.maxOutboundBuffer / 2) }

    /// Encodes edits in order, up to `watchChunk` bytes (at least one edit); returns how many were written.
    private mutating func writeEdits(_ edits: some Collection<Edit>) -> Int {
        var buffer = ByteBufferAllocator().buffer(capacity: 4096)
        var count = 0
        for edit in edits {
            if count > 0, buffer.readableBytes >= watchChunk { break }
            Reply.data(kind: "EDIT", EditCodec.json(edit)).write(into: &buffer)
            count += 1
        }
        if count > 0 {
            actions.append(.writeEdits(buffer))
            configuration.editsWatched(count)
        }
        return count
    }

    /// A page of stored edits after the last one sent, and the head when it was read.
    mutating func watchPage(_ page: [Edit], head: Int64) -> [Action] {
        guard watch != nil, !checkRevocation(), var watch, watch.catchingUp, !closing else { return take() }
        let fresh = page.filter { $0.version > watch.lastSent }
        let written = writeEdits(fresh)
        if written > 0 { watch.lastSent = fresh[written - 1].version }
        if watch.lastSent < head || page.count == configuration.watchPage || written < fresh.count {
            self.watch = watch
            actions.append(.reportWhenWritten)
            return take()
        }
        actions.append(.flush)
        watch.catchingUp = false
        watch.live = true
        self.watch = watch
        return take()
    }

    /// What was written reached the socket: catching up goes on.
    mutating func watchWritten() -> [Action] {
        if let watch, watch.catchingUp, !closing { actions.append(.fetchWatchPage(after: watch.lastSent)) }
        return take()
    }

    /// What was written did not reach the socket within the close grace: the watcher does not read.
    mutating func watchStalled() -> [Action] {
        slowConsumer()
        return take()
    }

    /// Edits just committed; `writable` says whether the channel takes more without queueing past its limit.
    mutating func live(_ units: [[Edit]], writable: Bool) -> [Action] {
        guard watch != nil, !checkRevocation(), var watch, watch.live, !closing else { return take() }
        let fresh = units.joined().filter { $0.version > watch.lastSent }
        guard let first = fresh.first else { return take() }
        if first.version != watch.lastSent + 1 {
            // Edits committed while catching up turned live: read them from the store.
            watch.live = false
            watch.catchingUp = true
            self.watch = watch
            actions.append(.fetchWatchPage(after: watch.lastSent))
            return take()
        }
        guard writable else {
            slowConsumer()
            return take()
        }
        let written = writeEdits(fresh)
        watch.lastSent = fresh[written - 1].version
        if written < fresh.count {
            // A commit larger than a chunk: the rest is read from the store, a chunk at a time, as it is read.
            watch.live = false
            watch.catchingUp = true
            self.watch = watch
            actions.append(.reportWhenWritten)
            return take()
        }
        self.watch = watch
        actions.append(.flush)
        return take()
    }

    mutating func watchFailed(_ reply: Reply, now: NIODeadline) -> [Action] {
        lastActivity = now
        endWatch(with: reply)
        return take()
    }

    private mutating func watchInput(_ frame: Frame) {
        if case .line(let line) = frame,
            String(decoding: line.readableBytesView, as: UTF8.self).trimmingSpaceAndTab().uppercased() == "DONE"
        {
            guard let watch else { return }
            endWatch(with: .ok(tag: watch.tag, .object(["version": .int(watch.lastSent)])))
            return
        }
        send([.bad(tag: nil, code: .expectedDone, message: "a WATCH is running; send DONE to end it")])
    }

    private mutating func endWatch(with reply: Reply) {
        guard watch != nil else { return }
        watch = nil
        busy = false
        actions.append(.stopWatch)
        send([reply])
        actions.append(.scheduleIdleCheck(after: limits.idleTimeout))
        drain()
    }

    private mutating func slowConsumer() {
        guard !closing else { return }
        actions.append(.log(.warning, "closing a watcher that does not read"))
        send(
            [
                .bye(
                    code: .slowConsumer,
                    message: "more than \(limits.maxOutboundBuffer) bytes are waiting for you to read them")
            ], close: true)
    }

    // MARK: Shutdown and idleness

    /// A graceful shutdown: requests not started are refused, what runs (and writes in flight) finishes, then BYE.
    mutating func shutdownRequested() -> [Action] {
        shuttingDown = true
        if watch != nil {
            watch = nil
            actions.append(.stopWatch)
            send([.bye(code: .shutdown, message: "the server is shutting down")], close: true)
            return take()
        }
        let waiting = queue
        queue.removeAll()
        inputClosed = true
        for work in waiting {
            switch work {
            case .request(let r), .batch(let r, _):
                actions.append(
                    .write([
                        .no(
                            tag: r.tag, code: .shuttingDown, message: "the server is shutting down; not executed",
                            detail: nil)
                    ]))
            case .reply(let reply):
                actions.append(.write([reply]))
            case .closeWith:
                break
            }
        }
        actions.append(.flush)
        if !working { send([.bye(code: .shutdown, message: "the server is shutting down")], close: true) }
        return take()
    }

    mutating func idleCheckDue(now: NIODeadline) -> [Action] {
        guard !closing, watch == nil else { return take() }
        let idle = now - lastActivity
        if idle >= limits.idleTimeout, !working {
            actions.append(.log(.info, "closing an idle connection"))
            send(
                [
                    .bye(
                        code: .idleTimeout,
                        message: "no request for \(limits.idleTimeout.nanoseconds / 1_000_000_000) seconds")
                ], close: true)
        } else {
            actions.append(.scheduleIdleCheck(after: max(.seconds(1), limits.idleTimeout - idle)))
        }
        return take()
    }

    // MARK: Sending

    private mutating func send(_ replies: [Reply], close: Bool = false) {
        guard !closing else { return }
        actions.append(.send(replies))
        if close {
            closing = true
            if watch != nil {
                watch = nil
                actions.append(.stopWatch)
            }
            actions.append(.close)
        }
    }
}

extension String {
    fileprivate func trimmingSpaceAndTab() -> Substring {
        var s = Substring(self)
        while let f = s.first, f == " " || f == "\t" { s = s.dropFirst() }
        while let l = s.last, l == " " || l == "\t" { s = s.dropLast() }
        return s
    }
}
