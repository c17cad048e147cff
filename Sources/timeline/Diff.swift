import ArgumentParser
import TimelineCore

struct Diff: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "What changed in an event between two versions.",
        discussion:
            "Without --from, from its creation; without --to, until now. Example: timeline diff 94EPPCE --from 29")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Event ID (short or whole).") var id: String
    @Option(help: "Version to compare from.") var from: Int64?
    @Option(help: "Version to compare to.") var to: Int64?

    func run() async throws {
        let client = try global.client()
        Pager.start(global)
        let eventID = try await Checks.event(id, of: client)
        if let from, let to, to < from {
            throw ValidationError("--to \(to) is before --from \(from): give the earlier version as --from")
        }
        try await Checks.version(from, of: client, option: "--from")
        try await Checks.version(to, of: client, option: "--to")
        let history = try await client.replica.history(of: eventID)
        let fromVersion = from ?? (history.first?.version ?? 0)
        let before = try await client.replica.event(eventID, asOf: fromVersion)
        let after = try await client.event(eventID, asOf: to)
        let old: [String: JSON] = before.map { Diff.fields($0) } ?? [:]
        let new = Diff.fields(after)
        var changes: [(String, JSON, JSON)] = []
        for key in Set(old.keys).union(new.keys).sorted() where old[key] != new[key] {
            changes.append((key, old[key] ?? .null, new[key] ?? .null))
        }
        for (key, a, b) in changes {
            if global.json {
                Output.json(["field": .string(key), "from": a, "to": b])
            } else {
                print(Output.bold(key))
                print(Output.warn("- ") + Output.clip(Diff.text(a, field: key), 300))
                print("+ " + Output.clip(Diff.text(b, field: key), 300))
            }
        }
        if changes.isEmpty && !global.json { print("no change") }
    }

    static func fields(_ v: EventView) -> [String: JSON] {
        var out = Merge.fieldValues(v.event)
        out["tags"] = .array(v.event.tags.map { .string($0) })
        out["deleted"] = .bool(v.event.deleted)
        for a in v.annotations { out["annotation \(a.id)"] = .string(a.retracted ? "(retracted) \(a.text)" : a.text) }
        return out
    }

    /// A field's value as people write it: a date by its text, references one per line, tags as #words.
    static func text(_ j: JSON, field: String = "") -> String {
        switch j {
        case .string(let s): return s
        case .null: return "(none)"
        case .bool(let b): return b ? "yes" : "no"
        case .object where j["text"]?.stringValue != nil && j["precision"] != nil:
            return j["text"]!.stringValue!
        case .array(let items) where field == "references" || items.first?["number"] != nil:
            return items.map { r in "[\(r["number"]?.intValue ?? 0)] \(r["text"]?.stringValue ?? "")" }.joined(
                separator: "; ")
        case .array(let items) where field == "tags":
            return items.isEmpty ? "(none)" : items.compactMap(\.stringValue).map { "#" + $0 }.joined(separator: " ")
        default: return j.canonicalString
        }
    }
}
