import Testing

@testable import TimelineCore

@Suite struct JSONTests {
    @Test func canonicalEncodingSortsKeysAndEscapesMinimally() throws {
        let value: JSON = ["b": 1, "a": ["x\"y\\z\n\u{01}é", true, nil], "A": -9_223_372_036_854_775_808]
        #expect(value.canonicalString == #"{"A":-9223372036854775808,"a":["x\"y\\z\n\u0001é",true,null],"b":1}"#)
    }

    @Test func integersAndLiteralsAreWrittenAsTheirText() {
        for i: Int64 in [0, 7, 9, 10, 99, 100, -1, -9, -10, 1_700_000_000_000, .max, .min, .min + 1] {
            #expect(JSON.int(i).canonicalString == String(i))
        }
        #expect(JSON.array([true, false, nil]).canonicalString == "[true,false,null]")
    }

    /// Keys sort by their UTF-8 bytes, whether compared in place or as sequences.
    @Test func keysSortByTheirUTF8Bytes() {
        let keys = [
            "", "a", "ab", "b", "B", "Z", "a\u{0}", "é", "e\u{301}", "ÿ", "😀", "version", "revision", "tags", "x",
        ]
        for a in keys {
            for b in keys {
                #expect(JSON.utf8Less(a, b) == a.utf8.lexicographicallyPrecedes(b.utf8), "\(a) < \(b)")
            }
        }
        // Precomposed é (C3 A9) sorts after e + combining acute (65 CC 81), though Swift's String < finds them equal.
        #expect(JSON.utf8Less("e\u{301}", "é") && !JSON.utf8Less("é", "e\u{301}"))
    }

    @Test func parsesWhatItWritesBack() throws {
        let text = #"{ "title" : "June 9 to 10, 2011", "n": [1, -2, {"k": "\u00e9\ud83d\ude00\/"}] }"#
        let value = try JSON(parsing: text)
        #expect(value["title"]?.stringValue == "June 9 to 10, 2011")
        #expect(try JSON(parsing: value.canonicalString) == value)
        #expect(value["n"]?.arrayValue?[2]["k"]?.stringValue == "é😀/")
    }

