import NIOCore
import NIOPosix
import TimelineTLS
import TimelineWire

/// A TLS connection framed into lines, the pipeline every client of the protocol uses: TLS, then lines of at
/// most `maxLineBytes`, then `handler`, which receives `Frame`s.
public enum LineChannel {
    public static func connect(
        host: String, port: Int, tls: TLSContext, serverHostname: String? = nil, maxLineBytes: Int,
        timeout: TimeAmount = .seconds(10), on loop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next(),
        handler: any ChannelHandler & Sendable
    ) async throws -> any Channel {
        try await ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandlers([
                        TLSHandler(context: tls, serverHostname: serverHostname ?? host, handshakeTimeout: timeout),
                        ByteToMessageHandler(LineFrameDecoder(maxLength: maxLineBytes)),
                        handler,
                    ])
                }
            }
            .connect(host: host, port: port).get()
    }
}
