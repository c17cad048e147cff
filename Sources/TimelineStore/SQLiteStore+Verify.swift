import Foundation
import GRDB
import TimelineCore

extension SQLiteStore {
    /// Walks the whole log: every version present once and in order, every hash recomputed from the previous
    /// one and the stored body, every row's columns agreeing with its body, and the log replayed in memory
    /// equal to the materialized tables. Reports the first bad version.
    public func verify() async throws -> VerifyReport {
        let dataset = self.dataset
        return try await read("verify the store") { db in try Self.verify(db, dataset: dataset) }
    }

    static func verify(_ db: Database, dataset: String) throws -> VerifyReport {
        var state = TimelineState()
        var previous = Genesis.hash(dataset: dataset)
        var problems: [String] = []
        var firstBad: Int64?
        // The annotations that must have a row (Schema, v6).
        var changed = Set<AnnotationID>()
        func fail(_ version: Int64?, _ problem: String) {
            if firstBad == nil, let version { firstBad = version }
            problems.append(problem)
        }
        let rows = try Row.fetchCursor(
            db, sql: "SELECT version, event, revision, op, body, hash, annotation FROM edits ORDER BY version")
        while let row = try rows.next() {
            let version: Int64 = row["version"]
            guard version == state.version + 1 else {
                fail(state.version + 1, "version \(state.version + 1) is missing (next is \(version))")
                break
            }
            let body: String = row["body"]
            let stored = Digest(bytes: Array(row["hash"] as Data))
            let computed = SHA256.chain(prefix: previous.bytes, Array(body.utf8))
            guard stored == computed else {
                fail(version, "version \(version): hash does not match the chain")
                break
            }
            let edit: Edit
            do {
                edit = try EditCodec.decodeStored(body: Array(body.utf8), hash: computed)
            } catch {
                fail(version, "version \(version): body does not decode: \(error)")
                break
            }
            let columnsAgree =
                edit.version == version && edit.event?.description == (row["event"] as String?)
                && edit.revision == (row["revision"] as Int64) && edit.operation.rawValue == (row["op"] as String)
                // Reads find an event's annotations by this column (Schema, v4).
                && edit.change.annotationID?.description == (row["annotation"] as String?)
            guard columnsAgree else {
                fail(version, "version \(version): columns disagree with the hashed body")
                break
            }
            do {
                try state.apply(edit)
            } catch {
                fail(version, "version \(version): does not apply: \(error)")
                break
            }
            if let id = edit.change.annotationID, edit.operation != .annotationAdd { changed.insert(id) }
            previous = computed
        }
        if problems.isEmpty {
            problems += try compareMaterialized(db, with: state, changedAnnotations: changed)
            if !problems.isEmpty { firstBad = nil }
        }
        let stateHash = try stateHash(db)
        return VerifyReport(
            version: state.version, headHash: previous, stateHash: stateHash, firstBadVersion: firstBad,
            problems: problems)
    }

    /// Differences between the tables and the replayed state, at most a few of them. `changedAnnotations` are the
    /// annotations some edit updated or retracted: exactly those have a row.
    static func compareMaterialized(
        _ db: Database, with state: TimelineState, changedAnnotations: Set<AnnotationID>
    ) throws -> [String] {
        var problems: [String] = []
        var seen = 0
        let rows = try Row.fetchCursor(
            db, sql: "SELECT id, \(SQLiteReads.revision), deleted, date_start, date_end, body FROM events")
        while let row = try rows.next(), problems.count < 10 {
            seen += 1
            let id: String = row["id"]
            guard let eventID = EventID(id), let expected = state.events[eventID] else {
                problems.append("event \(id) is in the table but not in the log")
                continue
            }
            let actual = try? Event(json: try JSON(parsing: row["body"] as String), revision: row["revision"])
            if actual != expected || (row["deleted"] as Bool) != expected.deleted
                || (row["date_start"] as String?) != expected.date.start?.iso
                || (row["date_end"] as String?) != expected.date.end?.iso
            {
                problems.append("event \(id) differs from the log replayed")
            }
            let tagRows = try Row.fetchAll(
                db, sql: "SELECT tag, date_start FROM event_tags WHERE event = ? ORDER BY tag", arguments: [id])
            if Tags.normalized(tagRows.map { $0["tag"] }).map({ Array($0.utf8) })
                != expected.tags.map({ Array($0.utf8) })
                || tagRows.contains(where: { ($0["date_start"] as String?) != expected.date.start?.iso })
            {
                problems.append("event \(id) has tags that differ from the log")
            }
        }
        if seen != state.events.count {
            problems.append("\(state.events.count) events in the log, \(seen) in the table")
        }
        let annotationRows = try Row.fetchAll(db, sql: "SELECT id, event, retracted, body FROM annotations")
        if annotationRows.count != changedAnnotations.count {
            problems.append(
                "\(changedAnnotations.count) annotations were changed in the log, \(annotationRows.count) have a row")
        }
        for row in annotationRows where problems.count < 10 {
            let id: String = row["id"]
            let actual = try? Annotation(json: try JSON(parsing: row["body"] as String))
            guard let annotationID = AnnotationID(id), changedAnnotations.contains(annotationID),
                let expected = state.annotations[annotationID], actual == expected,
                (row["event"] as String) == expected.event.description, (row["retracted"] as Bool) == expected.retracted
            else {
                problems.append("annotation \(id) differs from the log replayed")
                continue
            }
        }
        if try meta(db) != state.meta { problems.append("the metadata differs from the log replayed") }
        return problems
    }
}
