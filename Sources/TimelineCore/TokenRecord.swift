/// A bearer token as a server keeps it: never the token, only its SHA-256 hash, with who it is for, their role,
/// and when it was made, revoked, expires and was last used. The same record whichever store keeps the tokens.
public struct TokenRecord: Sendable, Equatable {
    public var name: String
    public var role: Role
    public var hash: Digest
    public var created: Timestamp
    public var revoked: Timestamp?
    /// When the token stops working (AUTH_FAILED from then on; an open connection is refused at its next request).
    public var expires: Timestamp?
    /// The last AUTH with it, to the minute (as far as the server has written it down).
    public var lastUsed: Timestamp?

    public init(
        name: String, role: Role, hash: Digest, created: Timestamp, revoked: Timestamp? = nil,
        expires: Timestamp? = nil, lastUsed: Timestamp? = nil
    ) {
        self.name = name
        self.role = role
        self.hash = hash
        self.created = created
        self.revoked = revoked
        self.expires = expires
        self.lastUsed = lastUsed
    }

    /// Whether it still lets anyone in at `now`.
    public func isLive(at now: Timestamp) -> Bool { revoked == nil && expires.map { now < $0 } ?? true }
}
