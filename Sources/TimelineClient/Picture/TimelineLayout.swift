import TimelineCore

/// Where everything of a timeline picture goes: the axis and its ticks, lanes, one mark per event, labels that do
/// not overlap, a histogram of density. One computation feeds the SVG, the HTML page and the terminal chart, so
/// that they agree. Pure: events in, positions out, in the caller's units (pixels or terminal columns).
public struct TimelineLayout: Sendable {
    /// How events are put in lanes.
    public enum Lanes: String, Sendable, CaseIterable {
        /// Each event once, in the lane of its first tag (alphabetically); untagged events in a lane of their own.
        case firstTag = "first-tag"
        /// An event in the lane of each of its tags: the first is its mark, the others are copies.
        case everyTag = "every-tag"
    }

    public struct Options: Sendable {
        /// The axis' length, in the caller's units.
        public var width: Double
        public var lanes: Lanes
        /// How wide a label is drawn, in the same units.
        public var labelWidth: @Sendable (String) -> Double
        /// The space kept after a label before the next mark in its row.
        public var gap: Double
        /// The longest label, in characters; longer titles end with "…" (the whole title is in the details).
        public var maxLabel: Int
        /// Rows a lane may take; the marks that would need more are counted in a "+N" badge. Nil: no limit.
        public var maxRows: Int?
        /// Events changed since the version the reader last looked at: their marks are highlighted.
        public var changed: Set<EventID>

        public init(
            width: Double, lanes: Lanes = .firstTag, labelWidth: @escaping @Sendable (String) -> Double,
            gap: Double, maxLabel: Int = 40, maxRows: Int? = nil, changed: Set<EventID> = []
        ) {
            self.width = width
            self.lanes = lanes
            self.labelWidth = labelWidth
            self.gap = gap
            self.maxLabel = maxLabel
            self.maxRows = maxRows
            self.changed = changed
        }
    }

    /// How a date is drawn: what it certainly covers is solid; an imprecise date is never a point.
    public enum Shape: String, Sendable {
        /// One day.
        case point
        /// A range of days given to the day.
        case range
        /// A month, quarter, season or year (or a range of them): the span is drawn with faded edges.
        case uncertain
    }

    public struct Tick: Sendable, Equatable {
        public var day: CivilDay
        public var x: Double
        public var label: String
        /// A year's start among month ticks, a month's among day ticks.
        public var major: Bool
    }

    public struct Mark: Sendable {
        public var event: EventID
        public var revision: Int64
        public var lane: Int
        public var row: Int
        /// The span, from the start of its first day to the end of its last (`x1 == x0` would be no day at all).
        public var x0: Double
        public var x1: Double
        public var shape: Shape
        /// The title as drawn (shortened to `maxLabel`).
        public var label: String
        public var labelX: Double
        public var labelWidth: Double
        /// The date in its own words ("Spring 2013", "2009").
        public var dateText: String
        /// What the date parser doubted about this date, if anything (the sample's "October 18 to 10, 2012").
        public var warning: String?
        public var changed: Bool
        /// A copy in another tag's lane (`Lanes.everyTag`); the event's own mark is in its first tag's lane.
        public var copy: Bool
    }

    public struct Lane: Sendable {
        public var name: String
        public var rows: Int
        /// Marks that did not fit in `maxRows` rows (the "+N" badge), in date order.
        public var hidden: [EventID]
        /// Events in this lane (marks and hidden ones).
        public var count: Int
    }

    /// Events whose date could not be placed on the axis: listed with their date text.
    public struct Undated: Sendable {
        public var event: EventID
        public var label: String
        public var dateText: String
        public var warning: String?
        public var changed: Bool
    }

    /// How many events start in each tick interval: the clusters and gaps, at any zoom.
    public struct Bucket: Sendable, Equatable {
        public var x0: Double
        public var x1: Double
        public var count: Int
    }

    /// The first and last day of the axis (whole ticks around the events); nil when no event can be placed.
    public var first: CivilDay?
    public var last: CivilDay?
    public var width: Double
    public var ticks: [Tick]
    public var lanes: [Lane]
    public var marks: [Mark]
    public var undated: [Undated]
    public var histogram: [Bucket]
    public var lanesBy: Lanes
    /// Finer ticks for a picture zoomed in: for each zoom factor from which they fit, ticks placed in this
    /// layout's units (a position times the factor is where it is drawn). Years at the whole, months zoomed in.
    public var zoomTicks: [(factor: Int, ticks: [Tick])] = []

