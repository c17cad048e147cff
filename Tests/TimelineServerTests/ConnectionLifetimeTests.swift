import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing
import TimelineCore
import TimelineStore
import TimelineWire

@testable import TimelineServer

/// A connection's handler is freed once its connection closes. The handler keeps its channel's context, which
/// keeps the handler: unless the handler lets go when it is removed, every connection, with everything it had
/// queued (a BATCH's lines among it), stays in memory for the life of the server.
@Suite struct ConnectionLifetimeTests {
    final class Weak: @unchecked Sendable {
        weak var handler: ConnectionHandler?
        init(_ handler: ConnectionHandler) { self.handler = handler }
    }

    @Test func aClosedConnectionsHandlerIsFreed() async throws {
        let root = ServerProcess.newDataFolder()
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { ServerProcess.removeData(root) }
        let store = try SQLiteStore(path: root.appendingPathComponent("timeline.sqlite").path)
        let tokens = TokenStore(path: root.appendingPathComponent("tokens.json").path)
        let core = ServerCore(store: store, tokens: tokens, limits: Limits(), logger: Logger(label: "test"))
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let made = NIOLockedValueBox<[Weak]>([])
        // The server's pipeline without TLS, which the handler never sees: plain lines on a real socket.
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handler = ConnectionHandler(core: core)
                    made.withLockedValue { $0.append(Weak(handler)) }
                    try channel.pipeline.syncOperations.addHandlers([
                        ByteToMessageHandler(LineFrameDecoder(maxLength: 1024)), handler,
                    ])
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let address = try #require(server.localAddress)
        for _ in 0..<5 {
            let client = try await ClientBootstrap(group: group).connect(to: address).get()
            try await client.writeAndFlush(ByteBuffer(string: "a PING\n"))
            try await Task.sleep(nanoseconds: 50_000_000)
            try await client.close()
        }
        // The server side closes a moment after the client; give it that moment.
        let deadline = Date().addingTimeInterval(10)
        while made.withLockedValue({ $0.contains { $0.handler != nil } }), Date() < deadline {
            try await Task.sleep(nanoseconds: 20_000_000)
        }
        #expect(made.withLockedValue { $0.count } == 5)
        #expect(made.withLockedValue { $0.filter { $0.handler != nil }.count } == 0)
        try await server.close()
        try await group.shutdownGracefully()
    }
}
