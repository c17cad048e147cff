import Foundation
import Testing
import TimelineClient
import TimelineCore

/// The layout every picture is drawn from, on the pure code.
@Suite struct TimelineLayoutTests {
    static func event(_ n: Int, _ date: String, tags: [String] = [], title: String? = nil) -> Event {
        let id = EventID(String(format: "01JQ8ZQW007TKPA8XK0396%04d", n))!
        return Event(
            id: id, revision: 1, date: EventDate(parsing: date), title: title ?? "Event \(n) on \(date)",
            summary: "", references: [], tags: tags, deleted: false)
    }

    static func options(width: Double = 1000, maxRows: Int? = nil) -> TimelineLayout.Options {
        .init(width: width, labelWidth: { Double($0.count) * 6 }, gap: 8, maxRows: maxRows)
    }

    /// Every mark's extent in its lane and row: its span and its label.
    static func overlaps(_ layout: TimelineLayout) -> [(TimelineLayout.Mark, TimelineLayout.Mark)] {
        var out: [(TimelineLayout.Mark, TimelineLayout.Mark)] = []
        let groups = Dictionary(grouping: layout.marks) { "\($0.lane)/\($0.row)" }
        for marks in groups.values {
            let sorted = marks.sorted { min($0.x0, $0.labelX) < min($1.x0, $1.labelX) }
            for (a, b) in zip(sorted, sorted.dropFirst())
            where max(a.x1, a.labelX + a.labelWidth) > min(b.x0, b.labelX) {
                out.append((a, b))
            }
        }
        return out
    }

    @Test func theSampleSpanHasYearTicksAndMonthsWhenZoomedIn() {
        let layout = TimelineLayout(
            [Self.event(1, "2009"), Self.event(2, "June 9 to 10, 2011"), Self.event(3, "April 10, 2014")],
            options: Self.options())
        #expect(layout.first == CivilDay(iso: "2009-01-01"))
        #expect(layout.last == CivilDay(iso: "2014-12-31"))
        #expect(layout.ticks.map(\.label) == ["2009", "2010", "2011", "2012", "2013", "2014", ""])
        #expect(layout.ticks.first?.x == 0)
        #expect(abs((layout.ticks.last?.x ?? 0) - 1000) < 0.001)
        // Zoomed in, months appear: first quarters or half years, then every month.
        let monthly = layout.zoomTicks.first { $0.ticks.contains { $0.label == "Feb 2010" } }
        #expect(monthly != nil)
        #expect(monthly?.ticks.first { $0.label == "Jan 2010" }?.major == true)
    }

    @Test func aShortSpanGetsDayTicks() {
        let layout = TimelineLayout(
            [Self.event(1, "March 3, 2012"), Self.event(2, "March 19, 2012")], options: Self.options())
        // Weeks (from a Monday) at the whole; every day once zoomed in.
        #expect(layout.ticks.first?.label == "Feb 27, 2012")
        #expect(layout.ticks.count >= 3)
        #expect(layout.ticks.allSatisfy { (2...3).contains($0.day.month) })
        let daily = layout.zoomTicks.last?.ticks ?? []
        #expect(daily.count >= 20)
        #expect(daily.contains { $0.label == "Mar 1, 2012" && $0.major })
    }

