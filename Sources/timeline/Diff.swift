import ArgumentParser
import TimelineCore

struct Diff: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "What changed in an event between two versions.",
        discussion:
            "Without --from, from its creation; without --to, until now. Example: timeline diff 019ECZQW0094 --from 29")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Event ID or unique prefix.") var id: String
    @Option(help: "Version to compare from.") var from: Int64?
    @Option(help: "Version to compare to.") var to: Int64?

    func run() async throws {
        let client = try global.client()
        let eventID = try await client.resolve(id)
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
                print(Output.warn("- ") + Output.clip(Diff.text(a), 300))
                print("+ " + Output.clip(Diff.text(b), 300))
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

    static func text(_ j: JSON) -> String {
        if case .string(let s) = j { return s }
        if case .null = j { return "(none)" }
        return j.canonicalString
    }
}
