import ArgumentParser
import TimelineClient
import TimelineCore
import TimelineLink

struct Resolve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Settle a conflict: keep yours, keep theirs, or set a third value.",
        discussion: """
            ID is the conflict's number (#3) from timeline conflicts, or the ID of an event with one conflict.
            Examples:
              timeline resolve 3 --theirs
              timeline resolve 7TKPA8X --set "title=Yamasakura 2013 adds a cyber exercise"
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The conflict's number (#3 in timeline conflicts), or the ID of an event with one conflict.")
    var id: String
    @Flag(help: "Keep your value (or re-send your refused edit).") var ours = false
    @Flag(help: "Keep theirs and drop yours.") var theirs = false
    @Option(help: "FIELD=VALUE: a third value.") var set: String?

    func validate() throws {
        guard [ours, theirs, set != nil].filter({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of --ours, --theirs, --set FIELD=VALUE")
        }
        if let set, !set.contains("=") { throw ValidationError("--set takes FIELD=VALUE") }
        if let set, let eq = set.firstIndex(of: "="), set[..<eq] == "title",
            set[set.index(after: eq)...].allSatisfy(\.isWhitespace)
        {
            throw ValidationError("--set title= would leave the title empty; give the title to keep")
        }
    }

    func run() async throws {
        let client = try global.client()
        let all = try client.conflicts()
        let number = Int64(id.hasPrefix("#") ? String(id.dropFirst()) : id)
        var event: EventID?
        if number == nil { event = try await client.resolve(id) }
        let matches = all.filter { c in c.id == number || (event != nil && c.event == event) }
        guard matches.count == 1, let conflict = matches.first else {
            throw TimelineError(
                matches.isEmpty ? .notFound : .ambiguous,
                matches.isEmpty
                    ? "no conflict \(id)"
                    : "\(id) names \(matches.count) conflicts: " + matches.map { "#\($0.id)" }.joined(separator: ", "))
        }
        let resolution: TimelineClient.Resolution
        if ours {
            resolution = .ours
        } else if theirs {
            resolution = .theirs
        } else {
            let parts = set!.split(separator: "=", maxSplits: 1)
            resolution = .set(field: String(parts[0]), value: .string(parts.count > 1 ? String(parts[1]) : ""))
        }
        let version = try await client.resolve(conflict: conflict.id, resolution)
        let left = try client.conflicts().count
        if global.json {
            Output.json([
                "resolved": .int(conflict.id), "conflicts": .int(Int64(left)),
                "version": version.map { .int($0) } ?? .null,
            ])
        } else {
            let how = version.map { "sent, version \($0)" } ?? "theirs kept, nothing sent"
            print("resolved #\(conflict.id) (\(conflict.field)): \(how)\(left > 0 ? "; \(left) left" : "")")
        }
        if left > 0 { throw conflictsRemain }
    }
}