    /// Lays out `events` (deleted ones are left out).
    public init(_ events: [Event], options: Options) {
        width = options.width
        lanesBy = options.lanes
        let live = events.filter { !$0.deleted }
        let placed = live.filter { $0.date.start != nil }
        undated = live.filter { $0.date.start == nil }.map { e in
            Undated(
                event: e.id, label: Self.shorten(e.title, options.maxLabel), dateText: e.date.text,
                warning: nil, changed: options.changed.contains(e.id))
        }
        guard let lo = placed.compactMap(\.date.start).min(),
            let hi = placed.map({ $0.date.end ?? $0.date.start! }).max()
        else {
            (first, last, ticks, lanes, marks, histogram) = (nil, nil, [], [], [], [])
            return
        }
        let scale = Scale.choose(
            from: lo, to: hi, width: options.width, labelWidth: options.labelWidth, minRoom: options.width / 10)
        first = scale.first
        last = scale.last
        ticks = scale.ticks
        let x = scale.x
        var previous = scale.ticks.map(\.day)
        for factor in [2, 4, 8, 16, 32, 64, 128] {
            let finer = Scale.choose(
                from: scale.first, to: scale.last, width: options.width * Double(factor),
                labelWidth: options.labelWidth, minRoom: options.width / 10)
            let inside = finer.ticks.filter { $0.day >= scale.first && $0.day <= scale.last }
            guard inside.map(\.day) != previous else { continue }
            previous = inside.map(\.day)
            zoomTicks.append(
                (factor, inside.map { t in Tick(day: t.day, x: x(t.day), label: t.label, major: t.major) }))
        }
        histogram = zip(scale.boundaries, scale.boundaries.dropFirst()).map { a, b in
            Bucket(x0: x(a), x1: x(b), count: 0)
        }
        for e in placed {
            let day = e.date.start!.daysSinceEpoch
            if let i = scale.boundaries.lastIndex(where: { $0.daysSinceEpoch <= day }), i < histogram.count {
                histogram[i].count += 1
            }
        }

        // Lanes: by the number of events, then by name; the untagged last.
        var members: [String: [(Event, Bool)]] = [:]
        for e in placed {
            let tags = e.tags.isEmpty ? [""] : e.tags
            members[tags[0], default: []].append((e, false))
            if options.lanes == .everyTag {
                for tag in tags.dropFirst() { members[tag, default: []].append((e, true)) }
            }
        }
        let order = members.keys.sorted { a, b in
            if a.isEmpty != b.isEmpty { return b.isEmpty }
            let (na, nb) = (members[a]!.count, members[b]!.count)
            return na != nb ? na > nb : a < b
        }
        var lanes: [Lane] = []
        var marks: [Mark] = []
        for (laneIndex, name) in order.enumerated() {
            var rowEnds: [Double] = []
            var hidden: [EventID] = []
            let entries = members[name]!.sorted { a, b in
                (a.0.date.start!, a.0.date.end ?? a.0.date.start!, a.0.id) < (
                    b.0.date.start!, b.0.date.end ?? b.0.date.start!, b.0.id
                )
            }
            for (e, copy) in entries {
                let start = e.date.start!
                let end = max(e.date.end ?? start, start)
                let x0 = x(start)
                let x1 = x(CivilDay(daysSinceEpoch: end.daysSinceEpoch + 1))
                let shape: Shape =
                    e.date.precision != .day ? .uncertain : (start == end ? .point : .range)
                // An imprecise date is labelled with its own words: the bar says where it may be, the words what
                // is known ("Spring 2013").
                let label = Self.shorten(shape == .uncertain ? "\(e.date.text): \(e.title)" : e.title, options.maxLabel)
                let labelWidth = options.labelWidth(label)
                // A point's label starts just after it, a bar's at its start, above it; near the axis' end it is
                // moved left to stay in the picture.
                let labelX = max(0, min(shape == .point ? x0 + options.gap : x0, options.width - labelWidth))
                let begin = min(x0, labelX)
                let extent = max(x1, labelX + labelWidth) + options.gap
                guard let row = rowEnds.firstIndex(where: { $0 <= begin }) ?? Self.newRow(&rowEnds, options.maxRows)
                else {
                    hidden.append(e.id)
                    continue
                }
                rowEnds[row] = extent
                marks.append(
                    Mark(
                        event: e.id, revision: e.revision, lane: laneIndex, row: row, x0: x0, x1: x1, shape: shape,
                        label: label, labelX: labelX, labelWidth: labelWidth, dateText: e.date.text,
                        warning: Self.warning(e.date), changed: options.changed.contains(e.id), copy: copy))
            }
            lanes.append(Lane(name: name, rows: rowEnds.count, hidden: hidden, count: entries.count))
        }
        self.lanes = lanes
        self.marks = marks
    }

