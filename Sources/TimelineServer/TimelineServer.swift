import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle
import TimelineCore
import TimelineStore
import TimelineTLS
import TimelineWire

/// The `timelined` server: TLS on a TCP port, the line protocol, one store. Start it, then `shutdown()` it:
/// stop accepting, let running requests finish (an `OK` is only ever sent once its edit is durable), tell
/// everyone `BYE SHUTDOWN`, close.
public final class TimelineServer: Sendable {
    let core: ServerCore
    let configuration: ServerConfiguration
    /// The context new connections handshake with; `reloadCertificate()` swaps it, and connections keep the one
    /// they started with.
    private let tls: NIOLockedValueBox<TLSContext>
    let group: MultiThreadedEventLoopGroup
    private let serverChannel = NIOLockedValueBox<(any Channel)?>(nil)

    public init(
        store: any TimelineStore, tokens: TokenStore, configuration: ServerConfiguration,
        logger: Logger = Logger(label: "timelined"), threads: Int = System.coreCount, replicator: Replicator? = nil
    ) throws {
        core = ServerCore(
            store: store, tokens: tokens, limits: configuration.limits, logger: logger, replicator: replicator)
        self.configuration = configuration
        tls = NIOLockedValueBox(try Self.loadContext(configuration))
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, threads))
    }

    static func loadContext(_ configuration: ServerConfiguration) throws -> TLSContext {
        try TLSContext.server(
            certificateFile: configuration.certificateFile, keyFile: configuration.keyFile,
            clientCAFile: configuration.clientCAFile)
    }

    /// Loads the certificate, key (and client CA) files again, for connections from now on: a certificate is
    /// rotated without dropping anyone. Files that do not load leave the current ones in use, and throw.
    @discardableResult
    public func reloadCertificate() throws -> Fingerprint {
        let context = try Self.loadContext(configuration)
        let fingerprint = try DataDirectory.fingerprint(ofCertificateAt: configuration.certificateFile)
        tls.withLockedValue { $0 = context }
        core.logger.notice("certificate loaded again", metadata: ["fingerprint": "\(fingerprint.hex)"])
        return fingerprint
    }

    /// Binds and starts accepting; returns the address bound (port 0 asks the OS for a free port).
    public func start() async throws -> SocketAddress {
        let core = self.core
        core.countAppended(from: try await core.store.head().version)
        let tls = self.tls
        let limits = configuration.limits
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 512)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.so_keepalive), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(
                .writeBufferWaterMark,
                value: .init(low: limits.maxOutboundBuffer / 2, high: limits.maxOutboundBuffer)
            )
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handlers: [any ChannelHandler] = [
                        TLSHandler(context: tls.withLockedValue { $0 }, handshakeTimeout: limits.handshakeTimeout),
                        ByteToMessageHandler(LineFrameDecoder(maxLength: limits.maxLineLength)),
                        ConnectionHandler(core: core),
                    ]
                    try channel.pipeline.syncOperations.addHandlers(handlers)
                }
            }
        let channel = try await bootstrap.bind(host: configuration.host, port: configuration.port).get()
        serverChannel.withLockedValue { $0 = channel }
        core.replicator?.start()
        guard let address = channel.localAddress else {
            throw TimelineError(.storeFailed, "the listening socket has no address")
        }
        core.logger.info(
            "listening",
            metadata: [
                "address": "\(address.ipAddress ?? "?"):\(address.port ?? 0)", "dataset": "\(core.store.dataset)",
            ])
        return address
    }

    /// Connections open now.
    public var connectionCount: Int { core.connectionCount.load(ordering: .relaxed) }

    /// Graceful shutdown; connections still open after `grace` are closed.
    public func shutdown(grace: TimeAmount = .seconds(10)) async {
        core.shuttingDown.store(true, ordering: .relaxed)
        let listening = serverChannel.withLockedValue { channel -> (any Channel)? in
            defer { channel = nil }
            return channel
        }
        try? await listening?.close()
        await core.replicator?.stop()
        for channel in core.openChannels { channel.pipeline.fireUserInboundEventTriggered(ShutdownRequested()) }
        // Each connection closes once its running requests are answered; those that do not within the grace are
        // closed then. Either way the last one to close ends the wait.
        let core = self.core
        let forced = group.next().scheduleTask(in: grace) {
            for channel in core.openChannels { channel.close(promise: nil) }
        }
        await core.drained()
        forced.cancel()
        try? await group.shutdownGracefully()
        core.logger.info("stopped")
    }
}

extension TimelineServer: Service {
    /// Serves until the service group shuts down gracefully (a signal), then shuts down as `shutdown` does.
    /// Starts the server unless `start` was called already (to learn the address first).
    public func run() async throws {
        if serverChannel.withLockedValue({ $0 == nil }) { _ = try await start() }
        try? await gracefulShutdown()
        SystemdNotify.send("STOPPING=1")
        await shutdown()
    }
}
