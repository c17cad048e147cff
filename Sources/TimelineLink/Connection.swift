import Foundation
import NIOCore
import NIOPosix
import TimelineCore
import TimelineStore
import TimelineTLS
import TimelineWire

/// How one request ended.
public struct Completion: Sendable {
    public enum Status: Sendable { case ok, no, bad }
    public var status: Status
    /// The refusal's code (nil for OK).
    public var code: ErrorCode?
    /// OK's JSON, or a refusal's structured detail.
    public var json: JSON?
    /// A refusal's sentence.
    public var message: String
    /// `* KIND JSON` lines that came with it (empty when they were streamed).
    public var data: [String]

    /// The refusal as an error.
    public var error: TimelineError { TimelineError(code ?? .badReply, message, detail: json) }
}

/// One TLS connection speaking timeline/1, with pipelining: requests may be sent while earlier ones are
/// unanswered, and each is matched to its completion by tag.
public final class TimelineConnection: Sendable {
    let channel: any Channel
    let router: ResponseRouter
    /// The greeting's JSON: `dataset`, `version`, `limits`, …
    public let hello: JSON

    /// AUTH's OK: `user` and `role` (nil before authenticating).
    public let authenticated: JSON?

    public var dataset: String { hello["dataset"]?.stringValue ?? "" }
    public var serverVersion: Int64 { hello["version"]?.intValue ?? 0 }

    private init(channel: any Channel, router: ResponseRouter, hello: JSON, authenticated: JSON? = nil) {
        self.channel = channel
        self.router = router
        self.hello = hello
        self.authenticated = authenticated
    }

    /// Connects, verifies the server (CA or pinned fingerprint) and reads the greeting.
    public static func connect(
        host: String, port: Int, verification: TLSContext.Verification, timeout: TimeAmount = .seconds(10)
    ) async throws -> TimelineConnection {
        let tls: TLSContext
        tls = try TLSContext.client(verification: verification)
        let router = ResponseRouter()
        let channel: any Channel
        do {
            channel = try await LineChannel.connect(
                host: host, port: port, tls: tls, maxLineBytes: 64 << 20, timeout: timeout, handler: router)
        } catch {
            throw TimelineError(.unreachable, "cannot connect to \(host):\(port): \(Self.reason(error))")
        }
        let helloLine: String
        do {
            helloLine = try await router.greeting(on: channel.eventLoop).get()
        } catch {
            try? await channel.close()
            throw error
        }
        guard case .hello(let hello)? = Reply.parse(helloLine) else {
            try? await channel.close()
            throw TimelineError(.badReply, "the server did not greet with timeline/1")
        }
        return TimelineConnection(channel: channel, router: router, hello: hello)
    }

    /// Why a connection could not be made, in words (no library types): "connection refused", "no answer
    /// within 10 s", "cannot resolve the host name".
    static func reason(_ error: Error) -> String {
        switch error {
        case let e as NIOConnectionError:
            if e.dnsAError != nil || e.dnsAAAAError != nil, e.connectionErrors.isEmpty {
                return "cannot resolve the host name \(e.host)"
            }
            if let first = e.connectionErrors.first { return reason(first.error) }
            return "no address for \(e.host)"
        case let e as IOError:
            return String(cString: strerror(e.errnoCode)).lowercased()
        case ChannelError.connectTimeout(let t):
            return "no answer within \(t.nanoseconds / 1_000_000_000) s"
        case let e as TimelineError:
            return e.message
        default:
            return "\(error)"
        }
    }

    /// Connects to a configured server, authenticates, and checks it holds the configured dataset (if one is
    /// set); the connection is closed again on any failure.
    public static func open(_ config: ClientConfig) async throws -> TimelineConnection {
        let unauthenticated = try await connect(
            host: config.host, port: config.port, verification: config.verification)
        let connection: TimelineConnection
        do {
            let ok = try await unauthenticated.authenticate(token: config.token)
            connection = TimelineConnection(
                channel: unauthenticated.channel, router: unauthenticated.router, hello: unauthenticated.hello,
                authenticated: ok ?? .object([:]))
        } catch {
            await unauthenticated.close()
            throw error
        }
        if let dataset = config.dataset, dataset != connection.dataset {
            await connection.close()
            throw TimelineError(
                .wrongDataset,
                "this replica is of dataset \(dataset), but the server holds \(connection.dataset)")
        }
        return connection
    }

