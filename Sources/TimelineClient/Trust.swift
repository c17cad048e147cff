import GRDB
import TimelineCore
import TimelineLink
import TimelineStore

extension TimelineClient {
    /// What `timeline verify` found: the replica checked on its own (chain and state replayed), then its head
    /// compared with the server's edit of the same version.
    public struct TrustReport: Sendable {
        public var local: VerifyReport
        /// The server's head, and the hash it has for the replica's head version (nil when unreachable).
        public var serverVersion: Int64?
        public var serverHash: Digest?
        /// Why the server could not be asked, if it could not.
        public var unreachable: String?
        /// Whether that was only because it could not be reached (offline); a refused token, say, is not.
        public var offline = false

        /// The replica's log is a prefix of the server's: the same edits up to the replica's head.
        public var agrees: Bool? {
            guard let serverHash else { return local.version == 0 && serverVersion != nil ? true : nil }
            return serverHash == local.headHash
        }
    }

    public func verify(askingServer: Bool = true) async throws -> TrustReport {
        let local = try await replica.verify()
        var report = TrustReport(local: local)
        guard askingServer else { return report }
        do {
            try await connect().closing { conn in
                report.serverVersion = conn.serverVersion
                if local.version > 0 {
                    // The server's edit at the replica's head version: if its hash is the replica's, so is every
                    // edit before it (each hash covers the one before).
                    let page = try await conn.expectOK(.pull(since: local.version - 1, limit: 1))
                    if let line = page.data.first(where: { $0.hasPrefix("* EDIT ") }),
                        let edit = try TimelineConnection.edit(fromLine: line), edit.version == local.version
                    {
                        report.serverHash = edit.hash
                    }
                }
            }
        } catch let error as TimelineError {
            report.unreachable = "\(error.code): \(error.message)"
            report.offline = error.code == .unreachable
        }
        return report
    }

    /// Each field of an event with the edit that last set it: who, when, in which version.
    public struct Blame: Sendable {
        public var field: String
        public var value: JSON
        public var edit: Edit
    }

    public func blame(_ id: EventID) async throws -> [Blame] {
        let history = try await replica.history(of: id)
        guard let view = try await replica.event(id, asOf: nil) else {
            throw TimelineError(.notFound, "event \(id) is not in the replica")
        }
        var last: [String: Edit] = [:]
        for edit in history {
            switch edit.change {
            case .createEvent:
                for field in ["title", "summary", "date", "references", "tags", "deleted"] { last[field] = edit }
            case .updateEvent(let patch):
                for (field, _) in patch.setFields { last[field] = edit }
                if !patch.addTags.isEmpty || !patch.removeTags.isEmpty { last["tags"] = edit }
            case .deleteEvent:
                last["deleted"] = edit
            default:
                break
            }
        }
        var fields = Merge.fieldValues(view.event)
        fields["tags"] = .array(view.event.tags.map { .string($0) })
        fields["deleted"] = .bool(view.event.deleted)
        return ["title", "date", "summary", "references", "tags", "deleted"].compactMap { field in
            last[field].map { Blame(field: field, value: fields[field] ?? .null, edit: $0) }
        }
    }

    // MARK: What changed since I last looked

    /// The replica's version when `changes(mark:)` last moved the mark (nil before the first time).
    public func mark() throws -> Int64? {
        try local.queue.read { db in try Int64.fetchOne(db, sql: "SELECT version FROM marks WHERE name = 'seen'") }
    }

    public func setMark(_ version: Int64) throws {
        try local.queue.write { db in
            try db.execute(
                sql:
                    "INSERT INTO marks(name, version) VALUES ('seen', ?) ON CONFLICT(name) DO UPDATE SET version = excluded.version",
                arguments: [version])
        }
    }

    /// The events edited after `version`, each with its edits since, newest event first.
    public func changes(after version: Int64) async throws -> [(view: EventView, edits: [Edit])] {
        let (touched, _) = try await replica.touchedEvents(after: version)
        var out: [(EventView, [Edit])] = []
        for id in touched {
            guard let view = try await replica.event(id, asOf: nil) else { continue }
            let edits = try await replica.history(of: id).filter { $0.version > version }
            if !edits.isEmpty { out.append((view, edits)) }
        }
        return out.sorted { ($0.1.last?.version ?? 0) > ($1.1.last?.version ?? 0) }
    }
}
