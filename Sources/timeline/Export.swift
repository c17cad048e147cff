import ArgumentParser
import TimelineCore
import TimelineStore

struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the replica's timeline as jsonl, csv or markdown.",
        discussion:
            "jsonl imports back (timelined import) to the identical state hash. Example: timeline export --format markdown > timeline.md"
    )
    @OptionGroup var global: GlobalOptions
    @Option(help: "jsonl, csv or markdown.") var format = "jsonl"

    func validate() throws {
        guard ["jsonl", "csv", "markdown"].contains(format) else {
            throw ValidationError("--format is jsonl, csv or markdown")
        }
    }

    func run() async throws {
        let client = try global.client()
        if format == "jsonl" {
            try await Exporter.jsonl(from: client.replica) { print($0) }
            return
        }
        let views = try await client.replica.events(matching: EventFilter(limit: Int.max))
        if format == "csv" {
            print("id,date,start,end,precision,title,tags,references,annotations")
            for v in views {
                let e = v.event
                let fields = [
                    e.id.description, e.date.text, e.date.start?.iso ?? "", e.date.end?.iso ?? "",
                    e.date.precision.rawValue,
                    e.title, e.tags.joined(separator: " "),
                    e.references.map { String($0.number) }.joined(separator: " "),
                    String(v.annotations.filter { !$0.retracted }.count),
                ]
                print(fields.map(Export.csv).joined(separator: ","))
            }
            return
        }
        let meta = try await client.replica.meta()
        print("# Timeline\(meta["source"]?.stringValue.map { " — \($0)" } ?? "")\n")
        for v in views {
            print("## \(v.event.date.text): \(v.event.title)\n")
            print(v.event.summary + "\n")
            for r in v.event.references { print("- [\(r.number)] \(r.text)") }
            for a in v.annotations where !a.retracted { print("- *\(a.author)*: \(a.text)") }
            print("")
        }
    }

    static func csv(_ s: String) -> String {
        s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" })
            ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }
}
