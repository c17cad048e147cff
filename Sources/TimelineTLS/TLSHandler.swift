import COpenSSL
import CTimelineShims
import NIOCore
import TimelineCore

/// Fired inbound once the handshake has completed (and, on a client, the server has been verified).
public struct TLSHandshakeCompleted: Sendable {
    public var protocolVersion: String
    public var cipher: String
    /// The peer's certificate fingerprint, if it presented one.
    public var peerFingerprint: Fingerprint?
}

/// TLS over the system's OpenSSL with two memory BIOs: ciphertext from the network goes into one, OpenSSL's
/// output is drained from the other onto the network. Plaintext in and out; the protocol above never knows.
///
/// Bounded: plaintext written before the handshake completes is capped, the handshake has a deadline, and
/// every read drains OpenSSL completely, so no BIO grows beyond one network read.
public final class TLSHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    enum State {
        case idle
        case handshaking
        case open
        case closing
        case closed
    }

    private let tls: TLSContext
    private let serverHostname: String?
    private let handshakeTimeout: TimeAmount
    /// Most plaintext that may wait for the handshake to finish.
    private let maxPendingBeforeHandshake: Int

    private var state = State.idle
    private var ssl: OpaquePointer?
    private var readBIO: OpaquePointer?
    private var writeBIO: OpaquePointer?
    private var pending: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    private var pendingBytes = 0
    private var timeout: Scheduled<Void>?
    private var scratch = [UInt8](repeating: 0, count: 16_384)
    /// A close asked for while the handshake was running with lines waiting to go out.
    private var closeAfterHandshake: EventLoopPromise<Void>??
    /// Ciphertext written to the channel but not yet flushed (writes made with `flush: false`).
    private var unflushed = false
    /// The last ciphertext handed to the network, for barriers: a write completes only after it.
    private var lastNetworkWrite: EventLoopFuture<Void>?

    public init(
        context: TLSContext, serverHostname: String? = nil, handshakeTimeout: TimeAmount = .seconds(10),
        maxPendingBeforeHandshake: Int = 1 << 20
    ) {
        tls = context
        self.serverHostname = serverHostname
        self.handshakeTimeout = handshakeTimeout
        self.maxPendingBeforeHandshake = maxPendingBeforeHandshake
    }

    deinit {
        if let ssl { SSL_free(ssl) }  // frees both BIOs with it
    }

    // MARK: Lifecycle

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context: context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    private func start(context: ChannelHandlerContext) {
        guard case .idle = state else { return }
        ERR_clear_error()
        guard let ssl = SSL_new(tls.ctx), let rbio = BIO_new(BIO_s_mem()), let wbio = BIO_new(BIO_s_mem()) else {
            fail(context: context, TimelineError.openSSL(.tlsSetup, "could not create a TLS session"))
            return
        }
        SSL_set_bio(ssl, rbio, wbio)
        // An empty read BIO means "more may come" until the TCP stream ends.
        timeline_bio_set_mem_eof(rbio, 0)
        self.ssl = ssl
        readBIO = rbio
        writeBIO = wbio
        state = .handshaking
        if tls.isServer {
            SSL_set_accept_state(ssl)
        } else {
            SSL_set_connect_state(ssl)
            if let serverHostname {
                _ = timeline_ssl_set_sni(ssl, serverHostname)
            }
            if case .certificateAuthority(_, let hostname) = tls.verification {
                SSL_set1_host(ssl, hostname)
            }
        }
        let channel = context.channel
        timeout = context.eventLoop.assumeIsolated().scheduleTask(in: handshakeTimeout) { [weak self] in
            guard let self, case .handshaking = self.state else { return }
            let error = TimelineError(.handshakeTimeout, "the TLS handshake did not finish in time")
            self.state = .closing
            self.failPending(error)
            let promise = self.closeAfterHandshake ?? nil
            self.closeAfterHandshake = nil
            channel.pipeline.fireErrorCaught(error)
            channel.close(promise: promise)
        }
        if !tls.isServer { advance(context: context) }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        if let readBIO { timeline_bio_set_mem_eof(readBIO, 1) }
        timeout?.cancel()
        let wasOpen: Bool
        if case .open = state { wasOpen = true } else { wasOpen = false }
        state = .closed
        failPending(TimelineError(.tlsClosed, "the connection closed"))
        if wasOpen, let ssl, SSL_get_shutdown(ssl) & SSL_RECEIVED_SHUTDOWN == 0 {
            // The TCP stream ended without close_notify: possibly truncated by an attacker; the layer above
            // has already seen every complete line, and a partial one is dropped.
            context.fireUserInboundEventTriggered(TimelineError(.truncated, "the peer closed without close_notify"))
        }
        context.fireChannelInactive()
    }

    // MARK: Inbound

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        guard let readBIO else { return }
        switch state {
        case .handshaking, .open, .closing: break
        case .idle, .closed: return
        }
        while buffer.readableBytes > 0 {
            let written = buffer.withUnsafeReadableBytes { raw in
                BIO_write(readBIO, raw.baseAddress, Int32(raw.count))
            }
            guard written > 0 else {
                fail(context: context, TimelineError.openSSL(.tlsFailed, "could not buffer TLS input"))
                return
            }
            buffer.moveReaderIndex(forwardBy: Int(written))
        }
        advance(context: context)
    }

    /// Runs the handshake as far as the input allows, then decrypts everything available, then sends
    /// whatever OpenSSL produced (handshake messages, session tickets, KeyUpdate answers, alerts).
    private func advance(context: ChannelHandlerContext) {
        guard let ssl else { return }
        if case .handshaking = state {
            ERR_clear_error()
            let result = SSL_do_handshake(ssl)
            if result != 1 {
                let error = SSL_get_error(ssl, result)
                if error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE {
                    flushNetwork(context: context)
                    return
                }
                let reason =
                    certificateVerdict(ssl) ?? TimelineError.openSSL(.handshakeFailed, "the TLS handshake failed")
                flushNetwork(context: context)  // the alert, so the peer learns why
                fail(context: context, reason)
                return
            }
            if let problem = verifyPeer(ssl) {
                fail(context: context, problem)
                return
            }
            state = .open
            timeout?.cancel()
            timeout = nil
            context.fireUserInboundEventTriggered(
                TLSHandshakeCompleted(
                    protocolVersion: String(cString: SSL_get_version(ssl)),
                    cipher: String(cString: SSL_CIPHER_get_name(SSL_get_current_cipher(ssl))),
                    peerFingerprint: peerFingerprint(ssl)))
            encryptPending(context: context)
            if let promise = closeAfterHandshake {
                closeAfterHandshake = nil
                close(context: context, mode: .all, promise: promise)
                return
            }
        }
        readPlaintext(context: context, ssl: ssl)
        flushNetwork(context: context)
    }

    private func readPlaintext(context: ChannelHandlerContext, ssl: OpaquePointer) {
        var delivered = false
        while true {
            guard case .open = state else { break }
            ERR_clear_error()
            let n = scratch.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32($0.count)) }
            if n > 0 {
                var out = context.channel.allocator.buffer(capacity: Int(n))
                _ = scratch.withUnsafeBytes { out.writeBytes(UnsafeRawBufferPointer(rebasing: $0[0..<Int(n)])) }
                context.fireChannelRead(wrapInboundOut(out))
                delivered = true
                continue
            }
            let error = SSL_get_error(ssl, n)
            if error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE { break }
            if error == SSL_ERROR_ZERO_RETURN {
                // close_notify: answer it and close once everything before it has been handled.
                if delivered { context.fireChannelReadComplete() }
                delivered = false
                close(context: context, mode: .all, promise: nil)
                break
            }
            fail(context: context, TimelineError.openSSL(.tlsFailed, "could not read TLS data"))
            break
        }
        if delivered { context.fireChannelReadComplete() }
    }

    /// Why a client refused the server's certificate chain or name, in OpenSSL's words ("certificate has
    /// expired", "hostname mismatch", "self-signed certificate"), rather than a bare "verify failed".
    private func certificateVerdict(_ ssl: OpaquePointer) -> TimelineError? {
        guard !tls.isServer, case .certificateAuthority(_, let hostname)? = tls.verification else { return nil }
        let result = SSL_get_verify_result(ssl)
        guard result != X509_V_OK else { return nil }
        ERR_clear_error()
        let why = X509_verify_cert_error_string(result).map { String(cString: $0) } ?? "error \(result)"
        return TimelineError(.certificateRejected, "the server's certificate was refused for \(hostname): \(why)")
    }

    private func verifyPeer(_ ssl: OpaquePointer) -> TimelineError? {
        guard !tls.isServer, let verification = tls.verification else { return nil }
        switch verification {
        case .certificateAuthority:
            // SSL_VERIFY_PEER already refused a bad chain or host name during the handshake.
            return nil
        case .fingerprint(let expected):
            guard let actual = peerFingerprint(ssl) else {
                return TimelineError(.certificateMismatch, "the server presented no certificate")
            }
            guard actual == expected else {
                return TimelineError(
                    .certificateMismatch,
                    "the server's certificate fingerprint is \(actual.hex), but \(expected.hex) was pinned")
            }
            return nil
        }
    }

    private func peerFingerprint(_ ssl: OpaquePointer) -> Fingerprint? {
        var out = [UInt8](repeating: 0, count: 32)
        guard timeline_peer_fingerprint(ssl, &out) == 1 else { return nil }
        return Fingerprint(bytes: out)
    }

    // MARK: Outbound

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let buffer = unwrapOutboundIn(data)
        switch state {
        case .closing, .closed, .idle:
            promise?.fail(TimelineError(.tlsClosed, "the connection is closing"))
            return
        case .handshaking:
            guard pendingBytes + buffer.readableBytes <= maxPendingBeforeHandshake else {
                promise?.fail(TimelineError(.tooMuchPending, "too much data written before the TLS handshake"))
                return
            }
        case .open:
            break
        }
        pendingBytes += buffer.readableBytes
        pending.append((buffer, promise))
    }

    public func flush(context: ChannelHandlerContext) {
        guard case .open = state else { return }
        encryptPending(context: context)
        flushNetwork(context: context)
    }

    /// Encrypts queued plaintext, merged into as few TLS records as fit: one record per line would cost an
    /// AEAD operation and 22 bytes each.
    private func encryptPending(context: ChannelHandlerContext) {
        guard let ssl, !pending.isEmpty else { return }
        var merged = context.channel.allocator.buffer(capacity: pendingBytes)
        var promises: [EventLoopPromise<Void>] = []
        for (var buffer, promise) in pending {
            merged.writeBuffer(&buffer)
            if let promise { promises.append(promise) }
        }
        pending.removeAll(keepingCapacity: true)
        pendingBytes = 0
        while merged.readableBytes > 0 {
            ERR_clear_error()
            let n = merged.withUnsafeReadableBytes { SSL_write(ssl, $0.baseAddress, Int32(min($0.count, 1 << 20))) }
            guard n > 0 else {
                let error = TimelineError.openSSL(.tlsFailed, "could not encrypt")
                for p in promises { p.fail(error) }
                fail(context: context, error)
                return
            }
            merged.moveReaderIndex(forwardBy: Int(n))
        }
        // The plaintext promises complete when the ciphertext carrying them has been written; an empty write
        // (a barrier) completes when everything before it has.
        let written = flushNetwork(context: context, flush: false) ?? lastNetworkWrite
        for p in promises {
            if let written { p.completeWith(written) } else { p.succeed(()) }
        }
    }

    /// Moves OpenSSL's output onto the network; returns the last write's future.
    @discardableResult
    private func flushNetwork(context: ChannelHandlerContext, flush: Bool = true) -> EventLoopFuture<Void>? {
        guard let writeBIO else { return nil }
        var last: EventLoopFuture<Void>?
        while true {
            let available = Int(BIO_ctrl_pending(writeBIO))
            guard available > 0 else { break }
            var out = context.channel.allocator.buffer(capacity: available)
            let n = out.writeWithUnsafeMutableBytes(minimumWritableBytes: available) { raw in
                Int(max(0, BIO_read(writeBIO, raw.baseAddress, Int32(available))))
            }
            guard n > 0 else { break }
            last = context.write(wrapOutboundOut(out))
            unflushed = true
        }
        if let last { lastNetworkWrite = last }
        if flush, unflushed {
            unflushed = false
            context.flush()
        }
        return last
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        switch state {
        case .open:
            state = .closing
            // Replies queued before the close go out first, then close_notify.
            encryptPending(context: context)
            if let ssl {
                ERR_clear_error()
                _ = SSL_shutdown(ssl)
            }
            flushNetwork(context: context)
        case .handshaking where !pending.isEmpty:
            // Lines written before the handshake (a greeting, a BYE) still go out: close once it completes,
            // or when it fails or times out.
            closeAfterHandshake = promise
            return
        case .handshaking, .idle:
            state = .closing
            failPending(TimelineError(.tlsClosed, "the connection closed before the TLS handshake finished"))
        case .closing, .closed:
            break
        }
        context.close(mode: .all, promise: promise)
    }

    private func failPending(_ error: Error) {
        let waiting = pending
        pending.removeAll()
        pendingBytes = 0
        for (_, promise) in waiting { promise?.fail(error) }
    }

    private func fail(context: ChannelHandlerContext, _ error: TimelineError) {
        switch state {
        case .closed: return
        default: break
        }
        state = .closing
        timeout?.cancel()
        failPending(error)
        context.fireErrorCaught(error)
        let promise = closeAfterHandshake ?? nil
        closeAfterHandshake = nil
        context.close(promise: promise)
    }
}