    /// The edit carried by a `* EDIT {…}` data line; nil for other lines; an error for one that does not decode.
    public static func edit(fromLine line: String) throws -> Edit? {
        guard line.hasPrefix("* EDIT ") else { return nil }
        do {
            return try EditCodec.decodeEdit(try JSON(parsing: String(line.dropFirst(7))))
        } catch {
            throw TimelineError(.badReply, "the server sent an edit that does not decode: \(error)")
        }
    }

    /// Pulls the log after `version` a page of `pageSize` edits at a time and hands each page's edits, in order,
    /// to `store` with the page's completion, one page at a time. Three things overlap: the server streams the
    /// next page (asked for before this one is stored), this side decodes it, and `store` writes the one before.
    /// Returns once the last page is stored; on an error, the page being stored is finished first. Decoding
    /// includes linking the page's edits (`LinkedEdits`), so a page whose chain breaks is refused here with
    /// `BatchRejection`, before it reaches `store`.
    public func pullPages(
        after version: Int64, pageSize: Int, store: @escaping @Sendable (LinkedEdits, Completion) async throws -> Void
    ) async throws {
        var next = Task { try await self.expectOK(.pull(since: version, limit: pageSize)) }
        var storing: Task<Void, Error>?
        do {
            while true {
                let page = try await next.value
                var reading = LinkedEdits.Reading(capacity: page.data.count)
                for line in page.data where line.hasPrefix("* EDIT ") {
                    do { try reading.append(line.dropFirst(7)) } catch {
                        throw TimelineError(
                            .badReply, "the server sent an edit that does not decode: \(error)")
                    }
                }
                let more = page.json?["more"] == true && reading.count > 0
                if more, let last = reading.last?.version {
                    next = Task { try await self.expectOK(.pull(since: last, limit: pageSize)) }
                }
                let linked = try LinkedEdits(reading)
                try await storing?.value
                storing = Task { try await store(linked, page) }
                if !more { break }
            }
            try await storing?.value
        } catch {
            next.cancel()
            _ = await storing?.result
            throw error
        }
    }

    /// Sends a request (and, for BATCH, its lines) and waits for its completion. Data lines are collected, or
    /// handed to `onData` as they arrive (on the connection's thread; keep it quick).
    public func send(
        _ command: Command, lines: [String] = [], onData: (@Sendable (String) -> Void)? = nil
    ) async throws -> Completion {
        try await start(command, lines: lines, onData: onData).completion()
    }

    /// A request already written to the server, whose completion is awaited later: requests started one after
    /// another reach the server in that order and are answered in it (pipelining).
    public struct Pending: Sendable {
        let future: EventLoopFuture<Completion>
        public func completion() async throws -> Completion { try await future.get() }
    }

    /// Hands a request (and its lines) to the connection's event loop to write, without waiting for the answer.
    /// Requests started one after another are written in that order: the loop runs what it is handed in order.
    /// (Waiting here for the loop to have written it cost every request a second wake-up of the caller.)
    public func start(
        _ command: Command, lines: [String] = [], onData: (@Sendable (String) -> Void)? = nil
    ) async throws -> Pending {
        let request = command.line
        let router = self.router
        let channel = self.channel
        let promise = channel.eventLoop.makePromise(of: Completion.self)
        channel.eventLoop.execute {
            let tag = router.register(onData: onData, promise: promise)
            var buffer = channel.allocator.buffer(capacity: request.utf8.count + 40)
            buffer.writeString("\(tag) \(request)\n")
            for line in lines {
                buffer.writeString(line)
                buffer.writeString("\n")
            }
            channel.writeAndFlush(buffer, promise: nil)
        }
        return Pending(future: promise.futureResult)
    }

    /// Sends a line that is not a request (`DONE`).
    public func sendRaw(_ line: String) async throws {
        try await channel.writeAndFlush(ByteBuffer(string: line + "\n")).get()
    }

    /// Sends a request and returns its completion, throwing its refusal.
    @discardableResult
    public func expectOK(_ command: Command, lines: [String] = []) async throws -> Completion {
        let c = try await send(command, lines: lines)
        guard c.status == .ok else { throw c.error }
        return c
    }

    /// Authenticates; returns AUTH's OK (`user`, `role`).
    @discardableResult
    public func authenticate(token: String) async throws -> JSON? {
        let c = try await send(.auth(token: token))
        guard c.status == .ok else {
            throw TimelineError(c.code ?? .badReply, "the server refused the token: \(c.message)")
        }
        return c.json
    }

    /// Closes the connection (with TLS close_notify); requests still waiting fail.
    public func close() async {
        try? await channel.close()
    }

