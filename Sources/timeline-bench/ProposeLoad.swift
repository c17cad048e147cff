import NIOCore
import NIOPosix
import TimelineClient
import TimelineLink
import TimelineTLS
import TimelineWire

/// B2's load: connections that each authenticate, then send one `PROPOSE` at a time, the next as soon as the
/// previous one's OK arrives, until a deadline; every latency is recorded on the connection's event loop.
///
/// The load runs in the event loops' handlers, not in async tasks: through the client library each request woke a
/// task on another thread and hopped back to the loop to write (three thread wake-ups per request), and the load
/// generator then took a third of the machine's two cores from the server it measures. pgbench, the reference's
/// load, is a lean C program in the same way.
enum ProposeLoad {
    /// Runs `connections` connections against 127.0.0.1:`port` for `seconds` after all have authenticated;
    /// `line(c, i)` is connection c's i-th PROPOSE argument. Returns every latency in seconds and the elapsed time.
    static func run(
        port: Int, fingerprint: Fingerprint, token: String, connections: Int, seconds: Double,
        line: @escaping @Sendable (Int, Int) -> String
    ) async throws -> (latencies: [Double], elapsed: Double) {
        let tls = try TLSContext.client(verification: .fingerprint(fingerprint))
        let group = MultiThreadedEventLoopGroup.singleton
        // Every connection waits for `go` after its AUTH, so that the timed part starts with all of them ready.
        let go = group.next().makePromise(of: NIODeadline.self)
        var ready: [EventLoopFuture<Void>] = []
        var finished: [EventLoopFuture<[Double]>] = []
        for c in 0..<connections {
            let loop = group.next()
            let handler = Handler(token: token, go: go.futureResult, line: { i in line(c, i) }, loop: loop)
            ready.append(handler.authenticated.futureResult)
            finished.append(handler.finished.futureResult)
            _ = try await LineChannel.connect(
                host: "127.0.0.1", port: port, tls: tls, maxLineBytes: 1 << 20, on: loop, handler: handler)
        }
        for f in ready { try await f.get() }
        let start = ReplicationBench.now()
        go.succeed(.now() + .nanoseconds(Int64(seconds * 1e9)))
        var all: [Double] = []
        for f in finished { all += try await f.get() }
        return (all, ReplicationBench.now() - start)
    }

    final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = Frame
        typealias OutboundOut = ByteBuffer

        enum State { case greeting, authenticating, waiting, proposing }

        let token: String
        let go: EventLoopFuture<NIODeadline>
        let line: (Int) -> String
        let authenticated: EventLoopPromise<Void>
        let finished: EventLoopPromise<[Double]>
        private var state = State.greeting
        private var deadline = NIODeadline.distantFuture
        private var sent = NIODeadline.now()
        private var count = 0
        private var latencies: [Double] = []

        init(token: String, go: EventLoopFuture<NIODeadline>, line: @escaping (Int) -> String, loop: any EventLoop) {
            self.token = token
            self.go = go
            self.line = line
            authenticated = loop.makePromise()
            finished = loop.makePromise()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard case .line(let buffer) = unwrapInboundIn(data) else {
                return fail(context, "the server sent a line over the limit")
            }
            let text = String(buffer: buffer)
            switch state {
            case .greeting:
                guard text.hasPrefix("* HELLO ") else { return fail(context, "no greeting: \(text)") }
                state = .authenticating
                send(context, "a AUTH \(token)")
            case .authenticating:
                guard text.hasPrefix("a OK") else { return fail(context, "AUTH refused: \(text)") }
                state = .waiting
                authenticated.succeed(())
                let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
                go.hop(to: context.eventLoop).whenSuccess { deadline in
                    let (handler, context) = loopBound.value
                    handler.deadline = deadline
                    handler.state = .proposing
                    handler.propose(context)
                }
            case .waiting:
                fail(context, "unexpected line before the start: \(text)")
            case .proposing:
                if text.hasPrefix("* ") { return }
                guard text.hasPrefix("p OK") else { return fail(context, "PROPOSE refused: \(text)") }
                let now = NIODeadline.now()
                latencies.append(Double((now - sent).nanoseconds) / 1e9)
                if now < deadline {
                    propose(context)
                } else {
                    finished.succeed(latencies)
                    context.close(promise: nil)
                }
            }
        }

        private func propose(_ context: ChannelHandlerContext) {
            sent = .now()
            send(context, "p PROPOSE \(line(count))")
            count += 1
        }

        private func send(_ context: ChannelHandlerContext, _ text: String) {
            var buffer = context.channel.allocator.buffer(capacity: text.utf8.count + 1)
            buffer.writeString(text)
            buffer.writeInteger(UInt8(ascii: "\n"))
            context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
        }

        private func fail(_ context: ChannelHandlerContext, _ message: String) {
            let error = WholeBench.Failure(message)
            authenticated.fail(error)
            finished.fail(error)
            context.close(promise: nil)
        }

        func errorCaught(context: ChannelHandlerContext, error: Error) {
            fail(context, "connection failed: \(error)")
        }

        func channelInactive(context: ChannelHandlerContext) {
            authenticated.fail(WholeBench.Failure("the connection closed"))
            finished.fail(WholeBench.Failure("the connection closed before the deadline"))
        }
    }
}
