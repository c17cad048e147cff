import TimelineCore

/// What an import did.
public struct ImportReport: Sendable {
    public var events: Int
    public var edits: Int
    public var firstVersion: Int64
    public var lastVersion: Int64
    public var warnings: [ImportWarning]
    /// For a named document: what its plan found (updated, adopted, gone).
    public var plan: DocumentImport.Plan?
}

/// Loads documents into a store as one atomic batch: on any error nothing of the document is applied.
public enum Importer {
    public enum Format: String, Sendable, CaseIterable {
        case seedText = "seed-text"
        case jsonl
    }

    /// Imports a document. `trusted` (an administrator's offline import) keeps the authors and times written
    /// in a JSONL file; otherwise every edit is `author`'s, at `time`.
    /// Imports a seed-text document as the document called `name` (see `DocumentImport`): beside what the
    /// timeline holds, once, and updated by a changed version of it. Nothing is written when it is up to date.
    public static func loadDocument(
        _ bytes: [UInt8], name: String, into store: some TimelineStore, author: String, time: Timestamp
    ) async throws -> ImportReport {
        let doc = try SeedDocument.parse(bytes)
        let plan = try await DocumentImport.plan(
            doc, name: name, store: store, author: author, time: time)
        var report = ImportReport(
            events: plan.created, edits: plan.proposals.count, firstVersion: 0, lastVersion: 0, warnings: doc.warnings,
            plan: plan)
        guard !plan.proposals.isEmpty else { return report }
        let edits: [Edit]
        do {
            edits = try await store.append(plan.proposals)
        } catch let rejection as BatchRejection {
            throw rejection.error
        }
        report.firstVersion = edits.first?.version ?? 0
        report.lastVersion = edits.last?.version ?? 0
        return report
    }

    public static func load(
        _ bytes: [UInt8], format: Format, into store: some TimelineStore, author: String, time: Timestamp,
        trusted: Bool, idSeed: String? = nil
    ) async throws -> ImportReport {
        let proposals: [Proposal]
        var lines: [Int] = []
        var warnings: [ImportWarning] = []
        switch format {
        case .seedText:
            let doc = try SeedDocument.parse(bytes)
            // Without a seed the IDs are fresh: importing one document twice gives two sets of events.
            let seed = idSeed ?? ULID.generate(at: time).string
            proposals = doc.proposals(author: author, time: time, idSeed: seed)
            lines = [0] + doc.entries.map(\.line)
            warnings = doc.warnings
        case .jsonl:
            (proposals, lines) = try JSONLines.parse(bytes, author: author, time: time, trusted: trusted)
        }
        guard !proposals.isEmpty else { throw TimelineError(.badImport, "the document holds nothing to import") }
        let edits: [Edit]
        do {
            edits = try await store.append(proposals)
        } catch let rejection as BatchRejection {
            let line = lines.indices.contains(rejection.index) ? lines[rejection.index] : 0
            throw line > 0 ? rejection.error.at("line \(line)") : rejection.error
        }
        return ImportReport(
            events: edits.filter { $0.operation == .eventCreate }.count, edits: edits.count,
            firstVersion: edits.first?.version ?? 0, lastVersion: edits.last?.version ?? 0, warnings: warnings,
            plan: nil)
    }

    /// Loads the bundled sample timeline with IDs that are the same on every server.
    public static func loadSample(into store: some TimelineStore) async throws -> ImportReport {
        try await load(
            Array(SampleTimeline.text.utf8), format: .seedText, into: store, author: "sample",
            time: Timestamp(rfc3339: "2015-02-18T00:00:00Z")!, trusted: true, idSeed: SampleTimeline.idSeed)
    }
}

/// Writes the whole timeline as JSONL that `Importer` reads back to the identical state hash.
public enum Exporter {
    public static func jsonl(from store: some TimelineStore, write: (String) throws -> Void) async throws {
        if let meta = JSONLines.exportMeta(try await store.meta()) { try write(meta) }
        let views = try await store.events(matching: EventFilter(includeDeleted: true, limit: Int.max))
        for view in views.sorted(by: { $0.event.id < $1.event.id }) {
            for line in JSONLines.exportLines(view) { try write(line) }
        }
    }
}

extension DocumentImport {
    /// `plan` against a store as it is now.
    public static func plan(
        _ document: SeedDocument, name: String, store: some TimelineStore, author: String, time: Timestamp
    ) async throws -> Plan {
        let previous = try await store.meta()[key(forName: name)]
        let all = try await store.events(matching: EventFilter(includeDeleted: true, limit: Int.max)).map(\.event)
        let byID = Dictionary(all.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        return try plan(
            document, name: name, previous: previous, time: time, author: author, current: { byID[$0] },
            existing: all)
    }
}
