import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import PostgresNIO
import TimelineCore
import TimelineStore

/// The store on PostgreSQL: the same log, chain and materialized state as `SQLiteStore`, in a database that several
/// `timelined` nodes share.
///
/// - Every append, from any node, locks the head row first (`timeline_head`, FOR UPDATE), so versions are one
///   gapless sequence in commit order and each hash chains to the one before. A node still commits in groups: the
///   appends waiting while its writer is busy go into one transaction (`PostgresWriter`).
/// - `synchronous_commit` is on for every connection: an append returns only once PostgreSQL made it durable.
/// - Observers (watchers, a node's broadcaster) get every commit, this node's and the others', in version order and
///   once each: the node LISTENs for the head version other nodes NOTIFY, then reads `version > cursor`
///   (`PostgresFollower`).
public final class PostgresStore: TimelineStore, Sendable {
    public let dataset: String
    public let location: PostgresLocation
    /// Whether this open created the dataset (the database was empty): the first node does it, later ones join.
    public let createdDataset: Bool
    let client: PostgresClient
    private let running: Task<Void, Never>
    let logger: Logger
    let writer: PostgresWriter
    let follower: PostgresFollower
    /// How long an operation may wait for the database before it is answered `STORE_UNAVAILABLE`.
    let timeout: Duration

    /// The channel commits are announced on; the payload is the new head: its version, a space, and its hash in hex
    /// (Schema v5; a version alone before).
    static let channel = "timeline_edits"
    /// The channel a change of tokens is announced on (no payload).
    static let tokensChannel = "timeline_tokens"

    public struct Options: Sendable {
        /// Most edits one commit may take from concurrent appends.
        public var maxEditsPerCommit = 20_000
        /// Connections this node keeps to the database (the writer takes one; readers the rest).
        public var maxConnections = 16
        /// How long an operation may wait for the database before it is answered `STORE_UNAVAILABLE`.
        public var timeout: Duration = .seconds(10)
        /// How often the head is read even without a notification: a safety net behind LISTEN.
        public var pollInterval: Duration = .seconds(1)

        public init() {}
    }

    private init(
        dataset: String, created: Bool, location: PostgresLocation, client: PostgresClient,
        running: Task<Void, Never>, head: ChainHead, connection: PostgresConnection.Configuration, options: Options,
        logger: Logger
    ) {
        self.dataset = dataset
        createdDataset = created
        self.location = location
        self.client = client
        self.running = running
        self.logger = logger
        timeout = options.timeout
        follower = PostgresFollower(
            client: client, head: head, connection: connection, pollInterval: options.pollInterval,
            location: location, timeout: options.timeout, logger: logger)
        writer = PostgresWriter(
            client: client, follower: follower, maxEdits: max(1, options.maxEditsPerCommit), logger: logger)
    }

