import Foundation
import TimelineCore
import TimelineLink
import TimelineStore
import TimelineTLS

/// An analyst's client: a local replica of the server's log (reading, searching and annotating work offline),
/// an outbox of local edits stored before they are sent, and the conflicts a person has to settle.
public final class TimelineClient: Sendable {
    public let home: ClientHome
    public let config: ClientConfig
    /// The server's log and state as last pulled: same dataset, versions and hashes.
    public let replica: SQLiteStore
    let local: Outbox
    /// Every ID of the replica by its short form, in the outbox's file.
    let ids: IDIndex
    /// Taken by whatever sends the outbox or writes the replica.
    let lock: HomeLock
    /// Full-text search over the replica, in the outbox's file.
    let searchIndex: SearchIndex

    /// Opens an initialized home.
    public init(home: ClientHome) throws {
        self.home = home
        config = try home.loadConfig()
        guard let dataset = config.dataset else {
            throw TimelineError(
                .notInitialized,
                "the client in \(home.path) never reached its server; run timeline init again")
        }
        do {
            // 16 MiB of page cache: a pull stores 5,000 edits (a few MiB of pages) per transaction, and a client's
            // memory must stay flat however large the log (the large-pull benchmark keeps it under 100 MB). 16 KiB pages for a store that only
            // ever appends pages of pulled edits.
            replica = try SQLiteStore(path: home.replicaPath, dataset: dataset, options: .replica)
        } catch let e as TimelineError where e.code == .wrongDataset {
            throw TimelineError(.wrongDataset, e.message)
        }
        local = try Outbox(path: home.localPath)
        try ClientTables.migrate(local.queue)
        ids = IDIndex(queue: local.queue)
        lock = HomeLock(home: home.path)
        searchIndex = SearchIndex(queue: local.queue)
    }

    /// Sets a home up: connects once to verify the server and the token and to learn the dataset, then saves
    /// the configuration. An existing replica of another dataset is refused.
    public static func initialize(home: ClientHome, config: ClientConfig) async throws -> TimelineClient {
        var config = config
        let connection = try await TimelineConnection.open(config)
        config.dataset = connection.dataset
        await connection.close()
        if FileManager.default.fileExists(atPath: home.replicaPath), let old = try? home.loadConfig(),
            old.dataset != nil, old.dataset != config.dataset
        {
            throw TimelineError(
                .wrongDataset,
                "\(home.path) holds a replica of dataset \(old.dataset!), but the server holds \(config.dataset!); use another home"
            )
        }
        try home.saveConfig(config)
        return try TimelineClient(home: home)
    }

    /// A connection to this client's server, authenticated and checked to hold the replica's dataset. The role
    /// the server gives is remembered: edits it would refuse are refused before they are queued.
    public func connect() async throws -> TimelineConnection {
        let connection = try await TimelineConnection.open(config)
        if let user = connection.authenticated?["user"]?.stringValue,
            let role = connection.authenticated?["role"]?.stringValue.flatMap(Role.init(rawValue:)),
            try local.identity().map({ $0.user != user || $0.role != role }) ?? true
        {
            try local.recordIdentity(user: user, role: role)
        }
        return connection
    }

    /// Who the server said this client is, at the last connection.
    public func identity() throws -> Identity? { try local.identity() }

    // MARK: Reading (local)

    public func event(_ id: EventID, asOf version: Int64? = nil) async throws -> EventView {
        guard let view = try await replica.event(id, asOf: version) else {
            throw TimelineError(
                .notFound, "event \(id) is not in the replica\(version.map { " at version \($0)" } ?? "")")
        }
        return view
    }

    public struct Status: Sendable {
        public var version: Int64
        /// Edits queued to be sent.
        public var pending: Int
        /// Edits the server refused, kept for their author to retry or drop.
        public var refused: Int
        public var conflicts: Int
        public var dataset: String
    }

    public func status() async throws -> Status {
        let items = try local.items()
        return Status(
            version: try await replica.currentVersion(), pending: items.filter { $0.refusal == nil }.count,
            refused: items.filter { $0.refusal != nil }.count, conflicts: try local.conflicts().count,
            dataset: replica.dataset)
    }

