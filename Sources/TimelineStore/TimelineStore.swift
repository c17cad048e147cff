import TimelineCore

/// The authoritative log of edits and the current state materialized from it.
///
/// Every implementation (SQLite now, PostgreSQL later) passes the same conformance suite: versions are
/// contiguous, a batch is all in or all out, an append returns only once its edits are durable, and the
/// same log gives the same state hash.
public protocol TimelineStore: Sendable {
    /// The dataset this store holds; its log starts from `Genesis.hash(dataset:)`.
    var dataset: String { get }

    /// Admits the proposals in order, as one atomic unit, and returns them as versioned, hash-chained edits
    /// once they are durable. A refused proposal refuses the whole batch with `BatchRejection`.
    func append(_ batch: [Proposal]) async throws -> [Edit]

    /// `append` for callers on an event loop: `completion` gets the same result, on the store's writer thread,
    /// and must return quickly. Spares the two hops through the task executor that awaiting costs a request.
    func append(_ batch: [Proposal], completion: @escaping @Sendable (Result<[Edit], Error>) -> Void)

    /// Copies edits from another store of the same dataset (a replica pulling from its server), atomically:
    /// each must be the next version, carry the hash the chain gives it, and apply. The page's own links were
    /// checked when it was built; here the first edit is checked against the chain's head. Refused with
    /// `BatchRejection` (code `CORRUPT`) otherwise; nothing of the batch is written then.
    func appendVerified(_ page: LinkedEdits) async throws

    /// Up to `limit` edits with versions above `version`, in version order.
    func edits(after version: Int64, limit: Int) async throws -> [Edit]

    /// The same edits as `edits(after:limit:)`, each as the canonical JSON of `EditCodec.json` (what PULL sends),
    /// without decoding every stored edit and encoding it again.
    func wireEdits(after version: Int64, limit: Int) async throws -> [WireEdit]

    /// The event with its annotations, now or as it was just after version `asOf`; nil if it did not exist.
    func event(_ id: EventID, asOf version: Int64?) async throws -> EventView?

    /// `event(_:asOf:)` for callers on an event loop: `completion` gets the same result on a reader's thread and
    /// must return quickly.
    func event(
        _ id: EventID, asOf version: Int64?, completion: @escaping @Sendable (Result<EventView?, Error>) -> Void)

    /// Every edit of one event, oldest first.
    func history(of id: EventID) async throws -> [Edit]

    /// The latest version and its hash (version 0 and the genesis hash when the log is empty).
    func head() async throws -> (version: Int64, hash: Digest)

    /// SHA-256 over the canonical current state (see `StateHasher`).
    func stateHash() async throws -> Digest

    /// The timeline-level metadata.
    func meta() async throws -> [String: JSON]

    /// Current (not deleted) events matching a filter, in date order.
    func events(matching filter: EventFilter) async throws -> [EventView]

    /// IDs of events starting with `prefix` (case-insensitive), at most `limit`.
    func resolve(prefix: String, limit: Int) async throws -> [EventID]

    /// Checks the whole hash chain and that the materialized state equals the log replayed.
    func verify() async throws -> VerifyReport

    /// Calls `observer` with the edits of every commit, in version order, after they are durable and after
    /// `head()` reports them: one array per append the commit held (none empty), so that a commit of several bulk
    /// batches is not copied into one array on the writer. The observer must return quickly (it runs on the
    /// writer's thread).
    func observeCommits(_ observer: @escaping @Sendable ([[Edit]]) -> Void)

    /// Whether the observers need the edits of commits made by other processes sharing the store (nodes on one
    /// database), as they do until told otherwise. While they do not, such commits only move `head()`, and
    /// observers get this process's commits alone: the store spares reading every other node's edits back for
    /// nobody. Told `true` again, it hands over every commit after the head it then reports.
    func wantOthersCommits(_ wanted: Bool)

    /// What keeps the log: `sqlite` or `postgresql` (the greeting says it).
    var engine: String { get }

    /// Whether the store can be reached now: always for a file; for a database, whether this node's connection to
    /// it is up. While not, every request is answered `STORE_UNAVAILABLE`, and the greeting says so.
    var isReachable: Bool { get }
}

extension TimelineStore {
    /// A store that is its only writer hands over every commit anyway.
    public func wantOthersCommits(_ wanted: Bool) {}
}

extension Annotation {
    /// An annotation as both stores keep it: its row's body once it was updated or retracted (`state`), else what
    /// its add's stored log body (`added`) adds. Most annotations are never changed, so they get no row of their own.
    package static func stored(state: String?, added: String) throws -> Annotation {
        if let state { return try Annotation(json: try JSON(parsing: state)) }
        return try fromAdd(EditCodec.decodeStoredProposal(body: Array(added.utf8)))
    }

    /// The annotation an add's stored proposal adds.
    package static func fromAdd(_ add: Proposal) throws -> Annotation {
        guard let annotation = add.addedAnnotation else {
            throw TimelineError(.corrupt, "a log row indexed as an annotation's add adds none")
        }
        return annotation
    }
}

