import NIOCore
import TimelineClient
import TimelineLink
import TimelineTLS
import TimelineWire

/// A line-protocol client over real TLS for the tests: sends raw lines, reads lines with a timeout.
final class TestClient: @unchecked Sendable {
    let channel: any Channel
    let lines: LineCollector
    private(set) var greeting = ""

    private init(channel: any Channel, lines: LineCollector) {
        self.channel = channel
        self.lines = lines
    }

    static func connect(port: Int, fingerprint: Fingerprint, readGreeting: Bool = true) async throws -> TestClient {
        let tls = try TLSContext.client(verification: .fingerprint(fingerprint))
        let collector = LineCollector()
        let channel = try await LineChannel.connect(
            host: "127.0.0.1", port: port, tls: tls, serverHostname: "localhost", maxLineBytes: 64 << 20,
            handler: collector)
        let client = TestClient(channel: channel, lines: collector)
        if readGreeting {
            guard let hello = try await client.nextLine() else { throw TestFailure("closed before the greeting") }
            client.greeting = hello
        }
        return client
    }

    /// Writes text as it is (include the LF).
    func sendRaw(_ text: String) async throws {
        try await channel.writeAndFlush(ByteBuffer(string: text)).get()
    }

    func sendRaw(bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
    }

    /// The next line, nil once the server closed, or an error after `timeout` seconds.
    func nextLine(timeout: Int64 = 15) async throws -> String? {
        try await lines.next(on: channel.eventLoop, timeout: .seconds(timeout)).get()
    }

    /// Sends one request line and collects the lines up to its completion (`TAG OK|NO|BAD …`).
    func request(_ line: String, timeout: Int64 = 15) async throws -> [String] {
        let tag = String(line.prefix { $0 != " " })
        try await sendRaw(line + "\n")
        return try await collect(until: tag, timeout: timeout)
    }

    func collect(until tag: String, timeout: Int64 = 15) async throws -> [String] {
        var out: [String] = []
        while let next = try await nextLine(timeout: timeout) {
            out.append(next)
            if next.hasPrefix(tag + " OK") || next.hasPrefix(tag + " NO ") || next.hasPrefix(tag + " BAD ") {
                return out
            }
        }
        throw TestFailure("connection closed before \(tag) completed; got \(out)")
    }

    func auth(_ token: String) async throws {
        let reply = try await request("auth AUTH \(token)")
        guard reply.last?.hasPrefix("auth OK") == true else { throw TestFailure("AUTH failed: \(reply)") }
    }

    func close() async {
        try? await channel.close()
    }

    /// Lines received until the server closes (or `timeout` passes with nothing).
    func drainUntilClosed(timeout: Int64 = 15) async throws -> [String] {
        var out: [String] = []
        while let line = try await nextLine(timeout: timeout) { out.append(line) }
        return out
    }
}

/// Collects lines on the channel's event loop and hands them to waiters.
final class LineCollector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = Frame

    private var buffered: [String] = []
    private var closed = false
    private var waiter: EventLoopPromise<String?>?
    private var waiterTimeout: Scheduled<Void>?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .line(let line): deliver(String(buffer: line))
        case .tooLong: deliver("<line too long>")
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        if let waiter {
            self.waiter = nil
            waiterTimeout?.cancel()
            waiter.succeed(nil)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }

    private func deliver(_ line: String) {
        if let waiter {
            self.waiter = nil
            waiterTimeout?.cancel()
            waiter.succeed(line)
        } else {
            buffered.append(line)
        }
    }

    func next(on loop: any EventLoop, timeout: TimeAmount) -> EventLoopFuture<String?> {
        loop.flatSubmit {
            if !self.buffered.isEmpty { return loop.makeSucceededFuture(self.buffered.removeFirst()) }
            if self.closed { return loop.makeSucceededFuture(nil) }
            let promise = loop.makePromise(of: String?.self)
            self.waiter = promise
            self.waiterTimeout = loop.scheduleTask(in: timeout) {
                if let waiter = self.waiter {
                    self.waiter = nil
                    waiter.fail(TestFailure("no line within \(timeout.nanoseconds / 1_000_000_000) s"))
                }
            }
            return promise.futureResult
        }
    }
}