    /// Every local edit not yet in the timeline: queued, and refused.
    public func outbox() throws -> [OutboxItem] { try local.items() }
    public func conflicts() throws -> [Conflict] { try local.conflicts() }

    // MARK: Local edits

    /// Stores a proposal in the outbox (durably) before anything is sent, without checking it.
    @discardableResult
    public func enqueue(_ proposal: JSON) throws -> Int64 {
        let event = proposal["event"]?.stringValue.flatMap(EventID.init)
        return try local.enqueue(proposal, event: event)
    }

    /// Checks a proposal as the server will, as far as this client can know (its fields and their limits, the
    /// role the server gave at the last connection, whose annotation it changes), then queues it. What the
    /// server would refuse is refused here, with its code, and nothing is queued.
    @discardableResult
    public func propose(_ proposal: JSON) async throws -> Int64 {
        let identity = try local.identity()
        let decoded = try EditCodec.decodeProposal(proposal, author: identity?.user ?? "", time: WallClock.now())
        let op = decoded.change.operation
        if let identity {
            guard identity.role.mayPropose(op) else {
                let what: String
                switch op {
                case .eventCreate: what = "add events"
                case .eventUpdate: what = "edit events"
                case .eventDelete: what = "delete events"
                case .annotationAdd: what = "annotate"
                case .annotationUpdate: what = "change annotations"
                case .annotationRetract: what = "retract annotations"
                case .timelineMeta: what = "change the timeline's metadata"
                }
                throw TimelineError(
                    .forbidden,
                    "your token's role is \(identity.role.rawValue), which may not \(what) (the server said so at \(identity.seen.rfc3339.prefix(16).replacingOccurrences(of: "T", with: " ")) UTC); nothing was queued"
                )
            }
            if op == .annotationUpdate || op == .annotationRetract, !identity.role.mayChangeOthersAnnotations,
                let id = decoded.change.annotationID, let annotation = try await replica.annotation(id),
                annotation.author != identity.user, !annotation.author.hasPrefix(identity.user + "@")
            {
                throw TimelineError(
                    .forbidden,
                    "that annotation is \(annotation.author)'s; only its author or an editor may change it; nothing was queued"
                )
            }
        }
        return try enqueue(proposal)
    }

    /// Sends a refused edit again, on the event's current revision; it goes back in the queue first.
    public func retry(_ itemID: Int64) async throws -> Int64 {
        guard let item = try local.items().first(where: { $0.id == itemID }), item.refusal != nil else {
            throw TimelineError(.notFound, "no refused edit \(itemID); see timeline outbox")
        }
        var proposal = item.proposal
        if case .object(var o) = proposal, let event = item.event {
            o["base"] = .int(try await base(of: event))
            proposal = .object(o)
        }
        guard try local.requeue(itemID, proposal: proposal) else {
            throw TimelineError(.notFound, "no refused edit \(itemID); see timeline outbox")
        }
        return itemID
    }

    /// Removes a local edit, queued or refused, for good.
    public func drop(_ itemID: Int64) throws {
        guard try local.drop(itemID) else {
            throw TimelineError(.notFound, "no edit \(itemID) in the outbox; see timeline outbox")
        }
    }

    /// The revision of an event in the replica: the base of an edit made now.
    public func base(of id: EventID) async throws -> Int64 {
        try await replica.event(id, asOf: nil)?.event.revision ?? 0
    }

    /// Queues an annotation (its ID minted here, so a retried push cannot add it twice); returns its ID.
    public func annotate(_ id: EventID, text: String, tags: [String]) async throws -> AnnotationID {
        try await annotateQueued(id, text: text, tags: tags).annotation
    }

    /// `annotate`, with the outbox item that carries it.
    public func annotateQueued(_ id: EventID, text: String, tags: [String]) async throws -> (
        annotation: AnnotationID, item: Int64
    ) {
        let annotation = AnnotationID(ULID.generate(at: WallClock.now()))
        let item = try await propose(
            EditCodec.proposal(
                .addAnnotation(annotation, text: text, tags: tags), event: id, base: try await base(of: id)))
        return (annotation, item)
    }

