import CTimelineShims

/// A SHA-256 digest, computed by the system's libcrypto.
public struct Digest: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    /// 32 zero bytes.
    public static let zero = Digest(unchecked: [UInt8](repeating: 0, count: 32))

    init(unchecked bytes: [UInt8]) { self.bytes = bytes }

    public init?(bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        self.bytes = bytes
    }

    /// Parses 64 hex digits (either case).
    public init?(hex: String) {
        // Read in place (every pulled edit carries one): copying the text into an array first cost an allocation.
        var text = hex
        let decoded = text.withUTF8 { utf8 -> [UInt8]? in
            guard utf8.count == 64 else { return nil }
            var invalid: UInt8 = 0
            let out = [UInt8](unsafeUninitializedCapacity: 32) { out, count in
                for i in 0..<32 {
                    let hi = Digest.nibble(utf8[2 * i])
                    let lo = Digest.nibble(utf8[2 * i + 1])
                    invalid |= (hi | lo) & 0xF0
                    out[i] = hi << 4 | lo & 0x0F
                }
                count = 32
            }
            return invalid == 0 ? out : nil
        }
        guard let out = decoded else { return nil }
        bytes = out
    }

    /// A hex digit's value, or 0xFF for any other byte.
    @inline(__always) static func nibble(_ c: UInt8) -> UInt8 {
        let digit = c &- UInt8(ascii: "0")
        if digit < 10 { return digit }
        let letter = (c | 0x20) &- UInt8(ascii: "a")
        return letter < 6 ? letter + 10 : 0xFF
    }

    /// Lower-case hex, as on the wire.
    public var hex: String {
        var out = [UInt8]()
        out.reserveCapacity(64)
        for b in bytes {
            out.append(JSON.hexDigit(b >> 4))
            out.append(JSON.hexDigit(b & 0x0F))
        }
        return String(decoding: out, as: UTF8.self)
    }

    public var description: String { hex }
}

/// SHA-256 over the system's libcrypto.
public enum SHA256 {
    public static func hash(_ data: [UInt8]) -> Digest {
        chain(prefix: [], data)
    }

    /// SHA-256 of `prefix` followed by `data`, without concatenating them.
    public static func chain(prefix: [UInt8], _ data: [UInt8]) -> Digest {
        data.withUnsafeBufferPointer { chain(prefix: prefix, $0) }
    }

    /// The same over bytes in place (a body inside a larger buffer).
    public static func chain(prefix: [UInt8], _ data: UnsafeBufferPointer<UInt8>) -> Digest {
        var out = [UInt8](repeating: 0, count: 32)
        let ok = prefix.withUnsafeBufferPointer { p in
            out.withUnsafeMutableBufferPointer { o in
                timeline_sha256_two(p.baseAddress, p.count, data.baseAddress, data.count, o.baseAddress)
            }
        }
        precondition(ok == 1, "libcrypto failed to compute SHA-256")
        return Digest(unchecked: out)
    }

    /// An incremental hasher for streams too large to hold (the state hash of a whole store).
    public final class Hasher {
        private let ctx: OpaquePointer

        public init() {
            guard let ctx = timeline_sha256_new() else { preconditionFailure("libcrypto failed to start SHA-256") }
            self.ctx = ctx
        }

        deinit { timeline_sha256_free(ctx) }

        public func update(_ data: [UInt8]) {
            let ok = data.withUnsafeBufferPointer { timeline_sha256_update(ctx, $0.baseAddress, $0.count) }
            precondition(ok == 1, "libcrypto failed to update SHA-256")
        }

        public func finalize() -> Digest {
            var out = [UInt8](repeating: 0, count: 32)
            let ok = out.withUnsafeMutableBufferPointer { timeline_sha256_final(ctx, $0.baseAddress) }
            precondition(ok == 1, "libcrypto failed to finish SHA-256")
            return Digest(unchecked: out)
        }
    }

    /// The linked OpenSSL's version text.
    public static var libraryVersion: String { String(cString: timeline_openssl_version()) }
}