    @Test func impreciseDatesAreNeverPointsAndUnplaceableOnesAreListed() {
        let layout = TimelineLayout(
            [
                Self.event(1, "November 13, 2010"), Self.event(2, "May 9 to 10, 2013"), Self.event(3, "Spring 2013"),
                Self.event(4, "2009"), Self.event(5, "sometime after the war"),
            ], options: Self.options())
        let shapes = Dictionary(uniqueKeysWithValues: layout.marks.map { ($0.dateText, $0.shape) })
        #expect(shapes["November 13, 2010"] == .point)
        #expect(shapes["May 9 to 10, 2013"] == .range)
        #expect(shapes["Spring 2013"] == .uncertain)
        #expect(shapes["2009"] == .uncertain)
        #expect(layout.undated.map(\.dateText) == ["sometime after the war"])
        let spring = layout.marks.first { $0.dateText == "Spring 2013" }!
        #expect(spring.label.hasPrefix("Spring 2013: "))
        #expect(layout.marks.first { $0.dateText == "November 13, 2010" }?.label.hasPrefix("Event 1") == true)
        let year = layout.marks.first { $0.dateText == "2009" }!
        #expect(spring.x1 - spring.x0 > 0 && year.x1 - year.x0 > (spring.x1 - spring.x0) * 3)
    }

    @Test func theSamplesMalformedRangeCarriesItsWarning() {
        let layout = TimelineLayout([Self.event(1, "October 18 to 10, 2012")], options: Self.options())
        #expect(layout.marks.first?.warning != nil || layout.undated.first?.warning != nil)
    }

    @Test func labelsNeverOverlapHoweverCrowded() {
        // Forty events on one day, in two lanes: every label needs a row of its own.
        let events = (0..<40).map { i in
            Self.event(i, "March 3, 2012", tags: i % 2 == 0 ? ["cyber"] : ["defence"])
        }
        let layout = TimelineLayout(events, options: Self.options())
        #expect(layout.marks.count == 40)
        #expect(Self.overlaps(layout).isEmpty)
        #expect(layout.lanes.map(\.name) == ["cyber", "defence"])
        #expect(layout.lanes.map(\.rows) == [20, 20])
        // Spread over years, the same events share rows.
        let spread = TimelineLayout(
            (0..<40).map { i in Self.event(i, "March 1, \(1990 + i)") }, options: Self.options(width: 4000))
        #expect(Self.overlaps(spread).isEmpty)
        // Labels stay inside the picture, also for the last events.
        #expect(spread.marks.allSatisfy { $0.labelX >= 0 && $0.labelX + $0.labelWidth <= 4000 })
        #expect(spread.lanes[0].rows < 10)
    }

    @Test func aRowLimitCountsWhatDoesNotFitInABadge() {
        let events = (0..<12).map { i in Self.event(i, "March 1, 2012") }
        let layout = TimelineLayout(events, options: Self.options(maxRows: 5))
        #expect(layout.marks.count == 5)
        #expect(layout.lanes[0].hidden.count == 7)
        #expect(layout.lanes[0].count == 12)
    }

    @Test func everyTagPutsCopiesInTheOtherLanesAndLaneOrderIsBySize() {
        let events = [
            Self.event(1, "2010", tags: ["a", "b"]), Self.event(2, "2011", tags: ["b"]), Self.event(3, "2012"),
        ]
        let first = TimelineLayout(events, options: Self.options())
        #expect(first.lanes.map(\.name) == ["a", "b", ""])
        #expect(first.marks.count == 3)
        var every = Self.options()
        every.lanes = .everyTag
        let all = TimelineLayout(events, options: every)
        #expect(all.lanes.map(\.name) == ["b", "a", ""])
        #expect(all.marks.count == 4)
        #expect(all.marks.filter(\.copy).map(\.event) == [events[0].id])
    }

