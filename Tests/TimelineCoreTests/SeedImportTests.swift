import Foundation
import Testing

@testable import TimelineCore

@Suite struct SeedImportTests {
    static let sample = try! SeedDocument.parse(Array(SampleTimeline.text.utf8))

    /// The seed document, which sits in `shared/` beside the repository on the project's machines and in CI.
    static let seedURL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("../shared/seeds/000_cc8b923551d51cc6.txt").standardized

    @Test(
        .enabled(if: FileManager.default.fileExists(atPath: seedURL.path), "the seed document is beside the repository")
    )
    func bundledSampleIsTheSeedByteForByte() throws {
        let seed = try Data(contentsOf: Self.seedURL)
        #expect(Array(seed) == Array(SampleTimeline.text.utf8))
    }

    @Test func sampleHas28EventsAnd29References() {
        let doc = Self.sample
        #expect(doc.entries.count == 28)
        #expect(doc.references.count == 29)
        #expect(doc.references.map(\.number) == Array(1...29))
        // Every reference is cited by some event, and one event cites three.
        let cited = Set(doc.entries.flatMap { $0.fields.references.map(\.number) })
        #expect(cited == Set(1...29))
        let three = doc.entries.filter { $0.fields.references.count == 3 }
        #expect(three.count == 1)
        #expect(three.first?.fields.references.map(\.number) == [17, 18, 19])
        #expect(three.first?.fields.date.text == "February 2 to 3, 2014")
        #expect(doc.entries.filter { $0.fields.references.isEmpty }.map(\.fields.date.text) == ["June 2010"])
    }

    @Test func keepsTheDocumentsMetadata() {
        let meta = Self.sample.meta
        #expect(meta["source"] == "日立システムズ SHIELD Security Research Center")
        #expect(meta["updated"] == "2015-02-18")
        #expect(meta["header"]?.arrayValue?.contains("Hitachi") == true)
        #expect(meta["references"]?.arrayValue?.count == 29)
        #expect(meta["notes"]?.arrayValue?.contains { $0.stringValue?.hasPrefix("※") == true } == true)
    }

    @Test func malformedRangeIsKeptVerbatimWithOneWarningNamingIt() {
        let doc = Self.sample
        let entry = doc.entries.first { $0.fields.date.text == "October 18 to 10, 2012" }
        #expect(entry != nil)
        #expect(entry?.fields.date.start?.iso == "2012-10-18")
        #expect(doc.warnings.count == 1)
        #expect(doc.warnings.first?.message.contains("October 18 to 10, 2012") == true)
        #expect(doc.warnings.first?.line == entry?.line)
    }

    @Test func eventsKeepTheirTextAndReferencesTheirURLs() throws {
        let first = try #require(Self.sample.entries.first)
        #expect(first.fields.date.precision == .year)
        #expect(first.fields.summary.hasPrefix("The American Chamber of Commerce in Japan (ACCJ) published"))
        #expect(first.fields.summary.hasSuffix("[1]"))
        #expect(first.fields.references.first?.urls == ["http://www.asia-strategy.biz/pdfs/accjwhitepaper.pdf"])
        #expect(!first.fields.title.contains("[1]"))
        #expect(first.fields.title.count <= 101)
        let ref29 = Self.sample.references.last!
        #expect(ref29.urls.count == 2)
    }

    @Test func loadsIntoAStateWithDeterministicIDs() throws {
        let time = Timestamp(rfc3339: "2015-02-18T00:00:00Z")!
        let a = Self.sample.proposals(author: "sample", time: time, idSeed: SampleTimeline.idSeed)
        let b = Self.sample.proposals(author: "sample", time: time, idSeed: SampleTimeline.idSeed)
        #expect(a == b)
        var state = TimelineState()
        for p in a { try state.admit(p) }
        #expect(state.events.count == 28)
        #expect(state.meta["updated"] == "2015-02-18")
    }