    // MARK: Sync

    public struct PullReport: Sendable {
        public var applied: Int
        public var version: Int64
    }

    /// Edits asked for per PULL: large enough that a page's round trip is small next to storing it, small
    /// enough that two pages in memory stay a few megabytes.
    static let pullPage = 5_000

    /// Pulls every edit after the replica's head, a page at a time; each page is verified against the hash
    /// chain and applied in one transaction, so an interrupted pull resumes without gaps or duplicates.
    @discardableResult
    public func pull(using connection: TimelineConnection? = nil, progress: (@Sendable (Int64, Int64) -> Void)? = nil)
        async throws -> PullReport
    {
        try await using(connection) { conn in
            try await lock.withLock {
                // Another command on this home may have pulled since this one opened the replica.
                try await replica.resynchronize()
                return try await pullLocked(conn, progress: progress)
            }
        }
    }

    /// `body` on the given connection, or on a new one that is closed (and waited for) afterwards.
    func using<T: Sendable>(_ connection: TimelineConnection?, _ body: (TimelineConnection) async throws -> T)
        async throws -> T
    {
        if let connection { return try await body(connection) }
        return try await connect().closing(body)
    }

    private func pullLocked(_ conn: TimelineConnection, progress: (@Sendable (Int64, Int64) -> Void)?) async throws
        -> PullReport
    {
        // The checkpoint is the replica's head; after each stored page it is that page's last version, so an
        // interrupted pull resumes from there.
        let start = try await replica.currentVersion()
        let replica = self.replica
        do {
            try await conn.pullPages(after: start, pageSize: Self.pullPage) { linked, page in
                try await replica.appendVerified(linked)
                if let last = linked.edits.last?.version { progress?(last, page.json?["version"]?.intValue ?? 0) }
            }
        } catch let rejection as BatchRejection {
            throw TimelineError(.corrupt, "the server's log does not follow this replica's: \(rejection.error.message)")
        }
        let head = try await replica.currentVersion()
        return PullReport(applied: Int(head - start), version: head)
    }

    /// Sends the outbox in order (see `Outbox.push`).
    @discardableResult
    public func push(using connection: TimelineConnection? = nil) async throws -> PushReport {
        guard try !local.queued().isEmpty else { return PushReport() }
        // Another command on this home may be sending the same queue: one at a time, so nothing is sent twice.
        return try await using(connection) { conn in try await lock.withLock { try await local.push(using: conn) } }
    }

    public struct SyncReport: Sendable {
        public var push: PushReport
        public var pull: PullReport
        public var conflicts: Int
    }

    /// Push, then pull, on one connection.
    public func sync(progress: (@Sendable (Int64, Int64) -> Void)? = nil) async throws -> SyncReport {
        try await connect().closing { conn in
            let pushed = try await push(using: conn)
            if let stopped = pushed.stopped { throw stopped }
            let pulled = try await pull(using: conn, progress: progress)
            return SyncReport(push: pushed, pull: pulled, conflicts: try local.conflicts().count)
        }
    }

    // MARK: Bulk

    public struct BatchReport: Sendable {
        public var edits = 0
        public var batches = 0
        public var firstVersion: Int64 = 0
        public var lastVersion: Int64 = 0
    }

    /// Sends proposals (one JSON object each) in BATCHes of at most the server's limit, a few in flight at a
    /// time. Each batch is all or nothing; the first refused batch stops the sending and is reported with its
    /// line (`lineNumbers[i]` names where proposal `i` came from), together with exactly which input lines were
    /// applied, including those of batches already sent after it.
    public func sendBatches(
        _ proposals: [String], lineNumbers: [Int], progress: (@Sendable (Int64, Int64) -> Void)? = nil
    ) async throws -> BatchReport {
        try await connect().closing { conn in
            try await sendBatches(proposals, lineNumbers: lineNumbers, on: conn, progress: progress)
        }
    }

