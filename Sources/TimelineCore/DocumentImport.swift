/// Importing a document into a timeline that already holds others: each document keeps its own metadata and
/// references, under the metadata key `doc:NAME`, beside those already there; the same document again adds
/// nothing; a changed one updates what it changed.
///
/// An entry is known by its date text and its place among the document's entries with that date text
/// ("May 9 to 10, 2013#1"), so that lines added, removed or moved elsewhere in the document do not change which
/// event an entry is. For each entry the document's key records its event and a fingerprint of each field as
/// imported: a later import sets only the fields the document changed since, so that what analysts corrected in
/// the timeline meanwhile, in other fields, stays.
public enum DocumentImport {
    /// What an import would do, and the edits that do it (metadata last, so that a refused edit leaves the
    /// document's record as it was).
    public struct Plan: Sendable {
        public var proposals: [Proposal]
        /// Entries that became new events, and events the document's changes updated.
        public var created = 0
        public var updated = 0
        /// Entries matched to events already in the timeline with the same date, title and summary (a document
        /// loaded under another name, or the sample timeline's own file): recorded, not created again.
        public var adopted = 0
        /// Events a previous version of the document had that this one does not: kept in the timeline.
        public var gone: [EventID] = []
        /// Fields the document changed that someone had also changed in the timeline since the last import: the
        /// timeline's value is kept (a person decided it), by event.
        public var kept: [(event: EventID, fields: [String])] = []
        /// The metadata key the document is kept under.
        public var key: String
    }

    /// The metadata key of a document named `name`: `doc:` and the name reduced to what a key allows.
    public static func key(forName name: String) -> String {
        var slug = ""
        for scalar in name.unicodeScalars {
            let ok =
                scalar.isASCII
                && (("a"..."z").contains(scalar) || ("A"..."Z").contains(scalar) || ("0"..."9").contains(scalar)
                    || scalar == "." || scalar == "_" || scalar == "-")
            slug.unicodeScalars.append(ok ? scalar : "-")
        }
        return "doc:" + String(slug.prefix(60))
    }

    /// Plans the import of `document` as `name`. `previous` is the metadata the last import of that name left
    /// (nil the first time); `current` looks an event up in the timeline as it is now; `existing` lists the
    /// timeline's events (for adopting identical ones on a first import).
    public static func plan(
        _ document: SeedDocument, name: String, previous: JSON?, time: Timestamp, author: String,
        current: (EventID) -> Event?, existing: [Event]
    ) throws(TimelineError) -> Plan {
        guard !document.entries.isEmpty else {
            throw TimelineError(
                .badImport, "no events found in \(name): no lines of the form \"l  DATE: text [n]\" (or with • for l)")
        }
        let key = key(forName: name)
        var plan = Plan(proposals: [], key: key)
        let firstTime =
            previous?["imported"]?.stringValue.flatMap(Timestamp.init(rfc3339:)) ?? time
        let before = previous?["entries"]?.objectValue ?? [:]
        // Events with the same date, title and summary, for adopting on a first import.
        var identical: [String: EventID] = [:]
        if previous == nil {
            for e in existing where !e.deleted { identical[sameness(e.date.text, e.title, e.summary)] = e.id }
        }
        var seen: [String: Int] = [:]
        var entries: [String: JSON] = [:]
        var kept = Set<String>()
        for entry in document.entries {
            let f = entry.fields
            seen[f.date.text, default: 0] += 1
            let entryKey = "\(f.date.text)#\(seen[f.date.text]!)"
            let prints = fingerprints(f)
            let recorded = before[entryKey]
            let id: EventID
            if let recordedID = recorded?["id"]?.stringValue.flatMap(EventID.init) {
                id = recordedID
            } else if let same = identical[sameness(f.date.text, f.title, f.summary)] {
                id = same
                plan.adopted += 1
            } else {
                id = EventID(ULID.derived(at: firstTime, seed: "\(key)#\(entryKey)"))
            }
            kept.insert(entryKey)
            entries[entryKey] = .object(["id": .string(id.description), "fields": .array(prints.map { .string($0) })])
            guard let event = current(id) else {
                plan.proposals.append(Proposal(event: id, change: .createEvent(f), base: 0, author: author, time: time))
                plan.created += 1
                continue
            }
            // Only what the document changed since it was last imported; nothing for a first import of an event
            // that is already there.
            guard let old = recorded?["fields"]?.arrayValue?.compactMap(\.stringValue), old.count == prints.count
            else { continue }
            // A field the document changed is updated only if the timeline still has what the document had said:
            // a value someone set since is theirs, and stays.
            let now = fingerprints(
                EventFields(date: event.date, title: event.title, summary: event.summary, references: event.references))
            var patch = EventPatch()
            var keptFields: [String] = []
            for (i, name) in ["title", "summary", "date", "references"].enumerated() where old[i] != prints[i] {
                guard now[i] == old[i] else {
                    keptFields.append(name)
                    continue
                }
                switch i {
                case 0: patch.title = f.title
                case 1: patch.summary = f.summary
                case 2: patch.date = f.date
                default: patch.references = f.references
                }
            }
            if !keptFields.isEmpty { plan.kept.append((id, keptFields)) }
            guard !patch.isEmpty, !event.deleted else { continue }
            plan.proposals.append(
                Proposal(event: id, change: .updateEvent(patch), base: event.revision, author: author, time: time))
            plan.updated += 1
        }
        for (entryKey, value) in before where !kept.contains(entryKey) {
            if let id = value["id"]?.stringValue.flatMap(EventID.init) { plan.gone.append(id) }
        }
        plan.gone.sort()
        var meta = document.meta
        meta["name"] = .string(name)
        meta["imported"] = .string(firstTime.rfc3339)
        meta["entries"] = .object(entries)
        let record = JSON.object(meta)
        if record != previous {
            plan.proposals.append(
                Proposal(event: nil, change: .setMeta([key: record]), base: 0, author: author, time: time))
        }
        return plan
    }

    static func sameness(_ date: String, _ title: String, _ summary: String) -> String {
        "\(date)\u{0}\(title)\u{0}\(summary)"
    }

    /// A short fingerprint of each field as the document gives it: title, summary, date text, references.
    static func fingerprints(_ f: EventFields) -> [String] {
        [
            f.title, f.summary, f.date.text,
            JSON.array(f.references.map(\.json)).canonicalString,
        ].map { String(SHA256.hash(Array($0.utf8)).hex.prefix(16)) }
    }
}
