import ArgumentParser
import Foundation
import TimelineClient
import TimelineCore
import TimelineStore

struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the replica's timeline as jsonl, csv, markdown, an HTML page or an SVG picture.",
        discussion: """
            jsonl imports back (timelined import) to the identical state hash. html is one self-contained page \
            (nothing fetched from the network): the picture, filters, zoom, and each event's references and \
            annotations; svg is the picture alone. The filters and --lanes choose what html and svg draw.
            Examples:
              timeline export --format markdown > timeline.md
              timeline export --format html > timeline.html
              timeline export --format svg --tag cyber --since 2012-01-01 > cyber.svg
            """
    )
    @OptionGroup var global: GlobalOptions
    @Option(help: "jsonl, csv (events), annotations-csv (one row per annotation), markdown, html or svg.")
    var format = "jsonl"
    @OptionGroup var picture: PictureOptions
    @Option(
        parsing: .unconditional, help: "The picture's width in pixels, 400 to 20000 (html, svg; 1200 unless given).")
    var width: Int?

    static let formats = ["jsonl", "csv", "annotations-csv", "markdown", "html", "svg"]

    func validate() throws {
        guard Self.formats.contains(format) else {
            throw ValidationError("--format is jsonl, csv, annotations-csv, markdown, html or svg")
        }
        let drawn = ["html", "svg"].contains(format)
        let f = picture.filters
        let given = [
            ("--since", f.since != nil), ("--until", f.until != nil), ("--tag", f.tag != nil),
            ("--grep", f.grep != nil),
            ("--changed-since", picture.changedSince != nil), ("--lanes", picture.lanes != nil),
            ("--width", width != nil),
        ].filter(\.1).map(\.0)
        if !drawn, let option = given.first {
            throw ValidationError(
                "\(option) is for html and svg, which draw a choice; \(format) holds the whole timeline")
        }
        if let width, !(400...20_000).contains(width) { throw ValidationError("--width is 400 to 20000 pixels") }
    }

    func run() async throws {
        let client = try global.client()
        if format == "html" || format == "svg" { return try await draw(client) }
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

    /// The picture, as a page or alone.
    func draw(_ client: TimelineClient) async throws {
        let views = try await picture.views(client)
        guard !views.isEmpty else {
            throw TimelineError(.notFound, "no event matches these filters: nothing to draw")
        }
        let version = try await client.replica.currentVersion()
        let layout = TimelineLayout(
            views.map(\.event),
            options: TimelineSVG.options(
                width: Double(width ?? 1200), lanes: picture.laneMode,
                changed: try await picture.changed(client, version: version)))
        let title = try await PictureOptions.title(client)
        let subtitle = picture.subtitle(count: views.count, version: version)
        let text =
            format == "svg"
            ? #"<?xml version="1.0" encoding="UTF-8"?>"# + "\n"
                + TimelineSVG.render(layout, title: title, subtitle: subtitle)
            : TimelineHTML.render(layout, views: views, title: title, subtitle: subtitle)
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    static func csv(_ s: String) -> String {
        s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" })
            ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s
    }
}