    /// Runs `body`, then closes the connection and waits until it is closed, whether `body` returned or threw.
    /// A short-lived process must not exit while a close it left to a task is still tearing TLS down: OpenSSL's
    /// own clean-up at exit and an SSL_free on the event loop then race (a crash seen under ThreadSanitizer).
    public func closing<T: Sendable>(_ body: (TimelineConnection) async throws -> T) async throws -> T {
        do {
            let result = try await body(self)
            await close()
            return result
        } catch {
            await close()
            throw error
        }
    }
}

/// Routes incoming lines: the greeting, then data lines to the oldest unanswered request and completions by tag.
final class ResponseRouter: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = Frame

    struct Pending {
        var tag: String
        var promise: EventLoopPromise<Completion>
        var data: [String] = []
        var onData: (@Sendable (String) -> Void)?
    }

    private var greetingLine: String?
    private var greetingPromise: EventLoopPromise<String>?
    private var pending: [Pending] = []
    private var nextTag = 1
    private var closedReason: TimelineError?

    func greeting(on loop: any EventLoop) -> EventLoopFuture<String> {
        loop.flatSubmit {
            if let line = self.greetingLine { return loop.makeSucceededFuture(line) }
            if let reason = self.closedReason { return loop.makeFailedFuture(reason) }
            let p = loop.makePromise(of: String.self)
            self.greetingPromise = p
            return p.futureResult
        }
    }

    /// Gives the next request its tag; `promise` gets its completion (or the reason the connection closed).
    func register(onData: (@Sendable (String) -> Void)?, promise: EventLoopPromise<Completion>) -> String {
        let tag = "c\(nextTag)"
        nextTag += 1
        if let closedReason {
            promise.fail(closedReason)
        } else {
            pending.append(Pending(tag: tag, promise: promise, onData: onData))
        }
        return tag
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .line(let buffer) = unwrapInboundIn(data) else {
            fail(TimelineError(.badReply, "the server sent a line longer than 64 MiB"), context: context)
            return
        }
        let line = String(buffer: buffer)
        if greetingLine == nil {
            greetingLine = line
            greetingPromise?.succeed(line)
            greetingPromise = nil
            return
        }
        // Data lines are most lines (a PULL page, a WATCH): routed as they are, decoded by whoever asked.
        if line.hasPrefix("* "), !line.hasPrefix("* BYE "), !line.hasPrefix("* BAD ") {
            guard !pending.isEmpty else { return }
            if let onData = pending[0].onData { onData(line) } else { pending[0].data.append(line) }
            return
        }
        let completion: Completion
        let tag: String
        switch Reply.parse(line) {
        case .bye(let code, let message):
            closedReason = TimelineError(code == .goodbye ? .unreachable : code, message)
            return
        case .bad(nil, _, _):
            return  // untagged: input during WATCH; nothing to route
        case .ok(let t, let json):
            tag = t
            completion = Completion(status: .ok, code: nil, json: json, message: "", data: [])
        case .no(let t, let code, let message, let detail):
            tag = t
            completion = Completion(status: .no, code: code, json: detail, message: message, data: [])
        case .bad(let t?, let code, let message):
            tag = t
            completion = Completion(status: .bad, code: code, json: nil, message: message, data: [])
        default:
            fail(
                TimelineError(.badReply, "the server sent a line that is not timeline/1: \(line.prefix(80))"),
                context: context)
            return
        }
        guard let index = pending.firstIndex(where: { $0.tag == tag }) else { return }
        let entry = pending.remove(at: index)
        var answered = completion
        answered.data = entry.data
        entry.promise.succeed(answered)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let tls = error as? TimelineError {
            fail(tls, context: context)
        } else {
            fail(
                TimelineError(.unreachable, "the connection failed: \(TimelineConnection.reason(error))"),
                context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(closedReason ?? TimelineError(.unreachable, "the server closed the connection"), context: context)
        context.fireChannelInactive()
    }

    private func fail(_ error: TimelineError, context: ChannelHandlerContext) {
        // Keep the most telling reason: a TLS verdict or a BYE beats "the connection closed".
        if closedReason == nil
            || (closedReason?.code == .unreachable && error.code != .unreachable)
        {
            closedReason = error
        }
        let reason = closedReason ?? error
        greetingPromise?.fail(reason)
        greetingPromise = nil
        let waiting = pending
        pending.removeAll()
        for p in waiting { p.promise.fail(reason) }
        context.close(promise: nil)
    }
}