    /// Opens the store in `location`'s database, migrating its schema forward. An empty database becomes a new
    /// dataset (`dataset`, or a new ID) unless `create` is false; one holding another dataset than `dataset` is
    /// refused with `WRONG_DATASET`. Fails with `STORE_UNAVAILABLE` when the database cannot be reached.
    public static func open(
        _ location: PostgresLocation, password: String?, dataset: String? = nil, create: Bool = true,
        options: Options = Options(), logger: Logger = Logger(label: "timeline.postgres")
    ) async throws -> PostgresStore {
        let tls: PostgresClient.Configuration.TLS
        let connectionTLS: PostgresConnection.Configuration.TLS
        switch location.tls {
        case .disable:
            tls = .disable
            connectionTLS = .disable
        case .prefer:
            tls = .prefer(.makeClientConfiguration())
            connectionTLS = .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
        case .require:
            tls = .require(.makeClientConfiguration())
            connectionTLS = .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
        }
        // Durable before OK whatever the database's default; the name shows in pg_stat_activity.
        let parameters = [("synchronous_commit", "on"), ("application_name", "timelined")]
        var configuration = PostgresClient.Configuration(
            host: location.host, port: location.port, username: location.user, password: password,
            database: location.database, tls: tls)
        configuration.options.additionalStartupParameters = parameters
        configuration.options.maximumConnections = max(2, options.maxConnections)
        configuration.options.connectTimeout = options.timeout
        var connection = PostgresConnection.Configuration(
            host: location.host, port: location.port, username: location.user, password: password,
            database: location.database, tls: connectionTLS)
        connection.options.additionalStartupParameters = parameters
        connection.options.connectTimeout = TimeAmount.nanoseconds(
            Int64(options.timeout.components.seconds) * 1_000_000_000)

        // postgres-nio logs every failed connection attempt at info: while a database is away, warnings are enough.
        var background = logger
        background.logLevel = max(logger.logLevel, .warning)
        // One connection of its own first: it fails at once with PostgreSQL's reason (a wrong password, no such
        // database, nobody listening), where the pool would retry until the timeout and say only that.
        let (name, head, created): (String, ChainHead, Bool)
        do {
            (name, head, created) = try await PostgresErrors.within(
                options.timeout, doing: "open the store", at: location
            ) { [connection, background] in
                let first = try await PostgresConnection.connect(configuration: connection, id: 0, logger: background)
                do {
                    let opened = try await migrateAndOpen(first, dataset: dataset, create: create, logger: logger)
                    try? await first.close()
                    return opened
                } catch {
                    try? await first.close()
                    throw error
                }
            }
        } catch {
            throw PostgresErrors.map(
                error, doing: "open the store", at: location, showing: true, passwordGiven: password != nil)
        }
        let client = PostgresClient(configuration: configuration, backgroundLogger: background)
        let running = Task { await client.run() }
        let store = PostgresStore(
            dataset: name, created: created, location: location, client: client, running: running, head: head,
            connection: connection, options: options, logger: logger)
        store.follower.start()
        return store
    }

    /// Stops following the database and closes its connections. Appends in flight are answered first.
    public func close() async {
        await follower.stop()
        running.cancel()
    }

    deinit {
        follower.cancel()
        running.cancel()
    }

    /// Applies the migrations this build knows and not the database, each in its own transaction, holding an
    /// advisory lock so that nodes starting together migrate once; then reads (or creates) the dataset and head.
    static func migrateAndOpen(
        _ conn: PostgresConnection, dataset: String?, create: Bool, logger: Logger
    ) async throws -> (String, ChainHead, Bool) {
        do {
            _ = try await conn.query("BEGIN", logger: logger)
            do {
                // One key for the whole schema: any two timelined nodes take turns here.
                _ = try await conn.query("SELECT pg_advisory_xact_lock(7447001)", logger: logger)
                _ = try await conn.query(
                    """
                    CREATE TABLE IF NOT EXISTS timeline_migrations (
                        name text COLLATE "C" PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())
                    """, logger: logger)
                var applied = Set<String>()
                for try await name in try await conn.query("SELECT name FROM timeline_migrations", logger: logger)
                    .decode(String.self)
                {
                    applied.insert(name)
                }
                let known = Set(PostgresSchema.migrations.map(\.name))
                if let unknown = applied.subtracting(known).sorted().first {
                    throw TimelineError(
                        .storeFailed,
                        "the database was migrated by a newer timelined (migration \(unknown)); upgrade this node")
                }
                for migration in PostgresSchema.migrations where !applied.contains(migration.name) {
                    for statement in migration.statements {
                        _ = try await conn.query(PostgresQuery(unsafeSQL: statement), logger: logger)
                    }
                    _ = try await conn.query(
                        "INSERT INTO timeline_migrations (name) VALUES (\(migration.name))", logger: logger)
                }
                var existing: String?
                for try await value in try await conn.query(
                    "SELECT value FROM timeline_store_info WHERE key = 'dataset'", logger: logger
                ).decode(String.self) {
                    existing = value
                }
                let name: String
                let created = existing == nil
                if let existing {
                    name = existing
                } else {
                    guard create else {
                        throw TimelineError(
                            .notFound, "the database holds no timeline yet (timelined serve creates one)")
                    }
                    name = dataset ?? ULID.generate(at: WallClock.now()).string
                    let genesis = Genesis.hash(dataset: name).bytes
                    _ = try await conn.query(
                        "INSERT INTO timeline_store_info (key, value) VALUES ('dataset', \(name))", logger: logger)
                    _ = try await conn.query(
                        "INSERT INTO timeline_head (version, hash) VALUES (0, \(ByteBuffer(bytes: genesis)))",
                        logger: logger)
                }
                if let dataset, dataset != name {
                    throw TimelineError(.wrongDataset, "the database holds dataset \(name), not \(dataset)")
                }
                let head = try await PostgresReads.head(conn, logger: logger)
                _ = try await conn.query("COMMIT", logger: logger)
                return (name, head, created)
            } catch {
                _ = try? await conn.query("ROLLBACK", logger: logger)
                throw error
            }
        }
    }

