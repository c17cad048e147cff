/// How finely a date is known.
public enum DatePrecision: String, Sendable, Hashable, CaseIterable {
    case day, month, quarter, season, year
    /// The text could not be read as a date; `start` and `end` are absent.
    case unknown

    /// Finer precisions sort first.
    var rank: Int {
        switch self {
        case .day: 0
        case .month: 1
        case .quarter: 2
        case .season: 3
        case .year: 4
        case .unknown: 5
        }
    }
}

/// An event's date: the source's text kept verbatim, plus the span it denotes (first and last day,
/// inclusive) and how precisely it is known. "June 2010" is 2010-06-01…2010-06-30 at month precision.
public struct EventDate: Sendable, Hashable {
    public var text: String
    public var start: CivilDay?
    public var end: CivilDay?
    public var precision: DatePrecision

    public init(text: String, start: CivilDay?, end: CivilDay?, precision: DatePrecision) {
        self.text = text
        self.start = start
        self.end = end
        self.precision = precision
    }

    /// Reads a date as people write them in timelines; `warnings` says what was doubtful.
    public static func parse(_ text: String) -> (date: EventDate, warnings: [String]) {
        DateParser.parse(text)
    }

    /// Parses, dropping the warnings.
    public init(parsing text: String) { self = DateParser.parse(text).date }
}

// MARK: - Parser

enum DateParser {
    enum Token: Equatable {
        case number(Int, digits: Int)
        case month(Int)
        case season(Season)
        case quarter(Int)
        case rangeMark  // to, through, until, -, –, —
        case and
        case vague(String)  // early, mid, late, around, circa
        case word(String)
    }

    enum Season: String {
        case spring, summer, autumn, winter
        var months: (Int, Int) {
            switch self {
            case .spring: (3, 5)
            case .summer: (6, 8)
            case .autumn: (9, 11)
            case .winter: (12, 2)
            }
        }
    }

    static let monthNames: [String: Int] = {
        let full = [
            "january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
            "november", "december",
        ]
        var names: [String: Int] = [:]
        for (i, name) in full.enumerated() {
            names[name] = i + 1
            names[String(name.prefix(3))] = i + 1
        }
        names["sept"] = 9
        return names
    }()

    static let ignorable: Set<String> = [
        "on", "in", "of", "the", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
        "mon", "tue", "wed", "thu", "fri", "sat", "sun", "st", "nd", "rd", "th",
    ]

    static func tokenize(_ text: String) -> [Token] {
        var tokens: [Token] = []
        var current = ""
        func flush() {
            guard !current.isEmpty else { return }
            defer { current = "" }
            let word = current.lowercased()
            if let n = Int(word), word.count <= 4 {
                tokens.append(.number(n, digits: word.count))
                return
            }
            // Ordinals: 1st, 2nd, 23rd, 4th.
            for suffix in ["st", "nd", "rd", "th"] where word.hasSuffix(suffix) {
                if let n = Int(word.dropLast(2)), n >= 1, n <= 31 {
                    tokens.append(.number(n, digits: String(n).count))
                    return
                }
            }
            if word.count == 2, word.first == "q", let q = Int(word.dropFirst()), (1...4).contains(q) {
                tokens.append(.quarter(q))
                return
            }
            switch word {
            case "to", "through", "thru", "until", "till": tokens.append(.rangeMark)
            case "and", "&": tokens.append(.and)
            case "spring": tokens.append(.season(.spring))
            case "summer": tokens.append(.season(.summer))
            case "autumn", "fall": tokens.append(.season(.autumn))
            case "winter": tokens.append(.season(.winter))
            case "early", "mid", "late", "around", "circa", "ca", "about", "approximately": tokens.append(.vague(word))
            default:
                if let m = monthNames[word] {
                    tokens.append(.month(m))
                } else if !ignorable.contains(word) {
                    tokens.append(.word(word))
                }
            }
        }
        for scalar in text.unicodeScalars {
            switch scalar {
            case "-", "\u{2013}", "\u{2014}", "\u{2012}", "~", "\u{301C}":
                flush()
                tokens.append(.rangeMark)
            case "&":
                flush()
                tokens.append(.and)
            case _ where scalar.properties.isAlphabetic || ("0"..."9").contains(scalar):
                // A digit-letter boundary splits ("2014Q3" → 2014, q3 is rare; "10th" stays whole).
                current.unicodeScalars.append(scalar)
            default:
                flush()  // spaces, commas, periods, slashes, NBSP
            }
        }
        flush()
        // "first/second/third/fourth quarter" → quarter tokens.
        var merged: [Token] = []
        let ordinals = ["first": 1, "second": 2, "third": 3, "fourth": 4, "1st": 1, "2nd": 2, "3rd": 3, "4th": 4]
        var i = 0
        while i < tokens.count {
            if case .word(let w) = tokens[i], let q = ordinals[w], i + 1 < tokens.count,
                tokens[i + 1] == .word("quarter")
            {
                merged.append(.quarter(q))
                i += 2
                continue
            }
            merged.append(tokens[i])
            i += 1
        }
        return merged
    }