    @Test func otherDocumentsInTheSameStyleImportWithoutLoss() throws {
        let text = [
            "\u{FEFF}Example Research Office", "Last updated: March 3, 2016", "",
            "•  June 30 to July 2, 2011: Talks across a month end.[1]",
            "•  December 30, 2013 to January 2, 2014: Talks across a year end.[2][3]",
            "l  Summer 2014: A seasonal exercise. [2]",
            "l  Q3 2015: A quarterly report [9]",
            "l  Someday: Nobody knows when.",
            "l  no date here at all",
            "", "References:", "[1] First source, http://example.org/1.",
            "[2] Second source (https://example.org/2)", "[3] Third source", "[3] Third again",
        ].joined(separator: "\r\n")
        let doc = try SeedDocument.parse(Array(text.utf8))
        #expect(doc.entries.count == 5)
        #expect(doc.meta["source"] == "Example Research Office")
        #expect(doc.meta["updated"] == "2016-03-03")
        #expect(doc.entries[0].fields.date.end?.iso == "2011-07-02")
        #expect(doc.entries[1].fields.references.map(\.number) == [2, 3])
        #expect(doc.entries[2].fields.date.precision == .season)
        #expect(doc.entries[3].fields.date.precision == .quarter)
        #expect(doc.entries[3].fields.references.first?.text == "", "a missing reference keeps its number")
        #expect(doc.entries[4].fields.date.precision == .unknown)
        #expect(doc.references[0].urls == ["http://example.org/1"])
        #expect(doc.references[1].urls == ["https://example.org/2"])
        let messages = doc.warnings.map(\.description).joined(separator: "\n")
        #expect(messages.contains("cites [9]"))
        #expect(messages.contains("Someday"))
        #expect(messages.contains("bullet without"))
        #expect(messages.contains("reference [3] is listed again"))
        // Nothing is dropped: the date-less bullet and the repeated reference are kept as notes.
        let notes = doc.meta["notes"]?.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(notes.contains("l  no date here at all"))
        #expect(notes.contains("[3] Third again"))
        #expect(!doc.entries.contains { $0.fields.summary.contains("\r") })
    }

    @Test func invalidUTF8IsRefusedWithItsLine() {
        let bytes = Array("ok line\nsecond\n".utf8) + [0xFF, 0xFE] + Array("\n".utf8)
        #expect {
            try SeedDocument.parse(bytes)
        } throws: { error in
            let e = error as? TimelineError
            return e?.code == .badUTF8 && e?.message.hasPrefix("line 3") == true
        }
    }

    /// Lines split on LF (a CR before it dropped, a leading BOM skipped, a last line without LF kept); a line
    /// that is not UTF-8 or holds a NUL is refused with its number.
    @Test func textIsSplitIntoCheckedLines() throws {
        let text = Array("\u{FEFF}one\r\ntwo\n\nfour é".utf8)
        #expect(try TextLines.split(text) == ["one", "two", "", "four é"])
        #expect(try TextLines.split(Array("a\nb\n".utf8)) == ["a", "b"])
        #expect(try TextLines.split([]) == [])
        #expect(throws: TimelineError.self) { try TextLines.split(Array("a\nb\u{0}c\n".utf8)) }
        do {
            _ = try TextLines.split(Array("a\nb\n".utf8) + [0x00, 0x0A])
            Issue.record("a NUL line was accepted")
        } catch {
            #expect(error.code == .badImport && error.message.hasPrefix("line 3:"), "\(error)")
        }
        do {
            _ = try TextLines.split(Array("ok\n".utf8) + [0xC3, 0x28])
            Issue.record("bad UTF-8 was accepted")
        } catch {
            #expect(error.code == .badUTF8 && error.message.hasPrefix("line 2:"), "\(error)")
        }
    }

    /// The blank test answers as Unicode's white space does, with or without an ASCII byte to settle it early.
    @Test func blankMeansWhiteSpaceOnly() {
        let texts = [
            "", " ", "\t\n\r\u{0B}\u{0C}", "\u{A0}\u{2003}\u{3000}", "\u{85}", " x", "x ", "\u{A0}a", "\u{1C}",
            "\u{600}1", "é", "\u{2003}\u{301}", " \u{301}", "\u{200B}", "\r\n",
        ]
        for text in texts {
            #expect(TextLines.isBlank(text) == text.allSatisfy(\.isWhitespace), "\(text.unicodeScalars.map(\.value))")
        }
    }
}