    /// A new row's index, if the lane may have one more.
    private static func newRow(_ rowEnds: inout [Double], _ maxRows: Int?) -> Int? {
        if let maxRows, rowEnds.count >= maxRows { return nil }
        rowEnds.append(0)
        return rowEnds.count - 1
    }

    /// The parser's doubt about a placed date's words, if it has one (a date kept as text only was not placed,
    /// and is not doubted: it was meant so).
    static func warning(_ date: EventDate) -> String? {
        date.start == nil ? nil : EventDate.parse(date.text).warnings.first
    }

    /// At most `max` characters, the last of them "…" when shortened; on a word boundary when one is near.
    public static func shorten(_ text: String, _ max: Int) -> String {
        let one = text.split(whereSeparator: \.isNewline).joined(separator: " ")
        guard one.count > max, max > 1 else { return one }
        var cut = String(one.prefix(max - 1))
        if let space = cut.lastIndex(of: " "), cut.distance(from: cut.startIndex, to: space) > max * 2 / 3 {
            cut = String(cut[..<space])
        }
        return cut.trimmingTrailingPunctuation() + "…"
    }

    /// Characters as a terminal draws them: East Asian wide ones take two columns, combining marks none.
    public static func columns(_ text: String) -> Int {
        text.unicodeScalars.reduce(0) { n, s in
            let v = s.value
            if s.properties.generalCategory == .nonspacingMark || s.properties.generalCategory == .enclosingMark {
                return n
            }
            let wide =
                (0x1100...0x115F).contains(v) || (0x2E80...0xA4CF).contains(v) || (0xAC00...0xD7A3).contains(v)
                || (0xF900...0xFAFF).contains(v) || (0xFE30...0xFE4F).contains(v) || (0xFF00...0xFF60).contains(v)
                || (0xFFE0...0xFFE6).contains(v) || (0x1F300...0x1FAFF).contains(v) || (0x20000...0x3FFFD).contains(v)
            return n + (wide ? 2 : 1)
        }
    }
}

extension String {
    fileprivate func trimmingTrailingPunctuation() -> String {
        var s = Substring(self)
        while let last = s.last, last == " " || last == "," || last == ";" || last == ":" { s = s.dropLast() }
        return String(s)
    }
}

/// The axis: which ticks (days, weeks, months, quarters, years or decades) fit the width with their labels,
/// and the mapping of days to positions.
struct Scale {
    var first: CivilDay
    var last: CivilDay
    var ticks: [TimelineLayout.Tick]
    /// Tick days from `first` to the day after `last`: the histogram's buckets.
    var boundaries: [CivilDay]
    var width: Double

    /// The position of the start of a day.
    func x(_ day: CivilDay) -> Double {
        let span = Double(last.daysSinceEpoch + 1 - first.daysSinceEpoch)
        return Double(day.daysSinceEpoch - first.daysSinceEpoch) / span * width
    }

    /// A step of the axis: a number of days, or of months.
    enum Step: Equatable {
        case days(Int)
        case months(Int)
    }

    static let steps: [Step] = [
        .days(1), .days(7), .months(1), .months(3), .months(6), .months(12), .months(24), .months(60), .months(120),
        .months(240), .months(600), .months(1200),
    ]

