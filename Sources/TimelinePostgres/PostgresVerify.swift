import Logging
import NIOCore
import PostgresNIO
import TimelineCore
import TimelineStore

extension PostgresStore {
    /// Walks the whole log in one snapshot (a REPEATABLE READ transaction, so concurrent appends through any node do
    /// not move it): every version present once and in order, every hash recomputed, every row's columns agreeing
    /// with its body, the head row equal to the last edit, and the log replayed in memory equal to the tables.
    public func verify() async throws -> VerifyReport {
        let dataset = self.dataset
        let logger = self.logger
        let client = self.client
        // Not within the usual timeout: a long log takes as long as it takes to read.
        do {
            return try await client.withConnection { conn in
                _ = try await conn.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", logger: logger)
                do {
                    let report = try await Self.verify(conn, dataset: dataset, logger: logger)
                    _ = try await conn.query("COMMIT", logger: logger)
                    return report
                } catch {
                    _ = try? await conn.query("ROLLBACK", logger: logger)
                    throw error
                }
            }
        } catch {
            throw PostgresErrors.map(error, doing: "verify the store", at: location)
        }
    }

    static func verify(_ conn: PostgresConnection, dataset: String, logger: Logger) async throws -> VerifyReport {
        var state = TimelineState()
        var previous = Genesis.hash(dataset: dataset)
        var problems: [String] = []
        var firstBad: Int64?
        // The annotations that must have a row (Schema, v5).
        var changed = Set<AnnotationID>()
        func fail(_ version: Int64?, _ problem: String) {
            if firstBad == nil, let version { firstBad = version }
            problems.append(problem)
        }
        let rows = try await conn.query(
            "SELECT version, event, revision, op, annotation, body, hash FROM edits ORDER BY version", logger: logger
        ).decode((Int64, String?, Int64, String, String?, String, ByteBuffer).self)
        for try await (version, event, revision, op, annotation, body, hash) in rows {
            if !problems.isEmpty { continue }
            guard version == state.version + 1 else {
                fail(state.version + 1, "version \(state.version + 1) is missing (next is \(version))")
                continue
            }
            let bytes = Array(body.utf8)
            let computed = SHA256.chain(prefix: previous.bytes, bytes)
            guard Digest(bytes: Array(buffer: hash)) == computed else {
                fail(version, "version \(version): hash does not match the chain")
                continue
            }
            let edit: Edit
            do {
                edit = try EditCodec.decodeStored(body: bytes, hash: computed)
            } catch {
                fail(version, "version \(version): body does not decode: \(error)")
                continue
            }
            guard edit.version == version, edit.event?.description == event, edit.revision == revision,
                edit.operation.rawValue == op, edit.change.annotationID?.description == annotation
            else {
                fail(version, "version \(version): columns disagree with the hashed body")
                continue
            }
            do {
                try state.apply(edit)
            } catch {
                fail(version, "version \(version): does not apply: \(error)")
                continue
            }
            if let id = edit.change.annotationID, edit.operation != .annotationAdd { changed.insert(id) }
            previous = computed
        }
        if problems.isEmpty {
            let head = try await PostgresReads.head(conn, logger: logger)
            if head.version != state.version || head.hash != previous {
                problems.append("the head row says version \(head.version), the log ends at \(state.version)")
            }
            problems += try await compareMaterialized(conn, with: state, changedAnnotations: changed, logger: logger)
        }
        let stateHash = try await Self.stateHash(conn, logger: logger)
        return VerifyReport(
            version: state.version, headHash: previous, stateHash: stateHash, firstBadVersion: firstBad,
            problems: problems)
    }

    /// Differences between the tables and the replayed state, at most a few of them. `changedAnnotations` are the
    /// annotations some edit updated or retracted: exactly those have a row.
    static func compareMaterialized(
        _ conn: PostgresConnection, with state: TimelineState, changedAnnotations: Set<AnnotationID>, logger: Logger
    ) async throws -> [String] {
        var problems: [String] = []
        var seen = 0
        var tagsByEvent: [String: [String]] = [:]
        var tagDates: [String: [String?]] = [:]
        for try await (tag, event, start) in try await conn.query(
            "SELECT tag, event, date_start FROM event_tags ORDER BY event, tag", logger: logger
        ).decode((String, String, String?).self) {
            tagsByEvent[event, default: []].append(tag)
            tagDates[event, default: []].append(start)
        }
        for try await (id, revision, deleted, start, end, body) in try await conn.query(
            "SELECT id, \(unescaped: PostgresSchema.revision), deleted, date_start, date_end, body FROM events",
            logger: logger
        ).decode((String, Int64, Bool, String?, String?, String).self) {
            seen += 1
            guard problems.count < 10 else { continue }
            guard let eventID = EventID(id), let expected = state.events[eventID] else {
                problems.append("event \(id) is in the table but not in the log")
                continue
            }
            let actual = try? Event(json: try JSON(parsing: body), revision: revision)
            if actual != expected || deleted != expected.deleted || start != expected.date.start?.iso
                || end != expected.date.end?.iso
            {
                problems.append("event \(id) differs from the log replayed")
            }
            let tags = tagsByEvent[id] ?? []
            if Tags.normalized(tags).map({ Array($0.utf8) }) != expected.tags.map({ Array($0.utf8) })
                || (tagDates[id] ?? []).contains(where: { $0 != expected.date.start?.iso })
            {
                problems.append("event \(id) has tags that differ from the log")
            }
        }
        if seen != state.events.count {
            problems.append("\(state.events.count) events in the log, \(seen) in the table")
        }
        var annotations = 0
        for try await (id, event, retracted, body) in try await conn.query(
            "SELECT id, event, retracted, body FROM annotations", logger: logger
        ).decode((String, String, Bool, String).self) {
            annotations += 1
            guard problems.count < 10 else { continue }
            let actual = try? Annotation(json: try JSON(parsing: body))
            guard let annotationID = AnnotationID(id), changedAnnotations.contains(annotationID),
                let expected = state.annotations[annotationID], actual == expected,
                event == expected.event.description, retracted == expected.retracted
            else {
                problems.append("annotation \(id) differs from the log replayed")
                continue
            }
        }
        if annotations != changedAnnotations.count {
            problems.append(
                "\(changedAnnotations.count) annotations were changed in the log, \(annotations) have a row")
        }
        if try await PostgresReads.meta(conn, logger: logger) != state.meta {
            problems.append("the metadata differs from the log replayed")
        }
        return problems
    }
}