    // MARK: TimelineStore

    public var engine: String { "postgresql" }

    /// Whether this node's LISTEN connection to the database is up.
    public var isReachable: Bool { follower.isListening }

    public func append(_ batch: [Proposal]) async throws -> [Edit] {
        guard !batch.isEmpty else { return [] }
        return try await withCheckedThrowingContinuation { continuation in
            writer.submit(.proposals(batch)) { continuation.resume(with: $0) }
        }
    }

    public func append(_ batch: [Proposal], completion: @escaping @Sendable (Result<[Edit], Error>) -> Void) {
        guard !batch.isEmpty else { return completion(.success([])) }
        writer.submit(.proposals(batch), completion: completion)
    }

    public func appendVerified(_ page: LinkedEdits) async throws {
        guard !page.edits.isEmpty else { return }
        _ = try await withCheckedThrowingContinuation { continuation in
            writer.submit(.linked(page)) { continuation.resume(with: $0) }
        }
    }

    public func observeCommits(_ observer: @escaping @Sendable ([[Edit]]) -> Void) {
        follower.addObserver(observer)
    }

    public func wantOthersCommits(_ wanted: Bool) {
        follower.want(others: wanted)
    }

    /// The last version this node has handed to its observers: what its watchers have been sent. A commit through
    /// another node is reported once it has been read here, within moments of its NOTIFY.
    public func head() async throws -> (version: Int64, hash: Digest) {
        let head = follower.delivered
        return (head.version, head.hash)
    }

    /// Copies `source`'s whole log (the same dataset) into this store, which must be empty, in one transaction:
    /// the same versions, hashes and state, or nothing. For `timelined migrate`; nodes see it once it committed.
    public func copyLog(from source: any TimelineStore, pageSize: Int = 5_000) async throws {
        guard source.dataset == dataset else {
            throw TimelineError(.wrongDataset, "the database holds dataset \(dataset), the source \(source.dataset)")
        }
        do {
            _ = try await writer.copyAll(from: source, pageSize: pageSize)
        } catch let rejection as BatchRejection {
            throw rejection.error
        } catch {
            throw PostgresErrors.map(error, doing: "copy the log", at: location, showing: true)
        }
        follower.poke()
    }

    /// Runs a read on a pooled connection within the store's timeout, mapping failures to stable codes.
    func read<T: Sendable>(
        _ what: String, _ body: @escaping @Sendable (PostgresConnection, Logger) async throws -> T
    ) async throws -> T {
        let logger = self.logger
        let client = self.client
        if follower.isUnreachable { throw PostgresErrors.unreachable(location, doing: what) }
        do {
            return try await PostgresErrors.within(timeout, doing: what, at: location) {
                try await client.withConnection { conn in try await body(conn, logger) }
            }
        } catch {
            throw PostgresErrors.map(error, doing: what, at: location)
        }
    }
}

/// PostgreSQL's errors become stable codes, with a sentence that names what failed but never SQL, a password or a
/// server's message (postgres-nio's own descriptions leak nothing either).
enum PostgresErrors {
    struct TimedOut: Error {}

