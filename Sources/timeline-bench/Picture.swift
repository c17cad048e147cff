import Foundation
import TimelineClient
import TimelineCore

/// P1–P3: the HTML picture of a large timeline (10,000 events with 50,000 annotations) opened in headless
/// Chromium, beside the target (2 s to interactive, 10 MB) and Chromium opening an empty page in the same run.
enum PictureBench {
    static func run(work: String, quick: Bool) throws -> [Figure] {
        guard
            let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first(where: {
                FileManager.default.isExecutableFile(atPath: $0)
            })
        else { throw WholeBench.Failure("chromium is not installed (Scripts/bench.sh installs it)") }
        let count = quick ? 1_000 : 10_000
        let views = generate(events: count, annotationsEach: 5)
        var html = ""
        let rendering = secondsSync {
            let layout = TimelineLayout(views.map(\.event), options: TimelineSVG.options(width: 1200))
            html = TimelineHTML.render(layout, views: views, title: "Generated", subtitle: "\(count) events")
        }
        let page = (work as NSString).appendingPathComponent("large.html")
        let empty = (work as NSString).appendingPathComponent("empty.html")
        try html.write(toFile: page, atomically: true, encoding: .utf8)
        let emptyScript = #"document.documentElement.setAttribute("data-ready", "true");"#
        try "<!doctype html><html><body><script>\(emptyScript)</script></body></html>"
            .write(toFile: empty, atomically: true, encoding: .utf8)
        let profile = (work as NSString).appendingPathComponent("chromium-profile")
        let base = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--user-data-dir=\(profile)", "--virtual-time-budget=30000",
        ]
        func chromiumRun(_ arguments: [String]) throws -> (seconds: Double, output: String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: chromium)
            p.arguments = base + arguments
            let out = Pipe()
            p.standardOutput = out
            p.standardError = FileHandle.nullDevice
            var data = Data()
            let elapsed = try secondsSync {
                try p.run()
                data = out.fileHandleForReading.readDataToEndOfFile()
                p.waitUntilExit()
            }
            guard p.terminationStatus == 0 else { throw WholeBench.Failure("chromium failed on \(arguments)") }
            return (elapsed, String(decoding: data, as: UTF8.self))
        }
        // The page's script must finish (its data inflated and read): checked on the DOM, untimed, since writing
        // out a DOM of megabytes through DevTools costs more than the page itself.
        for file in [empty, page]
        where
            !(try chromiumRun(["--dump-dom", "file://\(file)"]).output
            .contains("data-ready=\"true\""))
        {
            throw WholeBench.Failure("chromium did not run \(file)'s script")
        }
        /// Chromium's whole run to a screenshot: start, load, layout, the script (virtual time lets the capture wait
        /// for its data to be inflated and read, and skips only idle waits), the first frame.
        func open(_ file: String) throws -> Double {
            let shot = (work as NSString).appendingPathComponent("shot.png")
            return try chromiumRun(["--window-size=1280,900", "--screenshot=\(shot)", "file://\(file)"]).seconds
        }
        _ = try open(empty)  // a first start warms the profile and the page cache
        var large: [Double] = []
        var bare: [Double] = []
        for _ in 0..<3 {
            bare.append(try open(empty))
            large.append(try open(page))
        }
        let median = { (xs: [Double]) in xs.sorted()[xs.count / 2] }
        let size = Double(html.utf8.count) / 1_000_000
        return [
            // The page's own cost: Chromium's run to a screenshot of it less the same for an empty page (start-up).
            Figure(
                name: "P1 HTML of \(count) events, open to interactive", value: median(large) - median(bare),
                unit: "s",
                reference: String(format: "the target, 2 s (Chromium on an empty page: %.2f s)", median(bare)),
                referenceValue: 2, target: "<= 1.0x", targetRatio: 1, lowerIsBetter: true),
            Figure(
                name: "P2 its size", value: size, unit: "MB", reference: "the target, 10 MB", referenceValue: 10,
                target: "<= 1.0x", targetRatio: 1, lowerIsBetter: true),
            Figure(
                name: "P3 layout and HTML written, in process", value: rendering, unit: "s",
                reference: "the page opening it (P1)", referenceValue: median(large) - median(bare), target: "-",
                targetRatio: 0),
        ]
    }

    /// Events over twenty years in every precision, one to three of twelve tags, two references with links, and
    /// `annotationsEach` annotations of about a hundred characters.
    static func generate(events: Int, annotationsEach: Int) -> [EventView] {
        var rng = SystemRandomNumberGenerator()
        let tags = [
            "cyber", "defence", "economy", "summit", "policy", "cloud", "trade", "law", "energy", "space",
            "health", "education",
        ]
        let months = [
            "January", "February", "March", "April", "May", "June", "July", "August", "September",
            "October", "November", "December",
        ]
        // Words of the sample document, so that the text compresses as real text does.
        let words = Array(
            Set(
                SampleTimeline.text.split { !$0.isLetter }.map(String.init).filter {
                    $0.count > 1 && $0.allSatisfy(\.isASCII)
                })
        )
        .sorted()
        func sentence(_ n: Int) -> String {
            (0..<n).map { _ in words.randomElement(using: &rng)! }.joined(separator: " ")
        }
        return (0..<events).map { i in
            let year = 2000 + Int.random(in: 0..<20, using: &rng)
            let month = Int.random(in: 0..<12, using: &rng)
            let day = Int.random(in: 1...28, using: &rng)
            let text: String
            switch i % 5 {
            case 0: text = "\(months[month]) \(day), \(year)"
            case 1: text = "\(months[month]) \(day) to \(min(28, day + 3)), \(year)"
            case 2: text = "\(months[month]) \(year)"
            case 3: text = ["Spring", "Summer", "Autumn", "Winter"][month % 4] + " \(year)"
            default: text = "\(year)"
            }
            let id = EventID(ULID.generate(at: Timestamp(milliseconds: Int64(1_600_000_000_000 + i))))
            let eventTags = Array(Set((0..<(1 + i % 3)).map { _ in tags.randomElement(using: &rng)! })).sorted()
            let event = Event(
                id: id, revision: 1 + Int64(annotationsEach), date: EventDate(parsing: text),
                title: sentence(9).capitalized, summary: sentence(30),
                references: (1...2).map { n in
                    Reference(number: n, text: "Source \(n), \(sentence(6))", urls: ["https://example.org/\(i)/\(n)"])
                }, tags: eventTags, deleted: false)
            let notes = (0..<annotationsEach).map { n in
                Annotation(
                    id: AnnotationID(ULID.generate(at: Timestamp(milliseconds: Int64(1_700_000_000_000 + i * 10 + n)))),
                    event: id, author: "analyst\(n)", text: sentence(16), tags: n == 0 ? ["checked"] : [],
                    created: Timestamp(milliseconds: Int64(1_700_000_000_000 + i * 10 + n)))
            }
            return EventView(event: event, annotations: notes)
        }
    }
}