    @Test func labelsAreShortenedOnAWordAndMeasuredInColumns() {
        #expect(
            TimelineLayout.shorten("The first Director-General level meeting of the dialogue", 30)
                == "The first Director-General…")
        #expect(TimelineLayout.shorten("short", 30) == "short")
        #expect(TimelineLayout.columns("日立システムズ") == 14)
        #expect(TimelineLayout.columns("Cafe\u{301}") == 4)
    }

    @Test func theSVGHasEveryEventOnceAndEscapesWhatItQuotes() throws {
        let events = [
            Self.event(1, "2010", title: "<script>alert(1)</script> & \"quotes\""), Self.event(2, "June 2011"),
            Self.event(3, "undatable"),
        ]
        let layout = TimelineLayout(events, options: TimelineSVG.options(width: 1200))
        let svg = TimelineSVG.render(layout, title: "T <1>", subtitle: "s")
        for e in events { #expect(svg.components(separatedBy: "data-event-id=\"\(e.id)\"").count == 2) }
        #expect(!svg.contains("<script>"))
        #expect(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;"))
        #expect(svg.contains("T &lt;1&gt;"))
        let html = TimelineHTML.render(
            layout, views: events.map { EventView(event: $0, annotations: []) }, title: "T", subtitle: "s")
        // The details panel's data: gzip in base64, which nothing in it can break out of; it holds every event.
        let packed = html.components(separatedBy: "id=\"timeline-data\">")[1].components(separatedBy: "</script>")[0]
        let bytes = try #require(Data(base64Encoded: packed))
        let data = try JSON(parsing: String(decoding: try #require(Gzip.decompress(Array(bytes))), as: UTF8.self))
        #expect(data["events"]?[events[0].id.description]?["t"]?.stringValue == events[0].title)
        #expect(data["events"]?.objectValue?.count == 3)
    }

    @Test func theTerminalChartKeepsToItsWidth() {
        let events = [
            Self.event(1, "2009", tags: ["economy"], title: "The American Chamber of Commerce in Japan published"),
            Self.event(2, "November 13, 2010", tags: ["summit"]), Self.event(3, "December 5 to 12, 2013"),
            Self.event(4, "October 18 to 10, 2012"), Self.event(5, "日立システムズの発表"),
        ]
        for width in [80, 200] {
            let chart = TimelineChart.render(events, width: width, title: "Timeline", colour: false)
            let lines = chart.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
            #expect(lines.allSatisfy { TimelineLayout.columns(String($0)) <= width }, "\(chart)")
            #expect(chart.contains("#economy (1)"))
            #expect(chart.contains("2009") && chart.contains("2013"))
            #expect(chart.contains("●") && chart.contains("█") && chart.contains("▒"))
        }
        let coloured = TimelineChart.render(events, width: 80, title: "Timeline", colour: true)
        #expect(coloured.contains("\u{1B}["))
    }
}

/// The HTML export opened in a real browser (Debian's Chromium, headless), as an analyst would open it.
@Suite(.serialized) struct PictureInBrowserTests {
    static let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    /// Where the screenshots go: `.build/test-output`, kept after the run for a person to look at.
    static let output: URL = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/test-output")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()

    /// Chromium's arguments for a headless run as root in a container, with a profile of its own.
    static func browse(_ arguments: [String], profile: String) throws -> (Int32, String, String) {
        guard let chromium else { throw TestFailure("chromium is missing: Scripts/test.sh installs it") }
        let base = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--user-data-dir=\(profile)", "--hide-scrollbars",
        ]
        return try ServerProcess.run(
            base + arguments, executable: URL(fileURLWithPath: chromium), environment: ["HOME": profile])
    }

    /// The DOM after the page's script ran, for the page at `url` (a fragment selects a view).
    static func dom(_ url: String, profile: String) throws -> String {
        let (status, out, err) = try browse(["--virtual-time-budget=5000", "--dump-dom", url], profile: profile)
        guard status == 0, out.contains("data-ready=\"true\"") else {
            throw TestFailure("chromium did not run the page (\(status)): \(err.suffix(2000))")
        }
        return out
    }

    /// The events drawn and not filtered out, by ID.
    static func visible(_ dom: String) -> [String] {
        let pattern = try! NSRegularExpression(pattern: #"<g class="mark([^"]*)" data-event-id="([0-9A-Z]{26})""#)
        return pattern.matches(in: dom, range: NSRange(dom.startIndex..., in: dom)).compactMap { m in
            let classes = String(dom[Range(m.range(at: 1), in: dom)!])
            return classes.contains("filtered") ? nil : String(dom[Range(m.range(at: 2), in: dom)!])
        }
    }

    @Test func theSampleOpensWithEveryEventItsLinksItsNotesAndItsFilters() throws {
        let surface = AnalystSurfaceTests()
        let folder = AnalystSurfaceTests.Folder()
        let server = try ServerProcess()
        let ana = try surface.person("ana", role: "editor", on: server, in: folder)
        let log = try ana.run(["log", "--json"])
        let events = try log.out.split(separator: "\n").map { try JSON(parsing: String($0)) }
        #expect(events.count == 28)
        let ids = events.compactMap { $0["id"]?.stringValue }
        // Two events tagged, one annotated (with markup in the note, which must stay text).
        for id in ids.prefix(2) { #expect(try ana.run(["edit", id, "--add-tag", "cyber"]).status == 0) }
        let noted = try #require(
            events.first { ($0["references"]?.arrayValue ?? []).contains { !($0["urls"]?.arrayValue ?? []).isEmpty } })
        let notedID = try #require(noted["id"]?.stringValue)
        #expect(try ana.run(["annotate", notedID, "read <b>this</b> first"]).status == 0)
        #expect(try ana.run(["annotate", ids[5], "see also", "--tag", "followup"]).status == 0)

        let export = try ana.run(["export", "--format", "html"])
        #expect(export.status == 0, "\(export.err)")
        let page = folder.path("timeline.html")
        try export.out.write(toFile: page, atomically: true, encoding: .utf8)
        let profile = folder.path("chromium")

        // Every event once, on the 2009-2014 axis.
        let all = try Self.dom("file://\(page)", profile: profile)
        #expect(Set(Self.visible(all)) == Set(ids))
        #expect(Self.visible(all).count == 28)
        for year in 2009...2014 { #expect(all.contains(">\(year)</text>")) }

        // The tag filter shows the tagged events only, and the text filter narrows by words.
        #expect(Set(Self.visible(try Self.dom("file://\(page)#tag=cyber", profile: profile))) == Set(ids.prefix(2)))
        // A tag only an annotation carries finds its event, as log --tag does; an unknown tag matches nothing.
        #expect(Self.visible(try Self.dom("file://\(page)#tag=followup", profile: profile)) == [ids[5]])
        let unknown = try Self.dom("file://\(page)#tag=nosuch", profile: profile)
        #expect(Self.visible(unknown).isEmpty)
        #expect(unknown.contains("#nosuch (no event)"))
        let words = try Self.dom("file://\(page)#q=cloud%20computing", profile: profile)
        let expected = events.filter {
            let text = "\($0["title"]?.stringValue ?? "") \($0["summary"]?.stringValue ?? "")".lowercased()
            return text.contains("cloud") && text.contains("computing")
        }.compactMap { $0["id"]?.stringValue }
        #expect(!expected.isEmpty)
        #expect(Set(Self.visible(words)) == Set(expected))

        // An event's details, named by the short ID the CLI prints: its references link to their sources, its
        // annotation is there, as text.
        let short = try #require(
            try ana.run(["log"]).out.split(separator: "\n").first {
                $0.contains(String((noted["title"]?.stringValue ?? "").prefix(20)))
            }
        ).prefix { $0 != " " }
        let details = try Self.dom("file://\(page)#event=\(short)", profile: profile)
        #expect(
            details.contains("id=\"details\" aria-live=\"polite\" data-event-id=\"\(notedID)\"")
                || details.contains("data-event-id=\"\(notedID)\" aria-live"))
        let urls = (noted["references"]?.arrayValue ?? []).flatMap { $0["urls"]?.arrayValue ?? [] }
            .compactMap(\.stringValue).filter { $0.hasPrefix("http") }
        for url in urls {
            let escaped = url.replacingOccurrences(of: "&", with: "&amp;")
            #expect(details.contains("href=\"\(escaped)\""), "\(url)")
        }
        #expect(details.contains("data-annotation-id=\""))
        #expect(details.contains("read &lt;b&gt;this&lt;/b&gt; first"))

        // Printed (or saved as PDF), the page is the picture and the details, without the controls.
        let pdf = folder.path("timeline.pdf")
        let printed = try Self.browse(
            ["--print-to-pdf=\(pdf)", "--no-pdf-header-footer", "file://\(page)"], profile: profile)
        #expect(printed.0 == 0, "\(printed.2)")
        let pdfSize = (try? FileManager.default.attributesOfItem(atPath: pdf)[.size] as? NSNumber)?.intValue ?? 0
        #expect(pdfSize > 20_000)

        // Screenshots for a person to look at: the whole, and an event's details (README's picture is the first).
        for (name, fragment) in [("timeline-sample", ""), ("timeline-sample-event", "#event=\(notedID)")] {
            let png = Self.output.appendingPathComponent("\(name).png").path
            try? FileManager.default.removeItem(atPath: png)
            let shot = try Self.browse(
                ["--window-size=1280,1000", "--screenshot=\(png)", "file://\(page)\(fragment)"], profile: profile)
            #expect(shot.0 == 0, "\(shot.2)")
            let size = (try? FileManager.default.attributesOfItem(atPath: png)[.size] as? NSNumber)?.intValue ?? 0
            #expect(size > 20_000)
        }
    }

    @Test func theChartAndTheSVGDrawTheSample() throws {
        let surface = AnalystSurfaceTests()
        let folder = AnalystSurfaceTests.Folder()
        let server = try ServerProcess()
        let ana = try surface.person("ana", role: "reader", on: server, in: folder)
        for width in ["80", "200"] {
            var cli = ana
            cli.environment["COLUMNS"] = width
            let chart = try cli.run(["chart"])
            #expect(chart.status == 0, "\(chart.err)")
            let lines = chart.out.split(separator: "\n")
            #expect(lines.allSatisfy { TimelineLayout.columns(String($0)) <= Int(width)! }, "\(chart.out)")
            #expect(lines.count >= 28 + 4)
            #expect(chart.out.contains("2009") && chart.out.contains("2014"))
            #expect(chart.out.contains("⚠"))  // the malformed range
        }
        let svg = try ana.run(["export", "--format", "svg", "--since", "2013-01-01"])
        #expect(svg.status == 0, "\(svg.err)")
        #expect(svg.out.hasPrefix("<?xml"))
        #expect(!svg.out.contains("2010</text>"))
        let refused = try ana.run(["export", "--format", "svg", "--tag", "no-such-tag"])
        #expect(refused.status == 1)
        #expect(refused.err.contains("no event matches these filters"))
        let wrong = try ana.run(["export", "--format", "csv", "--tag", "cyber"])
        #expect(wrong.status == 2)
        #expect(wrong.err.contains("--tag is for html and svg"))
        #expect(
            try ana.run(["export", "--format", "jsonl", "--width", "300"]).err.contains("--width is for html and svg"))
        let negative = try ana.run(["chart", "--changed-since", "-1"])
        #expect(negative.status == 2 && negative.err.contains("--changed-since takes a version, 0 or more"))
        let beyond = try ana.run(["chart", "--changed-since", "500"])
        #expect(beyond.status != 0 && beyond.err.contains("beyond this replica's version"))
        let notADay = try ana.run(["chart", "--until", "2014-02-30"])
        #expect(notADay.err.contains("2014-02-30 is not a day of the calendar"))
        // For scripts: the layout, one object per event.
        let json = try ana.run(["chart", "--json"])
        let lines = try json.out.split(separator: "\n").map { try JSON(parsing: String($0)) }
        #expect(lines.count == 28)
        #expect(lines.allSatisfy { $0["id"]?.stringValue?.count == 26 && $0["shape"] != nil })
    }
}
