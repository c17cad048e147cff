import Testing

@testable import TimelineCore

@Suite struct EventDateTests {
    struct Case: Sendable, CustomTestStringConvertible {
        var text: String
        var start: String?
        var end: String?
        var precision: DatePrecision
        var warns = false
        var testDescription: String { text }
    }

    /// Every date form in the sample document, then the other forms timelines use.
    static let cases: [Case] = [
        Case(text: "2009", start: "2009-01-01", end: "2009-12-31", precision: .year),
        Case(text: "June 2010", start: "2010-06-01", end: "2010-06-30", precision: .month),
        Case(text: "November 1, 2010", start: "2010-11-01", end: "2010-11-01", precision: .day),
        Case(text: "June 9 to 10, 2011", start: "2011-06-09", end: "2011-06-10", precision: .day),
        Case(text: "September 2011", start: "2011-09-01", end: "2011-09-30", precision: .month),
        Case(text: "March 22 to 23, 2012", start: "2012-03-22", end: "2012-03-23", precision: .day),
        Case(text: "October 18 to 10, 2012", start: "2012-10-18", end: "2012-10-18", precision: .day, warns: true),
        Case(text: "December 5 to 12, 2013", start: "2013-12-05", end: "2013-12-12", precision: .day),
        Case(text: "September 16 and 17, 2014", start: "2014-09-16", end: "2014-09-17", precision: .day),
        Case(text: "February 2014", start: "2014-02-01", end: "2014-02-28", precision: .month),
        Case(text: "February 2012", start: "2012-02-01", end: "2012-02-29", precision: .month),
        Case(text: "June 30 to July 2, 2011", start: "2011-06-30", end: "2011-07-02", precision: .day),
        Case(text: "December 30, 2013 to January 2, 2014", start: "2013-12-30", end: "2014-01-02", precision: .day),
        Case(text: "June to August 2011", start: "2011-06-01", end: "2011-08-31", precision: .month),
        Case(text: "2009 to 2011", start: "2009-01-01", end: "2011-12-31", precision: .year),
        Case(text: "June 9-10, 2011", start: "2011-06-09", end: "2011-06-10", precision: .day),
        Case(text: "June 9–10, 2011", start: "2011-06-09", end: "2011-06-10", precision: .day),
        Case(text: "9 June 2011", start: "2011-06-09", end: "2011-06-09", precision: .day),
        Case(text: "Sept. 3, 2013", start: "2013-09-03", end: "2013-09-03", precision: .day),
        Case(text: "Summer 2014", start: "2014-06-01", end: "2014-08-31", precision: .season),
        Case(text: "winter 2014", start: "2014-12-01", end: "2015-02-28", precision: .season, warns: true),
        Case(text: "Q3 2014", start: "2014-07-01", end: "2014-09-30", precision: .quarter),
        Case(text: "third quarter of 2014", start: "2014-07-01", end: "2014-09-30", precision: .quarter),
        Case(text: "mid-2013", start: "2013-01-01", end: "2013-12-31", precision: .year, warns: true),
        Case(text: "2014-06-09", start: "2014-06-09", end: "2014-06-09", precision: .day),
        Case(text: "2014-06", start: "2014-06-01", end: "2014-06-30", precision: .month),
        Case(text: "2015年02月18日", start: "2015-02-18", end: "2015-02-18", precision: .day),
        Case(text: "February 30, 2014", start: nil, end: nil, precision: .unknown, warns: true),
        Case(text: "sometime soon", start: nil, end: nil, precision: .unknown, warns: true),
    ]

    @Test(arguments: cases)
    func parses(_ c: Case) {
        let (date, warnings) = EventDate.parse(c.text)
        #expect(date.text == c.text, "the text is kept verbatim")
        #expect(date.start?.iso == c.start)
        #expect(date.end?.iso == c.end)
        #expect(date.precision == c.precision)
        #expect(warnings.isEmpty == !c.warns, "\(warnings)")
    }

    @Test func malformedRangeWarningNamesTheText() {
        let (_, warnings) = EventDate.parse("October 18 to 10, 2012")
        #expect(warnings.count == 1)
        #expect(warnings[0].contains("October 18 to 10, 2012"))
    }

    @Test func civilDayArithmetic() {
        for days: Int64 in [-719_468, -1, 0, 1, 11_016, 20_000, 2_932_896] {
            #expect(CivilDay(daysSinceEpoch: days).daysSinceEpoch == days)
        }
        #expect(CivilDay(daysSinceEpoch: 0).iso == "1970-01-01")
        #expect(CivilDay(year: 2000, month: 2, day: 29) != nil)
        #expect(CivilDay(year: 1900, month: 2, day: 29) == nil)
    }
}