    static func unreachable(_ location: PostgresLocation, doing what: String) -> TimelineError {
        TimelineError(.storeUnavailable, "the server cannot reach its database; could not \(what)")
    }

    /// `showing` the database's address (for an operator's command; a client's answer says only "the database"),
    /// and whether a password was given (a refused login without one says how to give it).
    static func map(
        _ error: Error, doing what: String, at location: PostgresLocation, showing: Bool = false,
        passwordGiven: Bool = true
    ) -> Error {
        let place = showing ? "PostgreSQL at \(location.address)" : "the database"
        switch error {
        case is TimelineError, is BatchRejection:
            return error
        case is TimedOut:
            return TimelineError(.storeUnavailable, "\(place) did not answer in time; could not \(what)")
        case let e as PSQLError:
            if let state = e.serverInfo?[.sqlState] {
                switch state {
                case "28P01", "28000":
                    return TimelineError(
                        .storeUnavailable,
                        "\(place) refused user \(location.user): "
                            + (passwordGiven
                                ? "wrong password, or no access to database \(location.database)"
                                : "it needs a password, and none was given (PGPASSWORD or --store-password-file)")
                            + "; could not \(what)")
                case "3D000":
                    return TimelineError(
                        .storeUnavailable,
                        "database \(location.database) does not exist\(showing ? " on \(location.address)" : ""); "
                            + "create it first (CREATE DATABASE \(location.database))")
                case "57P01", "57P02", "57P03", "53300":
                    return TimelineError(
                        .storeUnavailable, "\(place) is shutting down, starting or full; could not \(what)")
                case "53100":
                    return TimelineError(
                        .storeFailed, "the database's disk is full; could not \(what), nothing was written")
                case "23505", "23514", "23503", "23001":
                    return TimelineError(.corrupt, "a schema constraint refused the write (SQLSTATE \(state))")
                default:
                    return TimelineError(.storeFailed, "could not \(what) (SQLSTATE \(state))")
                }
            }
            switch e.code {
            case .authMechanismRequiresPassword:
                return TimelineError(
                    .storeUnavailable,
                    "\(place) asks user \(location.user) for a password, and none was given (PGPASSWORD or "
                        + "--store-password-file); could not \(what)")
            case .connectionError, .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .poolClosed,
                .sslUnsupported, .failedToAddSSLHandler:
                let refused = showing && "\(e.underlying.map { "\($0)" } ?? "")".contains("refused")
                return TimelineError(
                    .storeUnavailable,
                    "cannot reach \(place)\(refused ? " (connection refused: is PostgreSQL running there?)" : ""); "
                        + "could not \(what)")
            default:
                return TimelineError(.storeFailed, "could not \(what) (PostgreSQL: \(e.code))")
            }
        case is CancellationError:
            return TimelineError(.storeUnavailable, "could not \(what): the request was cancelled")
        default:
            return TimelineError(.storeFailed, "could not \(what) (\(type(of: error)))")
        }
    }

    /// Runs `body`, giving up after `timeout` with `TimedOut`: a database that stopped answering must not hang a
    /// request. The body is cancelled and left to finish on its own (postgres-nio may not stop a query at once);
    /// its outcome is then unknown to the caller, which is answered with the failure, never with an OK.
    static func within<T: Sendable>(
        _ timeout: Duration, doing what: String, at location: PostgresLocation,
        _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        let answered = NIOLockedValueBox(false)
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, Error>) in
            func finish(_ result: Result<T, Error>) {
                let first = answered.withLockedValue { done in
                    defer { done = true }
                    return !done
                }
                if first { continuation.resume(with: result) }
            }
            let work = NIOLockedValueBox<Task<Void, Never>?>(nil)
            let timer = Task {
                try? await Task.sleep(for: timeout)
                if Task.isCancelled { return }
                finish(.failure(TimedOut()))
                work.withLockedValue { $0?.cancel() }
            }
            work.withLockedValue {
                $0 = Task {
                    do { finish(.success(try await body())) } catch { finish(.failure(error)) }
                    timer.cancel()
                }
            }
        }
    }
}
