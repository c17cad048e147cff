import Foundation
import Logging
import PostgresNIO
import TimelineCore

@testable import TimelinePostgres

/// The private PostgreSQL cluster Scripts/test.sh starts (`TIMELINE_TEST_POSTGRES`); each test makes databases of
/// its own in it.
enum TestPostgres {
    struct NotStarted: Error, CustomStringConvertible {
        var description: String {
            "TIMELINE_TEST_POSTGRES is not set: run the tests through Scripts/test.sh, which starts a private PostgreSQL"
        }
    }

    static var admin: PostgresLocation {
        get throws {
            guard let url = ProcessInfo.processInfo.environment["TIMELINE_TEST_POSTGRES"] else { throw NotStarted() }
            return try PostgresLocation(url: url)
        }
    }

    /// A few connections per store (tests open dozens at once), and patience: with every suite running on two
    /// cores, opening a store (a new database, its migrations) has taken longer than a server's default timeout.
    static var options: PostgresStore.Options {
        var options = PostgresStore.Options()
        options.maxConnections = 4
        options.timeout = .seconds(120)
        return options
    }

    /// The database called `name`, created if it does not exist yet.
    static func database(_ name: String) async throws -> PostgresLocation {
        let admin = try self.admin
        let config = PostgresConnection.Configuration(
            host: admin.host, port: admin.port, username: admin.user, password: nil, database: admin.database,
            tls: .disable)
        let conn = try await PostgresConnection.connect(
            configuration: config, id: 1, logger: Logger(label: "test.postgres"))
        do {
            let exists =
                try await conn.query(
                    "SELECT 1 FROM pg_database WHERE datname = \(name)", logger: Logger(label: "test.postgres")
                ).collect().count > 0
            if !exists {
                _ = try await conn.query(
                    PostgresQuery(unsafeSQL: "CREATE DATABASE \"\(name)\""), logger: Logger(label: "test.postgres"))
            }
        } catch {
            try? await conn.close()
            throw error
        }
        try await conn.close()
        var location = admin
        location.database = name
        return location
    }

    /// The one number a query such as `SELECT count(*) …` answers, outside any store.
    static func count(_ location: PostgresLocation, _ sql: String) async throws -> Int {
        try await onConnection(location) { conn, logger in
            var out = 0
            for try await n in try await conn.query(PostgresQuery(unsafeSQL: sql), logger: logger).decode(Int.self) {
                out = n
            }
            return out
        }
    }

    /// Runs SQL on a database as its owner, outside any store: for tests that look under the store.
    static func execute(_ location: PostgresLocation, _ sql: String) async throws {
        try await onConnection(location) { conn, logger in
            _ = try await conn.query(PostgresQuery(unsafeSQL: sql), logger: logger)
        }
    }

    /// `body` on a connection of its own to `location`'s database, as its owner; closed after.
    private static func onConnection<T>(
        _ location: PostgresLocation, _ body: (PostgresConnection, Logger) async throws -> T
    ) async throws -> T {
        let config = PostgresConnection.Configuration(
            host: location.host, port: location.port, username: location.user, password: nil,
            database: location.database, tls: .disable)
        let logger = Logger(label: "test.postgres")
        let conn = try await PostgresConnection.connect(configuration: config, id: 2, logger: logger)
        do {
            let out = try await body(conn, logger)
            try await conn.close()
            return out
        } catch {
            try? await conn.close()
            throw error
        }
    }
}
