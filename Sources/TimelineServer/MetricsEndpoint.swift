import Foundation
import Logging
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ServiceLifecycle
import TimelineCore
import TimelineStore

/// `timelined serve --metrics HOST:PORT`: Prometheus's text format on `GET /metrics`, on a plain HTTP listener of
/// its own (not the timeline's TLS port). Every scrape first reads what is cheaper to read than to track: the
/// store's file sizes and, on an office replica, the link's state.
public final class MetricsEndpoint: Service, Sendable {
    let registry: PrometheusCollectorRegistry
    let host: String
    let port: Int
    let logger: Logger
    private let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let channel = NIOLockedValueBox<(any Channel)?>(nil)
    private let beforeScrape: @Sendable () async -> Void

    /// Sets swift-metrics' backend to a Prometheus registry: call before the server is made, which takes its
    /// counters from whatever backend is set then.
    public static func bootstrap() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        // Commits take a millisecond or two here; a slow disk or a database far away, a second.
        factory.defaultDurationHistogramBuckets = [
            .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250),
            .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(10),
        ]
        // Edits per commit (group commit): powers of two up to a commit's budget.
        factory.defaultValueHistogramBuckets = (0...14).map { Double(1 << $0) }
        MetricsSystem.bootstrap(factory)
        return registry
    }

    public init(
        registry: PrometheusCollectorRegistry, host: String, port: Int, server: TimelineServer,
        logger: Logger = Logger(label: "timelined")
    ) {
        self.registry = registry
        self.host = host
        self.port = port
        self.logger = logger
        let core = server.core
        let version = Gauge(label: "timeline_log_version")
        Gauge(label: "timeline_build_info", dimensions: [("version", ServerCore.serverName)]).record(1)
        let databaseBytes = Gauge(label: "timeline_store_bytes", dimensions: [("file", "database")])
        let walBytes = Gauge(label: "timeline_store_bytes", dimensions: [("file", "wal")])
        // Only an office replica has a link to describe.
        let link = core.replicator.map { _ in
            (
                following: Gauge(label: "timeline_replica_following"),
                behind: Gauge(label: "timeline_replica_versions_behind"),
                sinceContact: Gauge(label: "timeline_replica_seconds_since_contact")
            )
        }
        beforeScrape = {
            let head = try? await core.store.head().version
            if let head {
                version.record(head)
                core.countAppended(upTo: head)
            }
            if let store = core.store as? SQLiteStore {
                for (gauge, path) in [(databaseBytes, store.path), (walBytes, store.path + "-wal")] {
                    var s = stat()
                    gauge.record(stat(path, &s) == 0 ? Int64(s.st_size) : 0)
                }
            }
            if let replicator = core.replicator, let link {
                let now = replicator.status.withLockedValue { $0 }
                link.following.record(now.state == .following ? 1 : 0)
                link.behind.record(max(0, now.upstreamVersion - (head ?? 0)))
                if let contact = now.lastContact {
                    link.sinceContact.record(Double(WallClock.now().milliseconds - contact.milliseconds) / 1000)
                }
            }
        }
    }

    /// Binds the listener; returns the address (port 0 asks the OS for a free port).
    public func start() async throws -> SocketAddress {
        let registry = self.registry
        let beforeScrape = self.beforeScrape
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(ScrapeHandler(registry: registry, beforeScrape: beforeScrape))
                }
            }
        let bound = try await bootstrap.bind(host: host, port: port).get()
        channel.withLockedValue { $0 = bound }
        guard let address = bound.localAddress else {
            throw TimelineError(.storeFailed, "the metrics listener has no address")
        }
        return address
    }

    /// Serves until the service group shuts down.
    public func run() async throws {
        if channel.withLockedValue({ $0 == nil }) { _ = try await start() }
        try? await gracefulShutdown()
        try? await channel.withLockedValue { $0 }?.close()
        try? await group.shutdownGracefully()
    }
}

/// One HTTP/1.1 exchange at a time: `GET /metrics` (or HEAD) gets the registry's text; anything else a short
/// refusal.
private final class ScrapeHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let registry: PrometheusCollectorRegistry
    let beforeScrape: @Sendable () async -> Void

    init(registry: PrometheusCollectorRegistry, beforeScrape: @escaping @Sendable () async -> Void) {
        self.registry = registry
        self.beforeScrape = beforeScrape
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let request) = unwrapInboundIn(data) else { return }
        let path = request.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        switch (request.method, path) {
        case (.GET, "/metrics"), (.HEAD, "/metrics"):
            let (registry, beforeScrape) = (self.registry, self.beforeScrape)
            let eventLoop = context.eventLoop
            Task {
                await beforeScrape()
                var text: [UInt8] = []
                registry.emit(into: &text)
                eventLoop.execute {
                    Self.respond(bound.value, request, .ok, "text/plain; version=0.0.4; charset=utf-8", text)
                }
            }
        case (_, "/metrics"):
            Self.respond(context, request, .methodNotAllowed, "text/plain", Array("GET /metrics only\n".utf8))
        default:
            Self.respond(context, request, .notFound, "text/plain", Array("metrics are at /metrics\n".utf8))
        }
    }

    private static func respond(
        _ context: ChannelHandlerContext, _ request: HTTPRequestHead, _ status: HTTPResponseStatus, _ type: String,
        _ body: [UInt8]
    ) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: type)
        headers.add(name: "Content-Length", value: "\(body.count)")
        if !request.isKeepAlive { headers.add(name: "Connection", value: "close") }
        let head = HTTPResponseHead(version: request.version, status: status, headers: headers)
        context.write(NIOAny(HTTPServerResponsePart.head(head)), promise: nil)
        if request.method != .HEAD {
            let buffer = context.channel.allocator.buffer(bytes: body)
            context.write(NIOAny(HTTPServerResponsePart.body(.byteBuffer(buffer))), promise: nil)
        }
        let keepAlive = request.isKeepAlive
        context.writeAndFlush(NIOAny(HTTPServerResponsePart.end(nil))).whenComplete { _ in
            if !keepAlive { context.close(promise: nil) }
        }
    }
}