    @Test(arguments: [
        ("1.5", "only integers"),
        ("1e3", "only integers"),
        (#"{"a":1,"a":2}"#, "duplicate key"),
        (#"{"a":1} x"#, "unexpected bytes"),
        (#"{"a":"#, "unexpected end"),
        ("99999999999999999999", "out of 64-bit range"),
        ("012", "leading zero"),
        (#""\ud800""#, "unpaired surrogate"),
        ("\"a\u{01}b\"", "control character"),
        ("", "unexpected end"),
    ])
    func refusesWhatIsNotTheAcceptedSubset(text: String, reason: String) {
        #expect {
            try JSON(parsing: text)
        } throws: { error in
            (error as? JSONParseError)?.reason.contains(reason) == true
        }
    }

    static func parseCanonical(_ text: String, excising key: String = "hash") throws -> (JSON, Range<Int>?) {
        var copy = text
        return try copy.withUTF8 { bytes in
            let result = try JSON.parseCanonical(bytes, excising: key)
            return (result.value, result.excised)
        }
    }

    /// What the canonical parse accepts encodes back to the same bytes: every escape the encoder writes, keys
    /// that sort only by their raw bytes, nesting, the extremes of Int64.
    @Test func canonicalParseAcceptsWhatTheEncoderWrites() throws {
        let values: [JSON] = [
            ["b": 1, "a": ["x\"y\\z\n\r\t\u{08}\u{0C}\u{01}\u{1F}\u{7F}é😀", true, false, nil], "A": .int(.min)],
            ["e\u{301}": 1, "f": 2, "ab": ["": [:], "x": []], "a\u{0}": .int(.max), "\"": -7, "\\": 0],
            ["version": 31, "revision": 3, "hash": "ab", "op": "annotation.add", "tags": ["b1", "x y"]],
            [], "", 0, nil,
        ]
        for value in values {
            let text = value.canonicalString
            let (parsed, _) = try Self.parseCanonical(text)
            #expect(parsed == value, "\(text)")
            #expect(parsed.canonicalString == text)
        }
    }

    /// Each of these parses in the ordinary way, and is refused as not canonical: white space, keys out of order,
    /// escapes the encoder does not write, -0.
    @Test(arguments: [
        #"{"a":1, "b":2}"#, #" {"a":1}"#, #"{"a":1}"# + " ", #"{"b":1,"a":2}"#, #"{"b":1,"B":2}"#,
        #"["\/"]"#, #"["\u0041"]"#, #"["\u000a"]"#, #"["\u001F"]"#, #"["\u00e9"]"#, "[-0]", #"{"a":[1 ,2]}"#,
        #"{"a":{"y":1,"x":2}}"#,
    ])
    func canonicalParseRefusesOtherSpellings(text: String) throws {
        let parsed = try JSON(parsing: text)
        #expect(parsed.canonicalString != text)
        #expect(throws: JSONParseError.self) { try Self.parseCanonical(text) }
    }

    /// The member to excise is found at the top level only, with the comma that joins it to its neighbour.
    @Test func canonicalParseFindsTheTopLevelMemberToExcise() throws {
        func excised(_ text: String) throws -> String? {
            let (_, range) = try Self.parseCanonical(text)
            guard let range else { return nil }
            var bytes = Array(text.utf8)
            bytes.removeSubrange(range)
            return String(decoding: bytes, as: UTF8.self)
        }
        #expect(try excised(#"{"a":1,"hash":"00","op":"x"}"#) == #"{"a":1,"op":"x"}"#)
        #expect(try excised(#"{"a":1,"hash":{"x":[1]}}"#) == #"{"a":1}"#)
        #expect(try excised(#"{"hash":"00"}"#) == "{}")
        #expect(try excised(#"{"a":{"hash":"00"},"b":2}"#) == nil)
        #expect(try excised(#"["hash"]"#) == nil)
    }

    /// The top level as members in order: the same members the dictionary holds, nil for another value, and
    /// keys that only Unicode equates refused as duplicates, as the dictionary does.
    @Test func canonicalMembersComeInTheirOrder() throws {
        func members(_ text: String) throws -> [(key: String, value: JSON)]? {
            var copy = text
            return try copy.withUTF8 { try JSON.parseCanonicalMembers($0, excising: "hash")?.members }
        }
        let value: JSON = ["b": [1, ["y": 2, "x": nil]], "a": "é", "hash": "00", "c": [:]]
        let pairs = try #require(try members(value.canonicalString))
        #expect(pairs.map(\.key) == ["a", "b", "c", "hash"])
        #expect(JSON.object(Dictionary(uniqueKeysWithValues: pairs.map { ($0.key, $0.value) })) == value)
        #expect(try members("[1]") == nil)
        #expect(try members(#""x""#) == nil)
        #expect(
            performing: { try members("{\"e\u{301}\":1,\"é\":2}") },
            throws: {
                ($0 as? JSONParseError)?.reason.contains("duplicate key") == true
            })
        #expect(throws: JSONParseError.self) { try members(#"{"b":1,"a":2}"#) }
        #expect(throws: JSONParseError.self) { try members(#"{"a":1}x"#) }
    }

    /// `parseObject` (PROPOSE, BATCH and JSONL lines) reads what `init(parsing:)` reads, in the order written, and
    /// refuses what it refuses with the same error: duplicates by String equality included, in either order, and
    /// among more members than it compares one by one.
    @Test func objectMembersComeAsWrittenAndRefuseWhatTheParserRefuses() throws {
        let many = (0..<40).map { #""k\#($0)":\#($0)"# }
        let texts = [
            #" {"op":"annotation.add", "text":"x","tags":["a"],"set":{"b":1,"a":2}} "#, "{}", " { } ",
            #"{"b":1,"a":2}"#, #"{"a":1,"a":2}"#, #"{"a":1,"b":2,"a":3}"#, "{\"K\":1,\"\u{212A}\":2}",
            "{\"\u{212A}\":1,\"K\":2}", "{\"e\u{301}\":1,\"é\":2}", #"{"\u0061":1,"a":2}"#, #"{"a":1,"\u0061":2}"#,
            "{" + many.joined(separator: ",") + "}", "{" + (many + [#""k3":0"#]).joined(separator: ",") + "}",
            "{" + (many + [#""k39x":0"#]).joined(separator: ",") + "}", #"{"a":1} x"#, #"{"a":1"#, "[1]", #""x""#,
            "7", " ", "", #"{"a":1.5}"#, #"{"a":{"b":1,"b":2}}"#,
        ]
        for text in texts {
            let ordinary = Result { () throws(JSONParseError) in try JSON(parsing: text) }
            let members = Result { () throws(JSONParseError) in try JSON.parseObject(text) }
            switch (ordinary, members) {
            case (.failure(let a), .failure(let b)): #expect(a == b, "\(text)")
            case (.success(.object(let o)), .success(let m?)):
                #expect(m.pairs.count == o.count, "\(text)")
                #expect(Dictionary(uniqueKeysWithValues: m.pairs.map { ($0.key, $0.value) }) == o, "\(text)")
            case (.success(let value), .success(nil)): #expect(value.objectValue == nil, "\(text)")
            default: Issue.record("the two parses disagree on \(text): \(ordinary) vs \(members)")
            }
        }
        let written = try #require(try JSON.parseObject(#"{"z":1,"a":2,"m":3}"#))
        #expect(written.pairs.map(\.key) == ["z", "a", "m"])
        #expect(written["a"] == 2 && written["q"] == nil)
    }

    /// Strings are scanned eight bytes at a time: a quote, an escape, a control character or a non-ASCII byte at
    /// any place in or across a word must be read as a byte-by-byte reading would, canonical or not.
    @Test func stringsReadTheSameWhereverTheirSpecialByteFalls() throws {
        for length in 0..<20 {
            for place in 0...length {
                let before = String(repeating: "a", count: place)
                let after = String(repeating: "b", count: length - place)
                for (written, meaning) in [
                    (#"\""#, "\""), (#"\\"#, "\\"), (#"\n"#, "\n"), ("é", "é"), ("😀", "😀"), ("~", "~"),
                    (#"\u0001"#, "\u{01}"), ("\u{7F}", "\u{7F}"),
                ] {
                    let text = #"[""# + before + written + after + #"",1]"#
                    let expected = JSON.array([.string(before + meaning + after), 1])
                    #expect(try JSON(parsing: text) == expected, "\(text)")
                    let bytes = Array(text.utf8)
                    let canonical = try bytes.withUnsafeBufferPointer {
                        try JSON.parseCanonical($0, excising: "hash").value
                    }
                    #expect(canonical == expected, "\(text)")
                }
                // A raw control character is refused wherever it falls.
                #expect(throws: JSONParseError.self) { try JSON(parsing: "[\"" + before + "\u{01}" + after + "\"]") }
                #expect(throws: JSONParseError.self) { try JSON(parsing: "[\"" + before + "\t" + after + "\"]") }
            }
        }
    }

    @Test func refusesDeepNestingWithoutRecursingFurther() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONParseError.self) { try JSON(parsing: deep) }
        let ok = String(repeating: "[", count: 32) + String(repeating: "]", count: 32)
        #expect(throws: Never.self) { try JSON(parsing: ok) }
    }

    @Test func refusesInvalidUTF8InStrings() {
        let bytes: [UInt8] = [0x22, 0xC3, 0x28, 0x22]
        #expect(throws: JSONParseError.self) { try JSON(parsingBytes: bytes) }
    }
}

@Suite struct IdentifierTests {
    @Test func ulidRoundTripsAndSortsByTime() throws {
        let early = ULID.generate(at: Timestamp(milliseconds: 1_000))
        let late = ULID.generate(at: Timestamp(milliseconds: 2_000))
        #expect(early < late)
        #expect(early.string.count == 26)
        #expect(ULID(early.string.lowercased()) == early)
        #expect(ULID("8ZZZZZZZZZZZZZZZZZZZZZZZZZ") == nil, "above 2^128")
        #expect(ULID("01ARZ3NDEKTSV4RRFFQ69G5FAU") == nil, "U is not Crockford base32")
        #expect(ULID("01ARZ3NDEKTSV4RRFFQ69G5FAV")?.string == "01ARZ3NDEKTSV4RRFFQ69G5FAV")
    }

    /// Digests are read from their hex in place: exactly 64 hex digits of either case, nothing else.
    @Test func digestsParseOnlySixtyFourHexDigits() {
        let digest = SHA256.hash(Array("x".utf8))
        #expect(Digest(hex: digest.hex) == digest)
        #expect(Digest(hex: digest.hex.uppercased()) == digest)
        #expect(Digest(hex: String(digest.hex.dropLast())) == nil)
        #expect(Digest(hex: digest.hex + "0") == nil)
        #expect(Digest(hex: String(digest.hex.dropLast()) + "g") == nil)
        #expect(Digest(hex: "é" + String(digest.hex.dropFirst(2))) == nil, "a two-byte character in 64 bytes")
        #expect(Digest(hex: "") == nil)
    }

    /// IDs draw their randomness from a per-thread pool: none may repeat, within a thread or across threads.
    @Test func ulidsMintedTogetherNeverRepeat() async {
        let at = Timestamp(milliseconds: 1_700_000_000_000)
        let minted = await withTaskGroup(of: [ULID].self) { group in
            for _ in 0..<4 { group.addTask { (0..<20_000).map { _ in ULID.generate(at: at) } } }
            return await group.reduce(into: []) { $0 += $1 }
        }
        #expect(Set(minted).count == 80_000)
        // The 80 random bits are not stuck: every character position past the time varies.
        for position in 10..<26 {
            #expect(Set(minted.prefix(1_000).map { Array($0.string.utf8)[position] }).count > 16)
        }
    }

    @Test func ulidDigitsFollowTheCrockfordAlphabet() {
        let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ".utf8)
        for (value, char) in alphabet.enumerated() {
            #expect(ULID.encodeDigit(UInt8(value)) == char)
            #expect(ULID.decodeDigit(char) == UInt8(value))
            #expect(ULID.decodeDigit(char | 0x20) == UInt8(value), "lower case")
        }
        for char in "UuÀ!@[`{ ".utf8 { #expect(ULID.decodeDigit(char) == nil) }
        // Aliases and lower case read as their canonical digits.
        #expect(ULID("01arz3ndektsv4rrffq69g5fav")?.string == "01ARZ3NDEKTSV4RRFFQ69G5FAV")
        #expect(ULID("0LARZ3NDEKTSV4RRFFQ69G5FAV")?.string == "01ARZ3NDEKTSV4RRFFQ69G5FAV")
        #expect(ULID("o1ARZ3NDEKTSV4RRFFQ69G5FAV")?.string == "01ARZ3NDEKTSV4RRFFQ69G5FAV")
        #expect(ULID("01ARZ3NDEKTSV4RRFFQ69G5FiV")?.string == "01ARZ3NDEKTSV4RRFFQ69G5F1V")
    }

    @Test func ulidEncodesTimeBigEndian() {
        // The reference example from the ULID spec: 1469918176385 ms → 01ARYZ6S41.
        let id = ULID(milliseconds: 1_469_918_176_385, randomness: [UInt8](repeating: 0, count: 10))
        #expect(id.string.hasPrefix("01ARYZ6S41"))
        #expect(id.string.hasSuffix("0000000000000000"))
    }

    /// The encoder works on two 64-bit halves; this is the spec's definition, a bit at a time.
    @Test func ulidEncodingMatchesTheBitByBitDefinition() {
        func reference(_ bytes: [UInt8]) -> String {
            let alphabet = Array("0123456789ABCDEFGHJKMNPQRSTVWXYZ".utf8)
            var bits: [Bool] = [false, false]
            for byte in bytes { for i in 0..<8 { bits.append((byte >> UInt8(7 - i)) & 1 == 1) } }
            let digits: [UInt8] = (0..<26).map { i in
                var value = 0
                for bit in bits[5 * i..<5 * i + 5] { value = value << 1 | (bit ? 1 : 0) }
                return alphabet[value]
            }
            return String(decoding: digits, as: UTF8.self)
        }
        var generator = SystemRandomNumberGenerator()
        var cases: [[UInt8]] = [[UInt8](repeating: 0, count: 16), [UInt8](repeating: 0xFF, count: 16)]
        cases += (0..<16).map { i in (0..<16).map { $0 == i ? 0x80 : 0 } }  // each byte's top bit alone
        cases += (0..<200).map { _ in (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) } }
        for bytes in cases {
            #expect(ULID(bytes: bytes).string == reference(bytes), "\(bytes)")
            let ms = bytes[0..<6].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            #expect(ULID(milliseconds: ms, randomness: Array(bytes[6...])).string == reference(bytes))
        }
    }

    @Test func shortFormsStartAfterTheTimeAndTypedIDsAreNormalized() {
        let id = "019ECZQW0094EPPCEN5VB98H48"
        #expect(ShortID.tail(of: id) == "94EPPCEN5VB98H48")
        #expect(ShortID.normalize(" 94eppcen5\n") == "94EPPCEN5")
        #expect(ShortID.normalize("o1Il") == "0111")
        #expect(ShortID.normalize("94EPU") == nil)
        #expect(ShortID.normalize("not-an-id") == nil)
        #expect(ShortID.normalize("   ") == nil)
        #expect(ShortID.normalize(id + "0") == nil)
    }

    @Test func sha256UsesLibcrypto() {
        #expect(
            SHA256.hash(Array("abc".utf8)).hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(SHA256.chain(prefix: Array("a".utf8), Array("bc".utf8)) == SHA256.hash(Array("abc".utf8)))
        let h = SHA256.Hasher()
        h.update(Array("ab".utf8))
        h.update(Array("c".utf8))
        #expect(h.finalize() == SHA256.hash(Array("abc".utf8)))
        #expect(SHA256.libraryVersion.hasPrefix("OpenSSL"))
    }

    @Test func timestampsRoundTrip() {
        let t = Timestamp(milliseconds: 1_795_895_942_123)
        #expect(t.rfc3339 == "2026-11-28T19:59:02.123Z")
        #expect(Timestamp(rfc3339: t.rfc3339) == t)
        #expect(Timestamp(rfc3339: "2015-02-18T00:00:00Z")?.rfc3339 == "2015-02-18T00:00:00.000Z")
        #expect(Timestamp(rfc3339: "2015-02-30T00:00:00Z") == nil)
        #expect(Timestamp(rfc3339: "2015-02-18T00:00:00+09:00") == nil)
        #expect(Timestamp(milliseconds: -1).rfc3339 == "1969-12-31T23:59:59.999Z")
    }
}