    func sendBatches(
        _ proposals: [String], lineNumbers: [Int], on conn: TimelineConnection,
        progress: (@Sendable (Int64, Int64) -> Void)?
    ) async throws -> BatchReport {
        let limit = max(1, Int(conn.hello["limits"]?["batch_edits"]?.intValue ?? 1_000))
        var sizes = Self.batchSizes(proposals.count, limit: limit).makeIterator()
        // Four batches in flight keep the server busy while the next is on its way, without buffering the file.
        let window = 4
        var report = BatchReport()
        var inFlight: [(pending: TimelineConnection.Pending, first: Int, count: Int)] = []
        var cursor = 0
        var refusal: TimelineError?
        var appliedAfter: [String] = []
        while (refusal == nil && cursor < proposals.count) || !inFlight.isEmpty {
            while refusal == nil, inFlight.count < window, let size = sizes.next() {
                let end = cursor + size
                let pending = try await conn.start(.batch(count: end - cursor), lines: Array(proposals[cursor..<end]))
                inFlight.append((pending, cursor, end - cursor))
                cursor = end
            }
            let (pending, first, count) = inFlight.removeFirst()
            let reply = try await pending.completion()
            guard reply.status == .ok, let json = reply.json else {
                if refusal == nil { refusal = Self.refusal(reply.error, first: first, lineNumbers: lineNumbers) }
                continue
            }
            if refusal != nil {
                let (a, b) = (lineNumbers[first], lineNumbers[first + count - 1])
                appliedAfter.append(a == b ? "\(a)" : "\(a)–\(b)")
                continue
            }
            if report.firstVersion == 0 { report.firstVersion = json["first"]?.intValue ?? 0 }
            report.lastVersion = json["last"]?.intValue ?? report.lastVersion
            report.edits += Int(json["count"]?.intValue ?? 0)
            report.batches += 1
            progress?(Int64(report.edits), Int64(proposals.count))
        }
        if var refusal {
            let applied =
                report.edits == 0
                ? "no input line was applied"
                : "input lines \(lineNumbers[0])–\(lineNumbers[report.edits - 1]) were applied, in \(report.batches) batch\(report.batches == 1 ? "" : "es")"
            refusal.message += " (\(applied)"
            if !appliedAfter.isEmpty {
                refusal.message +=
                    "; so were input lines \(appliedAfter.joined(separator: ", ")), sent before the refusal"
            }
            refusal.message += ")"
            throw refusal
        }
        return report
    }

    /// How `sendBatches` cuts `count` proposals into batches of at most `limit`. The server's writer idles until
    /// the first batch has arrived and been decoded (a quarter of a second for 10,000 lines here), so the first
    /// batch is at most `firstBatch` and each next one doubles, up to the limit.
    static func batchSizes(_ count: Int, limit: Int, firstBatch: Int = 1_000) -> [Int] {
        var sizes: [Int] = []
        var size = max(1, min(limit, firstBatch))
        var left = count
        while left > 0 {
            sizes.append(min(size, left))
            left -= sizes[sizes.count - 1]
            size = min(limit, size * 2)
        }
        return sizes
    }

