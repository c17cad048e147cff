import ArgumentParser
import Dispatch
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import TimelineCore
import TimelineLink
import TimelinePostgres
import TimelineServer
import TimelineStore
import TimelineTLS

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the timeline over TLS.",
        discussion: """
            On first start on an empty folder: creates the store, a self-signed certificate (tls/server.crt, \
            tls/server.key) unless --cert/--key are given, an admin token (admin.token, also printed once), and \
            loads the bundled sample timeline unless --empty. SIGTERM or SIGINT shut down gracefully.

            Examples:
              timelined serve --data ./data
              timelined serve --data ./data --listen 0.0.0.0:7447 --cert site.crt --key site.key
              PGPASSWORD=... timelined serve --data ./node-a --store postgresql://timeline@db:5432/timeline

            With --store, the timeline lives in PostgreSQL and several nodes (each with its own --data folder for \
            its TLS files) serve it; the first node on an empty database creates it. The folder remembers the store.
            """)

    @OptionGroup var data: DataOptions

    @Option(help: "Address and port to listen on (port 0: any free port).")
    var listen = "127.0.0.1:7447"

    @Flag(help: "Start with an empty timeline instead of the sample.")
    var empty = false

    @Option(help: "Certificate chain (PEM) instead of the generated one.")
    var cert: String?

    @Option(help: "Private key (PEM) for --cert.")
    var key: String?

    @Option(help: "CA (PEM) whose client certificates may be presented (mutual TLS).")
    var clientCa: String?

    @Option(help: "Longest request line in bytes.")
    var maxLine = Limits().maxLineLength

    @Option(help: "Most edits in one BATCH.")
    var maxBatch = Limits().maxBatch

    @Option(help: "Most connections at once.")
    var maxConnections = Limits().maxConnections

    @Option(help: "Seconds without a request before a connection is closed.")
    var idleTimeout = 300

    @Option(help: "Seconds a connection may stay unauthenticated.")
    var authTimeout = 30

    @Option(help: "Bytes that may wait for a slow reader before it is disconnected.")
    var maxOutbound = Limits().maxOutboundBuffer

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel = "info"

    @Option(help: "text, or json: one JSON object per log line (time, level, message, connection, user, verb, code).")
    var logFormat = "text"

    @Option(
        help: ArgumentHelp(
            "A YAML file of these options (listen: 0.0.0.0:7447, without the dashes); flags given here override it.",
            valueName: "file"))
    var config: String?

    @Option(
        help: ArgumentHelp(
            "Serve Prometheus metrics on http://HOST:PORT/metrics (a port alone: on 127.0.0.1). Off by default.",
            discussion: "A plain HTTP listener of its own, apart from the timeline's TLS port."))
    var metrics: String?

    /// --metrics as a host and port: a port alone is on the loopback address.
    func metricsAddress() -> (String, Int)? {
        guard let metrics else { return nil }
        if let port = Int(metrics), (0...65535).contains(port) { return ("127.0.0.1", port) }
        return Self.listenAddress(metrics, anyHost: "127.0.0.1")
    }

    @Option(help: "Run as an office replica following this upstream server (HOST:PORT).")
    var replicateFrom: String?

    @Option(
        help: ArgumentHelp(
            "A file holding the upstream token (role replicator); or set TIMELINE_UPSTREAM_TOKEN.",
            discussion: "Read again at every connection: replace the file, then revoke the old token upstream."))
    var upstreamTokenFile: String?

    @Option(help: "The upstream token (prefer --upstream-token-file: an argument is visible to other users).")
    var upstreamToken: String?

    /// The upstream token from its file, the environment or the command line, in that order.
    func readUpstreamToken() throws -> String? {
        if let upstreamTokenFile {
            guard let text = try? String(contentsOfFile: upstreamTokenFile, encoding: .utf8),
                !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
            else { throw ValidationError("cannot read a token from \(upstreamTokenFile)") }
            return text.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        if let upstreamToken { return upstreamToken }
        if let env = ProcessInfo.processInfo.environment["TIMELINE_UPSTREAM_TOKEN"], !env.isEmpty { return env }
        return nil
    }

    @Option(help: "CA (PEM) that signed the upstream's certificate.")
    var upstreamCa: String?

    @Option(help: "The upstream certificate's SHA-256 fingerprint.")
    var upstreamFingerprint: String?

    @Option(help: "This office's name; forwarded edits are authored USER@OFFICE.")
    var office: String?

    func validate() throws {
        guard data.data != nil else { throw ValidationError("give --data FOLDER: it holds the node's TLS files") }
        if replicateFrom != nil, data.store != nil {
            throw ValidationError("an office replica keeps its copy in its folder's SQLite file: leave out --store")
        }
        guard (cert == nil) == (key == nil) else { throw ValidationError("--cert and --key go together") }
        guard parseListen() != nil else {
            throw ValidationError("--listen takes HOST:PORT, with a port from 0 (any free one) to 65535")
        }
        guard maxLine >= 1024, maxBatch >= 1, maxConnections >= 1, idleTimeout >= 1, authTimeout >= 1,
            maxOutbound >= 65_536
        else {
            throw ValidationError("limits must be positive (--max-line at least 1024, --max-outbound at least 65536)")
        }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        if metrics != nil, metricsAddress() == nil {
            throw ValidationError("--metrics takes HOST:PORT or a PORT (0 to 65535)")
        }
        guard ["text", "json"].contains(logFormat) else {
            throw ValidationError("--log-format is text or json, not \(logFormat)")
        }
        if let replicateFrom {
            guard Self.hostPort(replicateFrom) != nil else { throw ValidationError("--replicate-from takes HOST:PORT") }
            guard try readUpstreamToken() != nil else {
                throw ValidationError("--replicate-from needs --upstream-token-file (or TIMELINE_UPSTREAM_TOKEN)")
            }
            guard (upstreamCa == nil) != (upstreamFingerprint == nil) else {
                throw ValidationError("--replicate-from needs exactly one of --upstream-ca and --upstream-fingerprint")
            }
            if let fp = upstreamFingerprint, Fingerprint(hex: fp) == nil {
                throw ValidationError("--upstream-fingerprint takes 64 hex digits")
            }
            guard let office, TokenStore.isValidName(office), !office.contains("@") else {
                throw ValidationError("--replicate-from needs --office NAME (letters, digits, . - _)")
            }
        }
    }

    static func hostPort(_ text: String) -> (String, Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (1...65535).contains(port)
        else { return nil }
        return (String(text[..<colon]), port)
    }

    func parseListen() -> (String, Int)? { Self.listenAddress(listen, anyHost: "0.0.0.0") }

    /// HOST:PORT to listen on (port 0: any free one; `[::1]:7447` for IPv6); an empty host is `anyHost`.
    static func listenAddress(_ text: String, anyHost: String) -> (String, Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return (host.isEmpty ? anyHost : host, port)
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        let json = logFormat == "json"
        LoggingSystem.bootstrap { label in
            if json { return JSONLogHandler(label: label, level: level) }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        // Before the server exists: it takes its counters from the backend set now.
        let registry = metricsAddress() != nil ? MetricsEndpoint.bootstrap() : nil
        let dir = DataDirectory(path: data.directory)
        let (host, port) = parseListen()!
        let folderWasThere = FileManager.default.fileExists(atPath: dir.path)
        // A folder that named its database before has joined its timeline already.
        let joinedBefore = FileManager.default.fileExists(atPath: dir.storeChoicePath)
        do {
            // One process writes a store; held until this one exits.
            let lock = try dir.lockForWriting()
            defer { withExtendedLifetime(lock) {} }
            var upstream: Replicator.Upstream?
            var dataset: String?
            if let replicateFrom, let (uhost, uport) = Self.hostPort(replicateFrom),
                let upstreamToken = try readUpstreamToken(),
                let office
            {
                let config = ClientConfig(
                    host: uhost, port: uport, token: upstreamToken,
                    fingerprint: upstreamFingerprint.flatMap(Fingerprint.init(hex:)), caFile: upstreamCa)
                upstream = Replicator.Upstream(
                    config: config, office: office,
                    tokenFile: upstreamTokenFile.map { URL(fileURLWithPath: $0).standardizedFileURL.path })
                // A new replica takes its dataset from upstream; an existing one checks it while following.
                if !dir.exists { dataset = try await Replicator.upstreamDataset(upstream!) }
            }
            let (store, tokens, first) = try await dir.prepare(
                empty: empty || upstream != nil, dataset: dataset, options: upstream == nil ? .init() : .office,
                store: try data.choice(for: dir))
            var replicator: Replicator?
            if let upstream {
                replicator = Replicator(
                    upstream: upstream, store: store, outbox: try Outbox(path: dir.outboxPath),
                    statusPath: dir.replicationStatusPath, logger: Logger(label: "timelined.replica"))
            }
            let certFile = cert ?? dir.certificatePath
            let keyFile = key ?? dir.keyPath
            let madeCertificate = cert == nil && !FileManager.default.fileExists(atPath: dir.certificatePath)
            if cert == nil { try dir.ensureCertificate(hostnames: [host]) }
            let fingerprint = try DataDirectory.fingerprint(ofCertificateAt: certFile)
            var limits = Limits()
            limits.maxLineLength = maxLine
            limits.maxBatch = maxBatch
            limits.maxConnections = maxConnections
            limits.idleTimeout = .seconds(Int64(idleTimeout))
            limits.authTimeout = .seconds(Int64(authTimeout))
            limits.maxOutboundBuffer = maxOutbound
            Self.raiseDescriptorLimit(toServe: maxConnections)
            let server = try TimelineServer(
                store: store, tokens: tokens,
                configuration: ServerConfiguration(
                    host: host, port: port, certificateFile: certFile, keyFile: keyFile, clientCAFile: clientCa,
                    limits: limits), replicator: replicator)
            let address = try await server.start()
            let head = try await store.head()
            let postgres = store as? PostgresStore
            if let first {
                print(
                    "created \(dir.path): dataset \(store.dataset)"
                        + (postgres.map { " in \($0.location)" } ?? "")
                        + (first.loadedSample ? ", sample timeline loaded" : ""))
                if SystemdNotify.isService {
                    // The journal keeps a service's output: a secret printed there would stay readable.
                    print("admin token written to \(dir.adminTokenPath) (not printed: the journal would keep it)")
                } else {
                    print("admin token (also in \(dir.adminTokenPath), shown once): \(first.adminToken)")
                }
            } else if let postgres, !joinedBefore {
                // Another node created this timeline; its tokens, the admin's included, are every node's.
                print(
                    "joined dataset \(store.dataset) in \(postgres.location): its tokens work here (the admin token is in "
                        + "the folder of the node that created it)")
            }
            print("dataset \(store.dataset) at version \(head.version)")
            if let postgres { print("store \(postgres.location)") }
            if let upstream {
                print("office \(upstream.office) replicating from \(upstream.config.host):\(upstream.config.port)")
            }
            if madeCertificate && first == nil {
                // A folder with a timeline but no certificate (restored, or tls/ removed): clients pinned the old one.
                print("made a new self-signed certificate in \(dir.path)/tls: clients must pin its fingerprint")
            }
            print("certificate SHA-256 fingerprint \(fingerprint.hex)")
            var endpoint: MetricsEndpoint?
            if let registry, let (metricsHost, metricsPort) = metricsAddress() {
                let made = MetricsEndpoint(registry: registry, host: metricsHost, port: metricsPort, server: server)
                let bound = try await made.start()
                print("metrics on http://\(bound.ipAddress ?? metricsHost):\(bound.port ?? metricsPort)/metrics")
                endpoint = made
            }
            let listening = "\(address.ipAddress ?? host):\(address.port ?? port)"
            print("listening on \(listening)")
            fflush(nil)
            SystemdNotify.send("READY=1\nSTATUS=serving dataset \(store.dataset) on \(listening)")
            // SIGHUP (systemctl reload, timelined reload): the certificate and key are read again for new
            // connections; open ones keep theirs. Files that do not load leave the current ones in use.
            signal(SIGHUP, SIG_IGN)
            let reload = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
            let logger = Logger(label: "timelined")
            reload.setEventHandler {
                SystemdNotify.send("RELOADING=1\nMONOTONIC_USEC=\(SystemdNotify.monotonicMicroseconds)")
                var outcome: [String: JSON] = ["time": .string(WallClock.now().rfc3339)]
                do {
                    let fingerprint = try server.reloadCertificate()
                    outcome["ok"] = true
                    outcome["fingerprint"] = .string(fingerprint.hex)
                } catch {
                    logger.error("certificate not loaded again, the previous one stays in use: \(describe(error))")
                    outcome["ok"] = false
                    outcome["error"] = .string(describe(error))
                }
                // For `timelined reload`, which waits to say what happened rather than only that it asked.
                _ = FileManager.default.createFile(
                    atPath: dir.reloadStatusPath, contents: Data(JSON.object(outcome).canonicalBytes + [0x0A]),
                    attributes: [.posixPermissions: 0o600])
                SystemdNotify.send("READY=1")
            }
            reload.resume()
            defer { reload.cancel() }
            // SIGTERM or SIGINT shut the server down gracefully (swift-service-lifecycle); it then exits 0.
            signal(SIGPIPE, SIG_IGN)
            let services = ServiceGroup(
                configuration: .init(
                    services: [.init(service: server, successTerminationBehavior: .gracefullyShutdownGroup)]
                        + (endpoint.map { [.init(service: $0)] } ?? []),
                    gracefulShutdownSignals: [.sigterm, .sigint], logger: Logger(label: "timelined")))
            try await services.run()
            // Connections to PostgreSQL end with the server, not with the process.
            await (store as? PostgresStore)?.close()
        } catch {
            // A first start that failed (the database refused us, say) leaves no half-made folder behind.
            if !folderWasThere, !dir.exists, !FileManager.default.fileExists(atPath: dir.storeChoicePath) {
                try? FileManager.default.removeItem(atPath: dir.path)
            }
            fail(describe(error))
        }
    }

    /// Each connection is a descriptor and the usual soft limit is 1,024, below the default connection limit:
    /// raise the soft limit to the hard one, and say so when even that cannot hold the configured connections.
    static func raiseDescriptorLimit(toServe connections: Int) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
            _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        // Besides connections: the store, the listener, logs and some slack.
        if limit.rlim_cur < rlim_t(connections + 64) {
            Logger(label: "timelined").warning(
                "open-file limit \(limit.rlim_cur) is below --max-connections \(connections) plus 64; connections past it will fail (raise ulimit -n)"
            )
        }
    }
}