    /// One side of a range before the gaps are filled from the other side.
    struct Partial {
        var year: Int?
        var month: Int?
        var day: Int?
        var season: Season?
        var quarter: Int?

        var isEmpty: Bool { year == nil && month == nil && day == nil && season == nil && quarter == nil }

        var precision: DatePrecision {
            if day != nil { return .day }
            if month != nil { return .month }
            if quarter != nil { return .quarter }
            if season != nil { return .season }
            return .year
        }
    }

    static func parsePartial(_ tokens: ArraySlice<Token>) -> Partial? {
        var p = Partial()
        for token in tokens {
            switch token {
            case .number(let n, let digits):
                if digits == 4 || n > 31 {
                    guard p.year == nil else { return nil }
                    p.year = n
                } else {
                    guard p.day == nil, n >= 1 else { return nil }
                    p.day = n
                }
            case .month(let m):
                guard p.month == nil else { return nil }
                p.month = m
            case .season(let s):
                guard p.season == nil else { return nil }
                p.season = s
            case .quarter(let q):
                guard p.quarter == nil else { return nil }
                p.quarter = q
            case .vague, .word, .rangeMark, .and:
                return nil
            }
        }
        // A lone small number is a day only when a month gives it meaning (or the other side will).
        if p.season != nil && (p.month != nil || p.day != nil) { return nil }
        if p.quarter != nil && (p.month != nil || p.day != nil || p.season != nil) { return nil }
        return p
    }

    static func unknown(_ text: String, _ reason: String) -> (date: EventDate, warnings: [String]) {
        (EventDate(text: text, start: nil, end: nil, precision: .unknown), ["date \"\(text)\": \(reason)"])
    }

    static func parse(_ text: String) -> (date: EventDate, warnings: [String]) {
        if text.contains("年") { return parseJapanese(text) }
        if let iso = parseISO(text) { return (iso, []) }
        var tokens = tokenize(text)
        var warnings: [String] = []
        var vagueWords: [String] = []
        // "mid-2013": the hyphen after a vague word is no range.
        var kept: [Token] = []
        for token in tokens {
            if token == .rangeMark, case .vague? = kept.last { continue }
            kept.append(token)
        }
        tokens = kept.filter { token in
            if case .vague(let w) = token {
                vagueWords.append(w)
                return false
            }
            return true
        }
        if !vagueWords.isEmpty {
            warnings.append(
                "date \"\(text)\": \"\(vagueWords.joined(separator: " "))\" is approximate; kept the whole span")
        }
        guard !tokens.isEmpty else { return unknown(text, "no date found") }
        let marks = tokens.indices.filter { tokens[$0] == .rangeMark || tokens[$0] == .and }
        guard marks.count <= 1 else { return unknown(text, "more than one range separator") }

        var left: Partial
        var right: Partial?
        if let mark = marks.first {
            guard let l = parsePartial(tokens[..<mark]), let r = parsePartial(tokens[(mark + 1)...]),
                !l.isEmpty, !r.isEmpty
            else { return unknown(text, "not a recognised date range") }
            left = l
            right = r
        } else {
            guard let l = parsePartial(tokens[...]), !l.isEmpty else {
                return unknown(text, "not a recognised date")
            }
            left = l
        }

        if var r = right {
            // Fill gaps from the other side: "June 9 to 10, 2011", "June to August 2011".
            if left.year == nil { left.year = r.year }
            if r.year == nil { r.year = left.year }
            if r.day != nil && r.month == nil && r.season == nil && r.quarter == nil { r.month = left.month }
            right = r
        }
        guard let (start, leftEnd, leftWarnings) = span(left, text: text) else {
            return unknown(text, "not a valid calendar date")
        }
        warnings += leftWarnings
        var end = leftEnd
        var precision = left.precision
        if let r = right {
            guard let (_, rightEnd, rightWarnings) = span(r, text: text) else {
                return unknown(text, "not a valid calendar date")
            }
            warnings += rightWarnings
            end = rightEnd
            if r.precision.rank < precision.rank { precision = r.precision }
            if end < start {
                warnings.append("date \"\(text)\": the range ends before it starts; kept \(start.iso) only")
                end = leftEnd
            }
        }
        return (EventDate(text: text, start: start, end: end, precision: precision), warnings)
    }