extension EventView {
    /// An event and its annotations rebuilt from its own edits, oldest first (a read as of a past version, in every
    /// store); nil if they do not create it.
    package static func replaying(_ edits: [Edit]) throws -> EventView? {
        var event: Event?
        var annotations: [AnnotationID: Annotation] = [:]
        for edit in edits {
            let applied = try Rules.apply(
                edit.proposal, event: event, annotation: edit.change.annotationID.flatMap { annotations[$0] })
            event = applied.event
            if let a = applied.annotation { annotations[a.id] = a }
        }
        return event.map { EventView(event: $0, annotations: Array(annotations.values)) }
    }
}

/// An edit as the wire carries it: its version, and the canonical JSON of `EditCodec.json(_:)`.
public struct WireEdit: Sendable, Equatable {
    public var version: Int64
    public var bytes: [UInt8]

    public init(version: Int64, bytes: [UInt8]) {
        self.version = version
        self.bytes = bytes
    }

    public init(_ edit: Edit) {
        self.init(version: edit.version, bytes: EditCodec.json(edit).canonicalBytes)
    }
}

extension TimelineStore {
    public var isReachable: Bool { true }

    public func currentVersion() async throws -> Int64 { try await head().version }

    public func wireEdits(after version: Int64, limit: Int) async throws -> [WireEdit] {
        try await edits(after: version, limit: limit).map(WireEdit.init)
    }

    /// `appendVerified` for edits not linked yet: they are linked here, on the caller's task.
    public func appendVerified(_ edits: [Edit]) async throws {
        guard !edits.isEmpty else { return }
        try await appendVerified(try LinkedEdits(edits))
    }

    /// A store without a writer thread of its own completes from a task.
    public func append(_ batch: [Proposal], completion: @escaping @Sendable (Result<[Edit], Error>) -> Void) {
        Task {
            do { completion(.success(try await append(batch))) } catch { completion(.failure(error)) }
        }
    }

    /// A store without reader threads of its own reads from a task.
    public func event(
        _ id: EventID, asOf version: Int64?, completion: @escaping @Sendable (Result<EventView?, Error>) -> Void
    ) {
        Task {
            do { completion(.success(try await event(id, asOf: version))) } catch { completion(.failure(error)) }
        }
    }

    /// All edits after `version`, fetched a page at a time so that memory stays flat however long the log.
    public func editStream(after version: Int64, pageSize: Int = 1_000) -> AsyncThrowingStream<Edit, Error> {
        let pager = Pager(after: version)
        return AsyncThrowingStream { try await pager.next(store: self, pageSize: pageSize) }
    }
}

private actor Pager {
    var after: Int64
    var buffer: [Edit] = []
    var index = 0
    var finished = false

    init(after: Int64) { self.after = after }

    func next(store: some TimelineStore, pageSize: Int) async throws -> Edit? {
        if index == buffer.count {
            if finished { return nil }
            buffer = try await store.edits(after: after, limit: pageSize)
            index = 0
            if buffer.count < pageSize { finished = true }
            if buffer.isEmpty { return nil }
            after = buffer[buffer.count - 1].version
        }
        defer { index += 1 }
        return buffer[index]
    }
}

/// Edits from another log, in order, with the canonical bytes each hash covers, every edit after the first checked
/// to follow the one before it (version and hash). Building one is most of the work of verifying a page of a pull;
/// done where the page is decoded, it overlaps the store's writer, which then checks the first link only.
public struct LinkedEdits: Sendable {
    public let edits: [Edit]
    /// `EditCodec.canonicalBody` of each edit: what its hash covers, and what the log stores.
    package let bodies: PackedBytes

    /// Refused with `BatchRejection` (code `CORRUPT`) at the first edit that does not follow the one before it.
    public init(_ edits: [Edit]) throws(BatchRejection) {
        var bodies = PackedBytes(count: edits.count, bytesEach: 320)
        for edit in edits {
            bodies.append(
                EditCodec.canonicalBody(version: edit.version, revision: edit.revision, proposal: edit.proposal))
        }
        try self.init(edits: edits, bodies: bodies)
    }

    /// A page read off the wire (`Reading`): the bodies are the lines as received, without their hashes.
    public init(_ page: Reading) throws(BatchRejection) {
        try self.init(edits: page.edits, bodies: page.bodies)
    }

    private init(edits: [Edit], bodies: PackedBytes) throws(BatchRejection) {
        for index in edits.indices.dropFirst() {
            let edit = edits[index]
            let previous = edits[index - 1]
            guard edit.version == previous.version + 1 else {
                throw BatchRejection(
                    index: index, count: edits.count,
                    error: TimelineError(.corrupt, "edit \(edit.version) does not follow version \(previous.version)"))
            }
            let linked = bodies[index].withUnsafeBufferPointer { SHA256.chain(prefix: previous.hash.bytes, $0) }
            guard linked == edit.hash else {
                throw BatchRejection(
                    index: index, count: edits.count,
                    error: TimelineError(
                        .corrupt, "edit \(edit.version)'s hash does not follow the chain: the logs have diverged"))
            }
        }
        self.edits = edits
        self.bodies = bodies
    }