    /// A batch's refusal with "line 3 of 10: …" turned into the line of the input.
    static func refusal(_ error: TimelineError, first: Int, lineNumbers: [Int]) -> TimelineError {
        var error = error
        if let range = error.message.range(of: #"^line [0-9]+ of [0-9]+"#, options: .regularExpression),
            let n = Int(error.message[range].split(separator: " ")[1]), first + n - 1 < lineNumbers.count
        {
            error.message = "line \(lineNumbers[first + n - 1])" + error.message[range.upperBound...]
        }
        return error
    }

    // MARK: Conflicts

    public enum Resolution: Sendable {
        /// Keep our value (or re-send our refused edit) on the current revision.
        case ours
        /// Keep theirs: drop ours.
        case theirs
        /// A third value for the field.
        case set(field: String, value: JSON)
    }

    /// Settles a recorded conflict; the new edit (if any) is proposed at once, then the replica is pulled.
    /// Returns the version of that edit (nil when theirs is kept: nothing is sent).
    @discardableResult
    public func resolve(conflict id: Int64, _ resolution: Resolution) async throws -> Int64? {
        guard let c = try local.conflicts().first(where: { $0.id == id }) else {
            throw TimelineError(.notFound, "no conflict \(id); see timeline conflicts")
        }
        if case .set = resolution, c.field == "deleted" {
            throw TimelineError(
                .badField,
                "conflict #\(id): the event was deleted by \(c.theirAuthor) in version \(c.theirVersion), so no value of yours can apply; settle it with --theirs"
            )
        }
        if case .set(let field, _) = resolution, field != c.field {
            throw TimelineError(
                .badField,
                "conflict #\(id) is about \(c.field), not \(field): settle it with --set \"\(c.field)=…\" (or --ours, --theirs); change \(field) with timeline edit"
            )
        }
        if case .theirs = resolution {
            try local.removeConflict(id)
            return nil
        }
        return try await connect().closing { conn in
            try await pull(using: conn)
            guard let event = c.event else { throw TimelineError(.invalidState, "conflict \(id) names no event") }
            let base = try await base(of: event)
            var proposal: JSON
            switch (resolution, c.code) {
            case (.set(let field, let value), _):
                proposal = try Self.fieldUpdate(event: event, base: base, field: field, value: value)
            case (_, .conflict):
                if c.field == "deleted" {
                    guard c.ours == true else {
                        throw TimelineError(
                            .invalidState,
                            "the event was deleted by \(c.theirAuthor) in version \(c.theirVersion) and cannot be restored, so your edit cannot apply; settle it with --theirs"
                        )
                    }
                    proposal = EditCodec.proposal(.deleteEvent, event: event, base: base)
                } else {
                    proposal = try Self.fieldUpdate(event: event, base: base, field: c.field, value: c.ours)
                }
            default:
                guard case .object(var o) = c.proposal else {
                    throw TimelineError(.invalidState, "conflict \(id) has no edit")
                }
                o["base"] = .int(base)
                proposal = .object(o)
            }
            let reply = try await conn.send(.propose(edit: proposal.canonicalString))
            guard reply.status == .ok else { throw reply.error }
            try local.removeConflict(id)
            try await pull(using: conn)
            return reply.json?["version"]?.intValue
        }
    }

    static func fieldUpdate(event: EventID, base: Int64, field: String, value: JSON) throws -> JSON {
        if field.hasPrefix("annotation."), field.hasSuffix(".text") {
            let annotation = field.dropFirst("annotation.".count).dropLast(".text".count)
            return [
                "op": "annotation.update", "event": .string(event.description),
                "annotation": .string(String(annotation)),
                "base": .int(base), "set": ["text": value],
            ]
        }
        guard ["title", "summary", "date", "references"].contains(field) else {
            throw TimelineError(.badField, "\(field) is not a field that can be set (title, summary, date, references)")
        }
        return [
            "op": "event.update", "event": .string(event.description), "base": .int(base),
            "set": .object([field: value]),
        ]
    }

    // MARK: Watch

    /// Edits as the server commits them, after version `since` (the replica's head if nil); ends when the task
    /// is cancelled, and throws when the connection ends (a server shutting down says so with its BYE's code).
    public func watch(since start: Int64? = nil) -> AsyncThrowingStream<Edit, Error> {
        AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    let conn = try await connect()
                    let since: Int64
                    if let start { since = start } else { since = try await replica.currentVersion() }
                    let watching = Task {
                        let done = try await conn.send(.watch(since: since)) { line in
                            if let edit = try? TimelineConnection.edit(fromLine: line) { continuation.yield(edit) }
                        }
                        if done.status != .ok { throw done.error }
                    }
                    await withTaskCancellationHandler {
                        _ = await watching.result
                    } onCancel: {
                        Task { try? await conn.sendRaw("DONE") }
                    }
                    if case .failure(let error) = await watching.result { throw error }
                    await conn.close()
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }
}
