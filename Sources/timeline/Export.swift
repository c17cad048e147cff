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
    @Option(help: "jsonl, csv (events, with summaries), annotations-csv (one row per annotation) or markdown.")
    var format = "jsonl"

    func validate() throws {
        guard ["jsonl", "csv", "annotations-csv", "markdown"].contains(format) else {
            throw ValidationError("--format is jsonl, csv, annotations-csv or markdown")
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
            print("id,date,start,end,precision,title,summary,tags,references,annotations")
            for v in views {
                let e = v.event
                let fields = [
                    e.id.description, e.date.text, e.date.start?.iso ?? "", e.date.end?.iso ?? "",
                    e.date.precision.rawValue, e.title, e.summary, e.tags.joined(separator: " "),
                    e.references.map { String($0.number) }.joined(separator: " "),
                    String(v.annotations.filter { !$0.retracted }.count),
                ]
                print(fields.map(Export.csv).joined(separator: ","))
            }
            return
        }
        if format == "annotations-csv" {
            print("id,event,author,created,retracted,tags,text")
            for v in views {
                for a in v.annotations.sorted(by: { ($0.created, $0.id) < ($1.created, $1.id) }) {
                    let fields = [
                        a.id.description, a.event.description, a.author, a.created.rfc3339,
                        a.retracted ? "true" : "false", a.tags.joined(separator: " "), a.text,
                    ]
                    print(fields.map(Export.csv).joined(separator: ","))
                }
            }
            return
        }
        let meta = try await client.replica.meta()
        print("# Timeline\(meta["source"]?.stringValue.map { " — \($0)" } ?? "")\n")
        for v in views {
            print("## \(v.event.date.text): \(v.event.title)\n")
            if !v.event.tags.isEmpty { print(v.event.tags.map { "`#\($0)`" }.joined(separator: " ") + "\n") }
            print(v.event.summary + "\n")
            for r in v.event.references { print("- [\(r.number)] \(r.text)") }
            let notes = v.annotations.filter { !$0.retracted }.sorted { ($0.created, $0.id) < ($1.created, $1.id) }
            if !notes.isEmpty {
                if !v.event.references.isEmpty { print("") }
                for a in notes {
                    let tags = a.tags.isEmpty ? "" : " " + a.tags.map { "`#\($0)`" }.joined(separator: " ")
                    print("> **\(a.author)**, \(a.created.rfc3339.prefix(10)): \(a.text)\(tags)\n")
                }
            }
            print("")
        }
    }

    static func csv(_ s: String) -> String {
        s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" })
            ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }
}
