import COpenSSL
import CTimelineShims
import Foundation
import TimelineCore

/// Why TLS failed: the one error type, with a TLS code. The message names what happened, never key material.
extension TimelineError {
    /// OpenSSL's error queue for this thread, emptied into a message.
    static func drainedQueue() -> String {
        var buffer = [CChar](repeating: 0, count: 1024)
        timeline_drain_errors(&buffer, buffer.count)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func openSSL(_ code: ErrorCode, _ what: String) -> TimelineError {
        let queue = drainedQueue()
        return TimelineError(code, queue.isEmpty ? what : "\(what): \(queue)")
    }
}

/// A SHA-256 certificate fingerprint, shown as 64 hex digits (colons and case are ignored when parsing).
public struct Fingerprint: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        self.bytes = bytes
    }

    public init?(hex: String) {
        let digits = hex.filter { $0 != ":" }.lowercased()
        guard digits.count == 64 else { return nil }
        var out: [UInt8] = []
        var index = digits.startIndex
        for _ in 0..<32 {
            let next = digits.index(index, offsetBy: 2)
            guard let byte = UInt8(digits[index..<next], radix: 16) else { return nil }
            out.append(byte)
            index = next
        }
        bytes = out
    }

    /// The fingerprint of a PEM certificate.
    public init(pem: String) throws {
        var out = [UInt8](repeating: 0, count: 32)
        let ok = pem.withCString { p in timeline_pem_fingerprint(p, strlen(p), &out) }
        guard ok == 1 else { throw TimelineError.openSSL(.badCertificate, "not a PEM certificate") }
        bytes = out
    }

    public var hex: String { bytes.map { String(format: "%02x", $0) }.joined() }
    public var description: String { hex }
}

/// An immutable, configured `SSL_CTX`, shared by every connection of a server or client.
public final class TLSContext: @unchecked Sendable {
    /// How a client decides to trust a server. There is no "accept anything".
    public enum Verification: Sendable, Equatable {
        /// A CA bundle (PEM) and the host name the certificate must be for.
        case certificateAuthority(file: String, hostname: String)
        /// The exact certificate, by SHA-256 fingerprint (a pinned self-signed server).
        case fingerprint(Fingerprint)
    }

    let ctx: OpaquePointer
    public let isServer: Bool
    public let verification: Verification?

    deinit { SSL_CTX_free(ctx) }

    private init(ctx: OpaquePointer, isServer: Bool, verification: Verification?) {
        self.ctx = ctx
        self.isServer = isServer
        self.verification = verification
    }

    /// A server context from PEM files. With `clientCAFile`, clients may present a certificate signed by it
    /// (mutual TLS for server-to-server links); clients without one are still served.
    public static func server(certificateFile: String, keyFile: String, clientCAFile: String? = nil) throws
        -> TLSContext
    {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_server_method()) else {
            throw TimelineError.openSSL(.tlsSetup, "could not create a TLS context")
        }
        let context = TLSContext(ctx: ctx, isServer: true, verification: nil)
        guard timeline_ssl_ctx_harden(ctx) == 1 else {
            throw TimelineError.openSSL(.tlsSetup, "could not set TLS policy")
        }
        guard SSL_CTX_use_certificate_chain_file(ctx, certificateFile) == 1 else {
            throw TimelineError.openSSL(.badCertificate, "could not load the certificate")
        }
        guard SSL_CTX_use_PrivateKey_file(ctx, keyFile, SSL_FILETYPE_PEM) == 1 else {
            throw TimelineError.openSSL(.badKey, "could not load the private key")
        }
        guard SSL_CTX_check_private_key(ctx) == 1 else {
            throw TimelineError.openSSL(.badKey, "the private key does not match the certificate")
        }
        if let clientCAFile {
            guard SSL_CTX_load_verify_locations(ctx, clientCAFile, nil) == 1 else {
                throw TimelineError.openSSL(.badCertificate, "could not load the client CA file")
            }
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        }
        return context
    }

    /// A client context. `certificateFile`/`keyFile` present a client certificate (mutual TLS).
    public static func client(
        verification: Verification, certificateFile: String? = nil, keyFile: String? = nil
    ) throws -> TLSContext {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_client_method()) else {
            throw TimelineError.openSSL(.tlsSetup, "could not create a TLS context")
        }
        let context = TLSContext(ctx: ctx, isServer: false, verification: verification)
        guard timeline_ssl_ctx_harden(ctx) == 1 else {
            throw TimelineError.openSSL(.tlsSetup, "could not set TLS policy")
        }
        switch verification {
        case .certificateAuthority(let file, _):
            guard SSL_CTX_load_verify_locations(ctx, file, nil) == 1 else {
                throw TimelineError.openSSL(.badCertificate, "could not load the CA file")
            }
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        case .fingerprint:
            // Chain checks do not apply to a pinned certificate; the handler compares the fingerprint itself.
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nil)
        }
        if let certificateFile, let keyFile {
            guard SSL_CTX_use_certificate_chain_file(ctx, certificateFile) == 1,
                SSL_CTX_use_PrivateKey_file(ctx, keyFile, SSL_FILETYPE_PEM) == 1
            else { throw TimelineError.openSSL(.badCertificate, "could not load the client certificate") }
        }
        return context
    }
}

/// Certificate helpers for a server's first start.
public enum Certificates {
    /// A new P-256 key and self-signed certificate (PEM), valid for `days`, for `localhost` and the loopback
    /// addresses plus any extra names.
    public static func selfSigned(
        commonName: String, extraNames: [String] = [], days: Int = 825
    ) throws -> (certificate: String, key: String) {
        var san = ["DNS:localhost", "IP:127.0.0.1", "IP:::1"]
        for name in extraNames where !name.isEmpty {
            san.append(name.allSatisfy { $0.isNumber || $0 == "." || $0 == ":" } ? "IP:\(name)" : "DNS:\(name)")
        }
        var certPointer: UnsafeMutablePointer<CChar>?
        var keyPointer: UnsafeMutablePointer<CChar>?
        ERR_clear_error()
        guard
            timeline_make_self_signed(commonName, san.joined(separator: ","), Int32(days), &certPointer, &keyPointer)
                == 1,
            let certPointer, let keyPointer
        else { throw TimelineError.openSSL(.tlsSetup, "could not generate a certificate") }
        defer {
            free(certPointer)
            free(keyPointer)
        }
        return (String(cString: certPointer), String(cString: keyPointer))
    }
}
