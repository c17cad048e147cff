import ArgumentParser
import Foundation
import TimelineClient
import TimelineCore
import TimelineStore

/// Which events a listing or a picture takes from the replica: the filters of `log`, `chart` and `export`.
struct FilterOptions: ParsableArguments {
    @Option(help: "Events that end on or after this day (YYYY-MM-DD).") var since: String?
    @Option(help: "Events that start on or before this day (YYYY-MM-DD).") var until: String?
    @Option(help: "Only events with this tag, on the event or on one of its annotations.") var tag: String?
    @Option(help: "Only events whose text, or an annotation's text or author, contains this (any case).")
    var grep: String?

    func validate() throws {
        for (name, value) in [("--since", since), ("--until", until)] where value != nil && CivilDay(iso: value!) == nil
        {
            throw ValidationError("\(name) \(value!) is not a day of the calendar, written YYYY-MM-DD")
        }
        if let since, let until, let from = CivilDay(iso: since), let to = CivilDay(iso: until), to < from {
            throw ValidationError("--until \(until) is before --since \(since): no event could be in between")
        }
    }

    func filter(author: String? = nil, deleted: Bool = false) -> EventFilter {
        EventFilter(
            from: since.flatMap(CivilDay.init(iso:)), until: until.flatMap(CivilDay.init(iso:)), tag: tag, text: grep,
            includeDeleted: deleted, limit: Int.max, throughAnnotations: true, annotationAuthor: author)
    }

    /// The filters in words, for a picture's subtitle.
    var words: [String] {
        var parts: [String] = []
        if let since { parts.append("from \(since)") }
        if let until { parts.append("until \(until)") }
        if let tag { parts.append("tag #\(tag)") }
        if let grep { parts.append("matching \"\(grep)\"") }
        return parts
    }
}

/// How a picture of the timeline draws what the filters chose.
struct PictureOptions: ParsableArguments {
    @OptionGroup var filters: FilterOptions
    @Option(
        help:
            "Lanes: first-tag (each event once, in the lane of its first tag in alphabetical order) or every-tag (in each of its tags' lanes)."
    )
    var lanes: TimelineLayout.Lanes?
    @Option(
        parsing: .unconditional,
        help: "Highlight the events edited after this version (timeline status shows the current one).")
    var changedSince: Int64?

    var laneMode: TimelineLayout.Lanes { lanes ?? .firstTag }

    func validate() throws {
        if let changedSince, changedSince < 0 { throw ValidationError("--changed-since takes a version, 0 or more") }
    }

    /// The events to draw, from the replica.
    func views(_ client: TimelineClient) async throws -> [EventView] {
        try await client.replica.events(matching: filters.filter())
    }

    /// The events edited after `--changed-since`, which may not be beyond the replica's `version`.
    func changed(_ client: TimelineClient, version: Int64) async throws -> Set<EventID> {
        guard let changedSince else { return [] }
        guard changedSince <= version else {
            throw ValidationError(
                "--changed-since \(changedSince) is beyond this replica's version \(version) (timeline pull brings it up to date)"
            )
        }
        return Set(try await client.replica.touchedEvents(after: changedSince).0)
    }

    /// The picture's title: the timeline's source document when it has one.
    static func title(_ client: TimelineClient) async throws -> String {
        let meta = try await client.replica.meta()
        return (meta["title"] ?? meta["source"])?.stringValue.map { "Timeline: \($0)" } ?? "Timeline"
    }

    /// What is drawn, in words: counts, filters, lanes, highlighted changes.
    func subtitle(count: Int, version: Int64) -> String {
        var parts = ["\(count) event\(count == 1 ? "" : "s")"] + filters.words
        parts.append(laneMode == .firstTag ? "lanes by first tag" : "a lane for each tag")
        if let changedSince { parts.append("bold: changed after version \(changedSince)") }
        parts.append("replica at version \(version)")
        return parts.joined(separator: " · ")
    }
}

extension TimelineLayout.Lanes: ExpressibleByArgument {}

struct Chart: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw the timeline in the terminal: a time axis, lanes by tag, one row per event.",
        discussion: """
            A day is a dot, days given to the day a solid bar, a month, season or year a shaded bar (the event is \
            somewhere within it). Drawn from the replica, offline. Colour on a terminal unless NO_COLOR is set; \
            the terminal's width, or COLUMNS, or 80 in a pipe.
            Examples:
              timeline chart
              timeline chart --since 2012-01-01 --tag cyber
              timeline chart --changed-since 31
            """)
    @OptionGroup var global: GlobalOptions
    @OptionGroup var picture: PictureOptions

    func run() async throws {
        let client = try global.client()
        let views = try await picture.views(client)
        guard !views.isEmpty else {
            // As log says it: on standard error, and not a failure.
            FileHandle.standardError.write(Data("no event matches these filters\n".utf8))
            return
        }
        let changed = try await picture.changed(client, version: try await client.replica.currentVersion())
        let short = try await client.shortForms(views.map(\.event.id.description))
        if global.json {
            // The layout for scripts: one object per event, in lane and date order.
            let layout = TimelineLayout(
                views.map(\.event), options: .init(width: 1, lanes: picture.laneMode, labelWidth: { _ in 0 }, gap: 0))
            let events = Dictionary(views.map { ($0.event.id, $0.event) }, uniquingKeysWith: { a, _ in a })
            for m in layout.marks {
                let event = events[m.event]!
                Output.json([
                    "id": .string(m.event.description), "short": .string(short[m.event.description] ?? ""),
                    "lane": .string(layout.lanes[m.lane].name), "copy": .bool(m.copy),
                    "shape": .string(m.shape.rawValue),
                    "date": .string(m.dateText), "start": event.date.start.map { .string($0.iso) } ?? .null,
                    "end": event.date.end.map { .string($0.iso) } ?? .null, "title": .string(event.title),
                    "changed": .bool(m.changed), "warning": m.warning.map { .string($0) } ?? .null,
                ])
            }
            for u in layout.undated {
                Output.json([
                    "id": .string(u.event.description), "short": .string(short[u.event.description] ?? ""),
                    "lane": .null, "shape": "undated", "date": .string(u.dateText), "changed": .bool(u.changed),
                ])
            }
            return
        }
        Pager.start(global)
        let columns =
            Output.width ?? ProcessInfo.processInfo.environment["COLUMNS"].flatMap(Int.init).flatMap {
                $0 > 20 ? $0 : nil
            }
            ?? 80
        let text = TimelineChart.render(
            views.map(\.event), width: columns, lanes: picture.laneMode, changed: changed, shortIDs: short,
            title: try await PictureOptions.title(client), colour: Output.colour)
        FileHandle.standardOutput.write(Data(text.utf8))
    }
}
