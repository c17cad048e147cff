import Foundation
import TimelineCore

/// Where a PostgreSQL store is: `postgresql://USER@HOST:PORT/DATABASE`, as libpq writes it, with `sslmode`
/// (`disable`, `prefer`, `require`) as its only query parameter. The password is never part of it: it comes from
/// `PGPASSWORD` or a file, so that it is not on a command line or in a data folder.
public struct PostgresLocation: Sendable, Equatable, CustomStringConvertible {
    public enum TLSMode: String, Sendable { case disable, prefer, require }

    public var user: String
    public var host: String
    public var port: Int
    public var database: String
    public var tls: TLSMode

    public init(user: String, host: String, port: Int = 5432, database: String, tls: TLSMode = .prefer) {
        self.user = user
        self.host = host
        self.port = port
        self.database = database
        self.tls = tls
    }

    /// Parses a store URL; refused with `BAD_ARGUMENT` and a sentence saying what is wrong.
    public init(url text: String) throws(TimelineError) {
        func refuse(_ why: String) -> TimelineError {
            TimelineError(.badArgument, "\(why) (expected postgresql://USER@HOST:PORT/DATABASE)")
        }
        guard text.hasPrefix("postgresql://") || text.hasPrefix("postgres://"),
            let parts = URLComponents(string: text)
        else { throw refuse("not a PostgreSQL URL") }
        guard parts.password == nil else {
            throw TimelineError(
                .badArgument,
                "the store URL holds a password, which would be visible to every user of this machine; "
                    + "put it in PGPASSWORD or a --store-password-file instead")
        }
        guard let user = parts.user, !user.isEmpty else { throw refuse("the URL names no user") }
        guard let host = parts.host, !host.isEmpty else { throw refuse("the URL names no host") }
        let database = String(parts.path.drop(while: { $0 == "/" }))
        guard !database.isEmpty, !database.contains("/") else { throw refuse("the URL names no database") }
        var tls = TLSMode.prefer
        for item in parts.queryItems ?? [] {
            guard item.name == "sslmode", let mode = item.value.flatMap(TLSMode.init(rawValue:)) else {
                throw refuse("unknown parameter \(item.name)=\(item.value ?? "") (only sslmode=disable|prefer|require)")
            }
            tls = mode
        }
        let port = parts.port ?? 5432
        guard (1...65535).contains(port) else { throw refuse("port \(port) is out of range") }
        self.init(user: user, host: host, port: port, database: database, tls: tls)
    }

    /// `host:port` (an IPv6 host in brackets), as messages and the URL name the server.
    public var address: String { (host.contains(":") ? "[\(host)]" : host) + ":\(port)" }

    /// The URL, without a password (there is none to leave out).
    public var description: String {
        "postgresql://\(user)@\(address)/\(database)" + (tls == .prefer ? "" : "?sslmode=\(tls.rawValue)")
    }
}