    /// First and last day of a partial date whose year is known.
    static func span(_ p: Partial, text: String) -> (CivilDay, CivilDay, [String])? {
        guard let year = p.year else { return nil }
        if let q = p.quarter {
            let first = (q - 1) * 3 + 1
            guard let s = CivilDay(year: year, month: first, day: 1) else { return nil }
            return (s, CivilDay.endOf(month: first + 2, year: year), [])
        }
        if let season = p.season {
            let (a, b) = season.months
            guard let s = CivilDay(year: year, month: a, day: 1) else { return nil }
            if season == .winter {
                guard year < 9999 else { return nil }
                return (
                    s, CivilDay.endOf(month: b, year: year + 1),
                    ["date \"\(text)\": winter \(year) read as December \(year) to February \(year + 1)"]
                )
            }
            return (s, CivilDay.endOf(month: b, year: year), [])
        }
        guard let month = p.month else {
            guard p.day == nil, let s = CivilDay(year: year, month: 1, day: 1) else { return nil }
            return (s, CivilDay(year: year, month: 12, day: 31)!, [])
        }
        if let day = p.day {
            guard let d = CivilDay(year: year, month: month, day: day) else { return nil }
            return (d, d, [])
        }
        guard let s = CivilDay(year: year, month: month, day: 1) else { return nil }
        return (s, CivilDay.endOf(month: month, year: year), [])
    }

    /// `2014-06-09`, `2014-06`, `2014-06-09/2014-06-12`.
    static func parseISO(_ text: String) -> EventDate? {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2 else { return nil }
        var days: [(CivilDay, CivilDay, DatePrecision)] = []
        for part in parts {
            let u = Array(part.utf8)
            if u.count == 10, let d = CivilDay(iso: String(part)) {
                days.append((d, d, .day))
            } else if u.count == 7, u[4] == UInt8(ascii: "-"), let y = Int(part.prefix(4)),
                let m = Int(part.suffix(2)), let s = CivilDay(year: y, month: m, day: 1)
            {
                days.append((s, CivilDay.endOf(month: m, year: y), .month))
            } else {
                return nil
            }
        }
        let first = days[0], last = days[days.count - 1]
        guard first.0 <= last.1 else { return nil }
        let precision = first.2.rank <= last.2.rank ? first.2 : last.2
        return EventDate(text: text, start: first.0, end: last.1, precision: precision)
    }

    /// `2015年02月18日`, `2015年2月`, `2015年`.
    static func parseJapanese(_ text: String) -> (date: EventDate, warnings: [String]) {
        var numbers: [Int] = []
        var units: [Character] = []
        var current = ""
        for ch in text {
            if ch.isASCII, ch.isNumber {
                current.append(ch)
            } else if ch == "年" || ch == "月" || ch == "日" {
                guard let n = Int(current) else { return unknown(text, "not a recognised date") }
                numbers.append(n)
                units.append(ch)
                current = ""
            } else if ch.isWhitespace {
                continue
            } else {
                return unknown(text, "not a recognised date")
            }
        }
        var p = Partial()
        for (n, unit) in zip(numbers, units) {
            switch unit {
            case "年": p.year = n
            case "月": p.month = n
            default: p.day = n
            }
        }
        guard current.isEmpty, let (s, e, w) = span(p, text: text) else {
            return unknown(text, "not a valid calendar date")
        }
        return (EventDate(text: text, start: s, end: e, precision: p.precision), w)
    }
}