    /// The finest step whose ticks leave room for their labels and are at least `minRoom` apart (about ten
    /// across what is seen at once): years for the sample's six years, months once zoomed in.
    static func choose(
        from lo: CivilDay, to hi: CivilDay, width: Double, labelWidth: (String) -> Double, minRoom: Double
    ) -> Scale {
        for step in steps {
            let scale = make(step, from: lo, to: hi, width: width)
            let room = width / Double(max(1, scale.boundaries.count - 1))
            let widest = scale.ticks.map { labelWidth($0.label) }.max() ?? 0
            // Ten ticks exactly across fit (a twenty-year axis in two-year steps): no rounding may refuse them.
            if room * (1 + 1e-9) >= max(widest * 1.5, minRoom) || step == steps.last { return scale }
        }
        preconditionFailure("the last step always fits")
    }

    static func make(_ step: Step, from lo: CivilDay, to hi: CivilDay, width: Double) -> Scale {
        // The axis spans whole steps, but never more than whole years around the events: a decade's ticks on a
        // six-year timeline fall where they fall, rather than stretch the axis.
        let frame: Step = if case .months(let n) = step, n > 12 { .months(12) } else { step }
        var boundaries: [CivilDay] = []
        var day = floor(lo, frame)
        let after = CivilDay(daysSinceEpoch: hi.daysSinceEpoch + 1)
        boundaries.append(day)
        while day < after {
            day = advance(day, step)
            boundaries.append(day)
        }
        let first = boundaries[0]
        var end = floor(after, frame)
        if end < after { end = advance(end, frame) }
        let last = CivilDay(daysSinceEpoch: end.daysSinceEpoch - 1)
        var ticks = boundaries.filter { $0 <= end }
        if frame != step {
            // Ticks on the step's own boundaries (2010, 2015…), the buckets on them too, closed by the axis' ends.
            ticks = []
            var t = floor(first, step)
            while t <= end {
                if t >= first { ticks.append(t) }
                t = advance(t, step)
            }
            boundaries = [first] + ticks.filter { $0 > first && $0 < end } + [end]
        }
        var scale = Scale(first: first, last: last, ticks: [], boundaries: boundaries, width: width)
        scale.ticks = ticks.map { d in
            // The axis' end has a line but no label: there is no room after it.
            guard d < end else { return TimelineLayout.Tick(day: d, x: scale.x(d), label: "", major: true) }
            let label: String
            let major: Bool
            switch step {
            // Every label says enough to be read alone: a zoomed-in view may show no January, or no first day.
            case .days:
                label =
                    d.day == 1 || d == first
                    ? "\(monthNames[d.month - 1]) \(d.day), \(d.year)" : "\(monthNames[d.month - 1]) \(d.day)"
                major = d.day == 1
            case .months(let n) where n < 12:
                label = "\(monthNames[d.month - 1]) \(d.year)"
                major = d.month == 1
            case .months:
                label = "\(d.year)"
                major = true
            }
            return TimelineLayout.Tick(day: d, x: scale.x(d), label: label, major: major)
        }
        return scale
    }

    static let monthNames = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// The step's boundary on or before `day`: a Monday for weeks, a month's first day for months, January for
    /// years, a year divisible by the step for longer ones.
    static func floor(_ day: CivilDay, _ step: Step) -> CivilDay {
        switch step {
        case .days(1): return day
        case .days:
            // 1970-01-01 was a Thursday: days since epoch + 3, mod 7, counts from Monday.
            let z = day.daysSinceEpoch
            return CivilDay(daysSinceEpoch: z - ((z + 3) % 7 + 7) % 7)
        case .months(let n) where n < 12:
            let index = (day.month - 1) / n * n
            return CivilDay(year: day.year, month: index + 1, day: 1)!
        case .months(let n):
            let years = n / 12
            let year = Int((Double(day.year) / Double(years)).rounded(.down)) * years
            return CivilDay(year: year, month: 1, day: 1)!
        }
    }

    static func advance(_ day: CivilDay, _ step: Step) -> CivilDay {
        switch step {
        case .days(let n): return CivilDay(daysSinceEpoch: day.daysSinceEpoch + Int64(n))
        case .months(let n):
            let months = day.year * 12 + (day.month - 1) + n
            return CivilDay(year: months / 12, month: months % 12 + 1, day: 1)!
        }
    }
}
