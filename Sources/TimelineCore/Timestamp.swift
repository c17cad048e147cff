/// A point in time in whole milliseconds since the Unix epoch (UTC). Written as RFC 3339 with
/// milliseconds, e.g. `2026-11-28T19:59:02.123Z`, so that logs read well and sort as text.
public struct Timestamp: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let milliseconds: Int64

    public init(milliseconds: Int64) { self.milliseconds = milliseconds }

    public static func < (lhs: Timestamp, rhs: Timestamp) -> Bool { lhs.milliseconds < rhs.milliseconds }

    public var description: String { rfc3339 }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, always 24 characters for years 0000–9999.
    public var rfc3339: String {
        let ms = milliseconds
        let days = ms >= 0 ? ms / 86_400_000 : (ms - 86_399_999) / 86_400_000
        let inDay = ms - days * 86_400_000
        let day = CivilDay(daysSinceEpoch: days)
        let h = inDay / 3_600_000, m = inDay / 60_000 % 60, s = inDay / 1000 % 60, f = inDay % 1000
        guard (0...9999).contains(day.year) else {
            return "\(day.iso)T\(pad(h, 2)):\(pad(m, 2)):\(pad(s, 2)).\(pad(f, 3))Z"
        }
        // Written digit by digit, straight into the string's storage (a byte array first cost a second allocation):
        // every edit is stamped, stored and hashed with one of these.
        return String(unsafeUninitializedCapacity: 24) { out in
            Self.write(day: day, h, m, s, f, into: out)
            return 24
        }
    }

    private static func write(
        day: CivilDay, _ h: Int64, _ m: Int64, _ s: Int64, _ f: Int64, into out: UnsafeMutableBufferPointer<UInt8>
    ) {
        func put(_ value: Int64, _ at: Int, _ width: Int) {
            var v = value
            for i in stride(from: at + width - 1, through: at, by: -1) {
                out[i] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
            }
        }
        put(Int64(day.year), 0, 4)
        put(Int64(day.month), 5, 2)
        put(Int64(day.day), 8, 2)
        put(h, 11, 2)
        put(m, 14, 2)
        put(s, 17, 2)
        put(f, 20, 3)
        out[4] = UInt8(ascii: "-")
        out[7] = UInt8(ascii: "-")
        out[10] = UInt8(ascii: "T")
        out[13] = UInt8(ascii: ":")
        out[16] = UInt8(ascii: ":")
        out[19] = UInt8(ascii: ".")
        out[23] = UInt8(ascii: "Z")
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.fff]Z` (UTC only: the log never stores local times).
    public init?(rfc3339 text: String) {
        let u = Array(text.utf8)
        guard u.count >= 20, u[4] == UInt8(ascii: "-"), u[7] == UInt8(ascii: "-"), u[10] == UInt8(ascii: "T"),
            u[13] == UInt8(ascii: ":"), u[16] == UInt8(ascii: ":"), u.last == UInt8(ascii: "Z"),
            let y = digits(u, 0, 4), let mo = digits(u, 5, 2), let d = digits(u, 8, 2),
            let h = digits(u, 11, 2), let mi = digits(u, 14, 2), let s = digits(u, 17, 2),
            let day = CivilDay(year: Int(y), month: Int(mo), day: Int(d)), h < 24, mi < 60, s < 60
        else { return nil }
        var fraction: Int64 = 0
        if u.count > 20 {
            guard u[19] == UInt8(ascii: "."), u.count == 24, let f = digits(u, 20, 3) else { return nil }
            fraction = f
        } else if u.count != 20 {
            return nil
        }
        milliseconds = day.daysSinceEpoch * 86_400_000 + h * 3_600_000 + mi * 60_000 + s * 1000 + fraction
    }
}

private func pad(_ value: Int64, _ width: Int) -> String {
    let s = String(value)
    return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
}

private func digits(_ u: [UInt8], _ start: Int, _ count: Int) -> Int64? {
    var value: Int64 = 0
    for i in start..<(start + count) {
        guard u[i] >= UInt8(ascii: "0"), u[i] <= UInt8(ascii: "9") else { return nil }
        value = value * 10 + Int64(u[i] - UInt8(ascii: "0"))
    }
    return value
}

/// A day in the proleptic Gregorian calendar.
public struct CivilDay: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let year: Int
    public let month: Int
    public let day: Int

    public init?(year: Int, month: Int, day: Int) {
        guard (1...12).contains(month), day >= 1, day <= CivilDay.daysIn(month: month, year: year),
            (0...9999).contains(year)
        else { return nil }
        self.year = year
        self.month = month
        self.day = day
    }

    /// Parses `YYYY-MM-DD`.
    public init?(iso text: String) {
        let u = Array(text.utf8)
        guard u.count == 10, u[4] == UInt8(ascii: "-"), u[7] == UInt8(ascii: "-"),
            let y = digits(u, 0, 4), let m = digits(u, 5, 2), let d = digits(u, 8, 2)
        else { return nil }
        self.init(year: Int(y), month: Int(m), day: Int(d))
    }

    public static func isLeap(_ year: Int) -> Bool { (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 }

    public static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return isLeap(year) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// The last day of a month.
    public static func endOf(month: Int, year: Int) -> CivilDay {
        CivilDay(year: year, month: month, day: daysIn(month: month, year: year))!
    }

    // Howard Hinnant's days-from-civil algorithms.
    public var daysSinceEpoch: Int64 {
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let m = Int64(month)
        let doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    public init(daysSinceEpoch z0: Int64) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        year = Int(yoe + era * 400 + (m <= 2 ? 1 : 0))
        month = Int(m)
        day = Int(d)
    }

    /// `YYYY-MM-DD`.
    public var iso: String { "\(pad(Int64(year), 4))-\(pad(Int64(month), 2))-\(pad(Int64(day), 2))" }
    public var description: String { iso }

    public static func < (lhs: CivilDay, rhs: CivilDay) -> Bool {
        (lhs.year, lhs.month, lhs.day) < (rhs.year, rhs.month, rhs.day)
    }
}