    /// Checks the edit at `index` against the log it is to extend: the next version after `head`, for the first
    /// edit the hash the chain gives it (the page linked the others), and applying it (to `event` and
    /// `annotation` as they stand) gives its revision. Returns what it leaves; refused with `CORRUPT`.
    package func check(_ index: Int, after head: ChainHead, event: Event?, annotation: Annotation?)
        throws(BatchRejection) -> Applied
    {
        let edit = edits[index]
        func refuse(_ message: String) -> BatchRejection {
            BatchRejection(index: index, count: edits.count, error: TimelineError(.corrupt, message))
        }
        guard edit.version == head.version + 1 else {
            throw refuse("edit \(edit.version) does not follow version \(head.version)")
        }
        if index == 0, SHA256.chain(prefix: head.hash.bytes, Array(bodies[0])) != edit.hash {
            throw refuse("edit \(edit.version)'s hash does not follow the chain: the logs have diverged")
        }
        let applied: Applied
        do {
            applied = try Rules.apply(edit.proposal, event: event, annotation: annotation)
        } catch {
            throw refuse("edit \(edit.version) does not apply: \(error)")
        }
        guard applied.revision == edit.revision else {
            throw refuse("edit \(edit.version) says revision \(edit.revision), applying it gives \(applied.revision)")
        }
        return applied
    }

    /// The edits of a page as they are read off the wire, each decoded from its canonical line
    /// (`EditCodec.decodeWireEdit`) and kept with the line's bytes but its `"hash"` member: what the hash covers.
    public struct Reading: Sendable {
        var edits: [Edit] = []
        var bodies: PackedBytes

        public init(capacity: Int) {
            edits.reserveCapacity(capacity)
            bodies = PackedBytes(count: capacity, bytesEach: 320)
        }

        public var count: Int { edits.count }
        public var last: Edit? { edits.last }

        /// Decodes one edit line's JSON (the text after `* EDIT `) and keeps it.
        public mutating func append(_ json: Substring) throws(TimelineError) {
            var text = json
            let decoded = text.withUTF8 { bytes in
                Result { () throws(TimelineError) in
                    let (edit, member) = try EditCodec.decodeWireEdit(bytes)
                    bodies.append(
                        UnsafeBufferPointer(rebasing: bytes[..<member.lowerBound]),
                        UnsafeBufferPointer(rebasing: bytes[member.upperBound...]))
                    return edit
                }
            }
            edits.append(try decoded.get())
        }
    }
}

/// Byte strings kept end to end in one buffer. A page of a pull had kept its bodies and rows as thousands of small
/// arrays, allocated on the thread that decodes it and freed on the writer's: that cost the client about 12 MiB of
/// peak RSS in B3 for two buffers' worth of bytes.
package struct PackedBytes: Sendable {
    private var bytes: [UInt8] = []
    /// Where each string ends; it starts where the one before it ends.
    private var ends: [Int] = []

    init(count: Int, bytesEach: Int) {
        bytes.reserveCapacity(count * bytesEach)
        ends.reserveCapacity(count)
    }

    mutating func append(_ string: [UInt8]) {
        bytes.append(contentsOf: string)
        ends.append(bytes.count)
    }

    /// Appends one string given in two parts.
    mutating func append(_ head: UnsafeBufferPointer<UInt8>, _ tail: UnsafeBufferPointer<UInt8>) {
        bytes.append(contentsOf: head)
        bytes.append(contentsOf: tail)
        ends.append(bytes.count)
    }

    package var count: Int { ends.count }

    package subscript(index: Int) -> ArraySlice<UInt8> {
        bytes[(index == 0 ? 0 : ends[index - 1])..<ends[index]]
    }
}

/// A batch refused because one of its proposals was: `index` is that proposal's place (0-based).
public struct BatchRejection: Error, Sendable, CustomStringConvertible {
    public var index: Int
    public var count: Int
    public var error: TimelineError

    public init(index: Int, count: Int, error: TimelineError) {
        self.index = index
        self.count = count
        self.error = error
    }

    public var description: String {
        count == 1 ? error.description : "edit \(index + 1) of \(count): \(error)"
    }
}

/// The outcome of `verify`.
public struct VerifyReport: Sendable, CustomStringConvertible {
    public var version: Int64
    public var headHash: Digest
    public var stateHash: Digest
    /// The first version whose hash, order or content is wrong, if any.
    public var firstBadVersion: Int64?
    public var problems: [String]

    public init(version: Int64, headHash: Digest, stateHash: Digest, firstBadVersion: Int64?, problems: [String]) {
        self.version = version
        self.headHash = headHash
        self.stateHash = stateHash
        self.firstBadVersion = firstBadVersion
        self.problems = problems
    }

    public var ok: Bool { problems.isEmpty }

    public var description: String {
        ok
            ? "ok: version \(version), head \(headHash.hex), state \(stateHash.hex)"
            : "FAILED at version \(firstBadVersion.map(String.init) ?? "-"): " + problems.joined(separator: "; ")
    }
}
