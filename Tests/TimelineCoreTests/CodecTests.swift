import Testing

@testable import TimelineCore

@Suite struct CodecTests {
    let t = Timestamp(milliseconds: 1_700_000_000_000)

    func sampleState() throws -> TimelineState {
        let doc = try SeedDocument.parse(Array(SampleTimeline.text.utf8))
        var state = TimelineState()
        for p in doc.proposals(author: "sample", time: t, idSeed: "codec") { try state.admit(p) }
        let first = state.events.keys.sorted()[0]
        let second = state.events.keys.sorted()[1]
        let note = AnnotationID(ULID.derived(at: t, seed: "n1"))
        let gone = AnnotationID(ULID.derived(at: t, seed: "n2"))
        for p in [
            Proposal(
                event: first, change: .addAnnotation(note, text: "Check [1]", tags: ["todo"]), base: 1, author: "ana",
                time: t),
            Proposal(
                event: first, change: .addAnnotation(gone, text: "wrong", tags: []), base: 1, author: "ben", time: t),
            Proposal(event: first, change: .retractAnnotation(gone), base: 3, author: "ben", time: t),
            Proposal(
                event: first, change: .updateEvent(EventPatch(addTags: ["cyber", "diplomacy"])), base: 4, author: "ana",
                time: t),
            Proposal(event: second, change: .deleteEvent, base: 1, author: "ana", time: t),
        ] {
            try state.admit(p)
        }
        return state
    }

    @Test func proposalsRoundTripThroughTheirJSON() throws {
        let state = try sampleState()
        for view in state.events.values.map({ e in
            EventView(event: e, annotations: state.annotations.values.filter { $0.event == e.id })
        }) {
            for line in JSONLines.exportLines(view) {
                let p = try EditCodec.decodeProposal(
                    try JSON(parsing: line), author: "x", time: t, allowAuthorFields: true)
                guard case .object(var o) = EditCodec.proposalJSON(p) else { return }
                // What was written is what is read back (author, time and base are added by decoding).
                let written = try JSON(parsing: line).objectValue!
                for (k, v) in written { #expect(o.removeValue(forKey: k) == v, "\(k)") }
            }
        }
    }

    @Test func editsRoundTripWithTheirHash() throws {
        let p = Proposal(
            event: EventID(ULID.derived(at: t, seed: "e")),
            change: .updateEvent(EventPatch(title: "T", date: EventDate(parsing: "Q3 2014"), removeTags: ["x"])),
            base: 3,
            author: "ana", time: t)
        let (edit, body) = Edit.chained(after: Genesis.hash(dataset: "d"), version: 9, revision: 4, proposal: p)
        #expect(edit.hash == SHA256.chain(prefix: Genesis.hash(dataset: "d").bytes, body))
        let decoded = try EditCodec.decodeEdit(EditCodec.json(edit))
        #expect(decoded == edit)
        #expect(try EditCodec.decodeStored(body: body, hash: edit.hash) == edit)
        // A stored body read for its proposal alone (an annotation from the row that added it): the same proposal.
        #expect(try EditCodec.decodeStoredProposal(body: body) == p)
        let add = Proposal(
            event: p.event, change: .addAnnotation(AnnotationID(ULID.derived(at: t, seed: "a")), text: "n", tags: []),
            base: 1, author: "ben", time: t)
        let addBody = EditCodec.canonicalBody(version: 10, revision: 5, proposal: add)
        #expect(try EditCodec.decodeStoredProposal(body: addBody).addedAnnotation == add.addedAnnotation)
        #expect(throws: TimelineError.self) { try EditCodec.decodeStoredProposal(body: Array("[1]".utf8)) }
    }

    @Test func fastEncodersWriteExactlyTheCanonicalJSON() throws {
        let state = try sampleState()
        for a in state.annotations.values { #expect(a.canonicalBytes == a.json.canonicalBytes) }
        let event = state.events.keys.sorted()[0]
        for (text, tags, retracted, author) in [
            ("plain", [], false, "ana"), ("t \"q\" \\ \n\u{01}é", ["a", "b\"", "ü"], true, "zoë@office-b"),
            ("", ["only"], false, ""),
        ] {
            let a = Annotation(
                id: AnnotationID(ULID.generate(at: t)), event: event, author: author, text: text, tags: tags,
                created: t, retracted: retracted)
            #expect(a.canonicalBytes == a.json.canonicalBytes, "\(a)")
        }
        let id = state.events.keys.sorted()[0]
        let changes: [Change] = [
            .createEvent(
                EventFields(date: EventDate(parsing: "June 9 to 10, 2011"), title: "t \"q\" \\ \n", summary: "ü")),
            .updateEvent(
                EventPatch(
                    title: "x", references: [Reference(number: 2, text: "r", urls: ["http://a"])], addTags: ["k"])),
            .deleteEvent,
            .addAnnotation(AnnotationID(ULID.derived(at: t, seed: "a")), text: "\u{01}", tags: ["z", "a"]),
            .retractAnnotation(AnnotationID(ULID.derived(at: t, seed: "a"))), .setMeta(["k": ["nested": [1, 2]]]),
            // The body is written before its version and revision are known (EditCodec.BodyTemplate): keys of
            // those names elsewhere in the edit must not take their places.
            .setMeta(["revision": 5, "version": "\"version\":"]),
            .addAnnotation(AnnotationID(ULID.derived(at: t, seed: "b")), text: #"{"revision":1}"#, tags: []),
            // annotation.add has its own writer (EditCodec.writeAddedAnnotationBody).
            .addAnnotation(AnnotationID(ULID.derived(at: t, seed: "c")), text: "t \"q\" \\ \n é", tags: ["b\"", "ü"]),
            .addAnnotation(AnnotationID(ULID.derived(at: t, seed: "d")), text: "", tags: ["only"]),
        ]
        for (index, change) in changes.enumerated() {
            let author = index % 2 == 0 ? "ana" : "zoë \"b\"@office"
            for (event, base) in [(change.operation == .timelineMeta ? nil : id, Int64(2)), (nil, -1)] {
                let p = Proposal(event: event, change: change, base: base, author: author, time: t)
                guard case .object(var o) = EditCodec.proposalJSON(p) else { return }
                for (version, revision) in [(7, 3), (1, 0), (1_000_000_007, 123_456), (Int64.max, Int64.max)] {
                    o["version"] = .int(Int64(version))
                    o["revision"] = .int(Int64(revision))
                    let body = EditCodec.canonicalBody(version: Int64(version), revision: Int64(revision), proposal: p)
                    #expect(body == JSON.object(o).canonicalBytes, "\(change)")
                    #expect(EditCodec.BodyTemplate(p).body(version: Int64(version), revision: Int64(revision)) == body)
                }
            }
        }
    }

    /// An edit of every kind, chained, with the body each hash covers: text full of JSON's own characters, keys
    /// named "hash" below the top level, escapes short and long.
    func chainedEditsOfEveryKind() -> [(edit: Edit, body: [UInt8])] {
        let id = EventID(ULID.derived(at: t, seed: "e"))
        let note = AnnotationID(ULID.derived(at: t, seed: "a"))
        let changes: [Change] = [
            .createEvent(
                EventFields(
                    date: EventDate(parsing: "June 9 to 10, 2011"), title: #"t "q", {x} [y] \ "hash":1"#,
                    summary: "ü\n", references: [Reference(number: 2, text: "r", urls: ["http://a"])],
                    tags: ["a,b", "}"])),
            .updateEvent(
                EventPatch(
                    title: "x", date: EventDate(parsing: "Q3 2014"),
                    references: [Reference(number: 2, text: "r", urls: ["http://a"])], addTags: ["k"],
                    removeTags: ["}"])),
            .deleteEvent,
            .addAnnotation(note, text: #"\", "hash":"x"}"#, tags: ["z", "a"]),
            .updateAnnotation(note, AnnotationPatch(text: "tab\there\r\n", addTags: ["q"])),
            .retractAnnotation(note),
            .setMeta(["k": ["nested": [1, 2, ["hash": "}"]]], "c": "\u{01}", "hash": 1, "zz": nil]),
        ]
        var previous = Genesis.hash(dataset: "d")
        return changes.enumerated().map { n, change in
            let p = Proposal(
                event: change.operation == .timelineMeta ? nil : id, change: change, base: 2, author: "ana", time: t)
            let chained = Edit.chained(after: previous, version: Int64(n + 1), revision: 3, proposal: p)
            previous = chained.0.hash
            return chained
        }
    }

    /// PULL splices the hash into the stored body instead of decoding and encoding it: the bytes must be exactly
    /// those of `EditCodec.json`, for every kind of edit and for text full of JSON's own characters.
    @Test func splicingTheHashIntoAStoredBodyGivesTheWireJSON() throws {
        for (edit, body) in chainedEditsOfEveryKind() {
            #expect(EditCodec.wireBytes(body: body, hash: edit.hash) == EditCodec.json(edit).canonicalBytes)
        }
        let h = Digest.zero
        let hex = h.hex
        #expect(EditCodec.wireBytes(body: Array("{}".utf8), hash: h) == Array(#"{"hash":"\#(hex)"}"#.utf8))
        #expect(
            EditCodec.wireBytes(body: Array(#"{"a":[1,{"b":"}"}]}"#.utf8), hash: h)
                == Array(#"{"a":[1,{"b":"}"}],"hash":"\#(hex)"}"#.utf8))
        #expect(
            EditCodec.wireBytes(body: Array(#"{"z":1}"#.utf8), hash: h) == Array(#"{"hash":"\#(hex)","z":1}"#.utf8))
        // Not the shape of a stored body: the caller decodes instead.
        for odd in [#"{"h\u0061sh":1}"#, #"{"hash":1}"#, #"{"a":1"#, "[]", #"{"a" 1}"#, #"{"a":"x}"#] {
            #expect(EditCodec.wireBytes(body: Array(odd.utf8), hash: h) == nil, "\(odd)")
        }
    }

    /// A pulling client decodes each line as canonical, from its members in order (`decodeWireEdit`): for every
    /// kind of edit that gives what the general decoder gives, and the line without its hash member is the body.
    @Test func wireLinesDecodeAsTheGeneralDecoderDoesAndGiveTheirBody() throws {
        let edits = chainedEditsOfEveryKind()
        for (edit, body) in edits {
            var line = EditCodec.json(edit).canonicalBytes
            let (decoded, member) = try line.withUnsafeBufferPointer { try EditCodec.decodeWireEdit($0) }
            #expect(decoded == edit)
            #expect(try decoded == EditCodec.decodeEdit(JSON(parsingBytes: line)))
            line.removeSubrange(member)
            #expect(line == body)
        }
        // What the general decoder refuses, the wire decoder refuses with the same code and message: also unknown
        // members before and after the known ones, and more members than the wire decoder tracks in place (64).
        // The deletion (version 3).
        let base = String(decoding: EditCodec.json(edits[2].edit).canonicalBytes, as: UTF8.self)
        let many = (10..<80).map { #""x\#($0)":\#($0)"# }.joined(separator: ",")
        for (from, to) in [
            (#""base":2"#, #""base":2,"bogus":1"#), (#""version":3"#, #""version":0"#),
            (#""op":"event.delete""#, #""op":"event.purge""#), ("{", #"{"aaa":1,"#),
            (#""version":3"#, #""version":3,\#(many)"#), (#""version":3"#, #""version":3,"x":1"#),
        ] {
            let bad = base.replacingOccurrences(of: from, with: to)
            var general: TimelineError?
            do { _ = try EditCodec.decodeEdit(JSON(parsing: bad)) } catch let e as TimelineError { general = e }
            var text = bad
            #expect(
                performing: { try text.withUTF8 { try EditCodec.decodeWireEdit($0) } },
                throws: { error in
                    let wire = error as? TimelineError
                    return general != nil && wire?.code == general?.code && wire?.message == general?.message
                })
        }
    }

    @Test func exportImportGivesTheIdenticalStateHash() throws {
        let state = try sampleState()
        var lines: [String] = []
        if let m = JSONLines.exportMeta(state.meta) { lines.append(m) }
        for id in state.events.keys.sorted() {
            let view = EventView(
                event: state.events[id]!, annotations: state.annotations.values.filter { $0.event == id })
            lines += JSONLines.exportLines(view)
        }
        let parsed = try JSONLines.parse(
            Array(lines.joined(separator: "\n").utf8), author: "importer", time: t, trusted: true)
        var rebuilt = TimelineState()
        for p in parsed.proposals { try rebuilt.admit(p) }
        #expect(rebuilt.stateHash == state.stateHash)
        #expect(rebuilt.events.count == 28)
        #expect(rebuilt.annotations.count == 2)
        // And a change shows in the hash.
        rebuilt.events[rebuilt.events.keys.sorted()[3]]!.title = "changed"
        #expect(rebuilt.stateHash != state.stateHash)
    }

    @Test(arguments: [
        (
            #"{"op":"event.create","date":"2009","title":"ok"}"# + "\n" + #"{"op":"event.create","date":"2009""#,
            "line 2", TimelineError.Code.badJSON
        ),
        (#"{"op":"event.explode","event":"01ARZ3NDEKTSV4RRFFQ69G5FAV"}"#, "line 1", .unknownOperation),
        (
            "\n\n" + #"{"op":"event.create","event":"01ARZ3NDEKTSV4RRFFQ69G5FAV","date":"2009","title":"a"}"# + "\n"
                + #"{"op":"event.create","event":"01ARZ3NDEKTSV4RRFFQ69G5FAV","date":"2010","title":"b"}"#, "line 4",
            .duplicateID
        ),
        (
            #"{"op":"annotation.add","event":"01ARZ3NDEKTSV4RRFFQ69G5FAV","annotation":"01ARZ3NDEKTSV4RRFFQ69G5FAW","text":"x"}"#
                + "\n"
                + #"{"op":"annotation.add","event":"01ARZ3NDEKTSV4RRFFQ69G5FAV","annotation":"01ARZ3NDEKTSV4RRFFQ69G5FAW","text":"y"}"#,
            "line 2", .duplicateID
        ),
        (#"{"op":"event.create","date":"2009","title":"a","colour":"red"}"#, "line 1", .badField),
        (#"{"op":"event.update","event":"01ARZ3NDEKTSV4RRFFQ69G5FAV","base":1}"#, "line 1", .badField),
        (#"{"op":"annotation.add","event":"nope","text":"x"}"#, "line 1", .badField),
        (
            #"{"op":"annotation.add","event":"01ARZ3NDEKTSV4RRFFQ69G5FAV","text":"x","tags":["two words"]}"#, "line 1",
            .badField
        ),
        (
            #"{"op":"event.update","event":"01ARZ3NDEKTSV4RRFFQ69G5FAV","base":-1,"set":{"title":"x"}}"#, "line 1",
            .badField
        ),
        (#"{"op":"event.create","date":"2009","title":"a\u0000b"}"#, "line 1", .badField),
    ])
    func badLinesAreRefusedWithTheirLineNumber(text: String, line: String, code: TimelineError.Code) {
        #expect {
            try JSONLines.parse(Array(text.utf8), author: "a", time: t, trusted: false)
        } throws: { error in
            guard let e = error as? TimelineError else { return false }
            return e.code == code && e.message.hasPrefix(line + ":")
        }
    }

    /// The text check reads the string's bytes in place: C0 controls other than tab, newline and carriage return are
    /// refused with the field named, wherever they sit in the text, and multi-byte characters pass.
    @Test func controlCharactersInTextAreRefusedWithTheFieldNamed() throws {
        func refusal(_ text: String) throws -> TimelineError? {
            let line = JSON.object([
                "op": "annotation.add", "event": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "text": .string(text),
            ])
            do {
                _ = try EditCodec.decodeProposal(line, author: "a", time: t)
                return nil
            } catch { return error }
        }
        // Eight bytes are read at a time: every place in and across a word.
        let placed = (0..<20).map {
            String(repeating: "x", count: $0) + "\u{1F}" + String(repeating: "y", count: 19 - $0)
        }
        let allowed = (1..<20).map { String(repeating: "x", count: $0) + "\t\r\n" + String(repeating: "y", count: $0) }
        for bad in ["\u{0}", "a\u{01}", "é\u{1F}é", String(repeating: "x", count: 100) + "\u{7}"] + placed {
            let error = try refusal(bad)
            #expect(error?.code == .badField && error?.message == "field \"text\" contains control characters")
        }
        for good in ["a\tb\nc\r", "é😀", "\u{7F}"] + allowed { #expect(try refusal(good) == nil) }
    }

    @Test func unknownFieldsAreNamedAndKnownOnesAreNot() throws {
        func refusal(_ text: String) throws -> String? {
            do {
                _ = try EditCodec.decodeProposal(try JSON(parsing: text), author: "a", time: t)
                return nil
            } catch let error as TimelineError { return error.message }
        }
        let event = #""event":"01ARZ3NDEKTSV4RRFFQ69G5FAV""#
        #expect(try refusal(#"{"op":"annotation.add",\#(event),"text":"x","tags":null,"base":0}"#) == nil)
        // Every known field is read once however often it is asked for; the first unknown one (sorted) is named.
        #expect(
            try refusal(#"{"op":"annotation.add",\#(event),"text":"x","zeta":1,"alpha":null}"#)
                == #"unknown field "alpha""#)
        #expect(try refusal(#"{"op":"annotation.add",\#(event),"text":"x","version":3}"#) == nil)
        #expect(
            try refusal(#"{"op":"event.update",\#(event),"set":{"title":"x","colour":"red"}}"#)
                == #"unknown field "set.colour""#)
        // Tab, newline and carriage return are text; other C0 controls are not, wherever they are.
        #expect(try refusal(#"{"op":"annotation.add",\#(event),"text":"a\tb\nc\r"}"#) == nil)
        #expect(try refusal(#"{"op":"annotation.add",\#(event),"text":"é\u001f"}"#)?.contains("control") == true)
    }

    @Test func tagsAreOneWordOfPrintableText() {
        for tag in ["b1", "a-b_c.d", "~", "café", "東京", String(repeating: "x", count: FieldLimits.tag)] {
            #expect(Tags.isValid(tag), "\(tag)")
        }
        for tag in ["", "two words", "a\tb", "a\u{7F}", "a\u{00A0}b", "a\u{2003}", String(repeating: "é", count: 33)] {
            #expect(!Tags.isValid(tag), "\(tag.unicodeScalars.map(\.value))")
        }
    }

    @Test func textThatIsOnlyWhiteSpaceIsEmpty() throws {
        func add(_ text: String) throws -> Proposal {
            let json: JSON = ["op": "annotation.add", "event": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "text": .string(text)]
            return try EditCodec.decodeProposal(json, author: "a", time: t)
        }
        for text in ["   ", "\n", "\u{3000}", "\u{00A0} "] {
            #expect(throws: TimelineError.self, "\(text.unicodeScalars.map(\.value))") { try add(text) }
        }
        for text in [" x", "x", "é", "\u{3000}x"] { #expect(throws: Never.self) { try add(text) } }
    }

    @Test func checkingKeepsOnlyTheNumbersOfLinesThatHoldEdits() throws {
        let add = #"{"op":"annotation.add","event":"01ARZ3NDEKTSV4RRFFQ69G5FAV","text":"x"}"#
        #expect(try JSONLines.check(["", add, "  ", add, add], author: "a", time: t, trusted: false) == [2, 4, 5])
        #expect(throws: TimelineError.self) {
            try JSONLines.check([add, "{"], author: "a", time: t, trusted: false)
        }
    }

    /// `timeline batch` checks a document in runs at the same time and merges them: whatever the split, the
    /// answer (or the first bad line's error, a repeated ID included) must be the one pass's.
    @Test func runsCheckedApartMergeIntoTheOnePassAnswer() throws {
        let ev = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
        func add(_ id: String? = nil) -> String {
            #"{"op":"annotation.add","event":"\#(ev)","text":"x""# + (id.map { #","annotation":"\#($0)""# } ?? "") + "}"
        }
        let a = "01ARZ3NDEKTSV4RRFFQ69G5FA1"
        let b = "01ARZ3NDEKTSV4RRFFQ69G5FA2"
        let create = #"{"op":"event.create","event":"\#(ev)","date":"2009","title":"t"}"#
        let documents: [[String]] = [
            [add(), "", add(a), create, "  ", add(b), add(), add(), add()],
            [add(), add(a), add(), add(), add(), add(), add(), add(a), add()],  // repeated ID across runs
            [add(), add(a), add(), add(), "{", add(), add(), add(a), add()],  // bad line before the repeat
            [add(), add(a), add(), add(a), add(), add(), "{", add(), add()],  // repeat before the bad line
            [create, add(), add(), add(), add(), create, add(), add(), "[]"],  // event created twice
            [add(), add(), add(), add(), add(), add(), add(), add(), "{"],
        ]
        for lines in documents {
            let onePass = Result { () throws(TimelineError) in
                try JSONLines.check(lines, author: "a", time: t, trusted: false)
            }
            for cuts in [[4], [1, 2], [3, 6], [8], [2, 5, 7], [0, 9]] {
                let bounds = [0] + cuts + [lines.count]
                let runs = zip(bounds, bounds.dropFirst()).map { from, to in
                    JSONLines.check(lines[from..<to], author: "a", time: t, trusted: false)
                }
                let merged = Result { () throws(TimelineError) in try JSONLines.merged(runs) }
                switch (onePass, merged) {
                case (.success(let x), .success(let y)): #expect(x == y, "\(cuts)")
                case (.failure(let x), .failure(let y)): #expect("\(x)" == "\(y)", "\(cuts)")
                default: Issue.record("\(cuts): one pass \(onePass), merged \(merged)")
                }
            }
        }
    }

    @Test func invalidUTF8LineIsRefused() {
        let bytes = Array(#"{"op":"event.create","date":"2009","title":"ok"}"#.utf8) + [0x0A, 0xC3, 0x28, 0x0A]
        #expect {
            try JSONLines.parse(bytes, author: "a", time: t, trusted: false)
        } throws: {
            ($0 as? TimelineError)?.code == .badUTF8 && ($0 as? TimelineError)?.message.hasPrefix("line 2") == true
        }
    }

    @Test func untrustedLinesCannotForgeAuthorOrTime() throws {
        let line = #"{"op":"event.create","date":"2009","title":"a","author":"mallory","time":"2001-01-01T00:00:00Z"}"#
        let trusted = try JSONLines.parse(Array(line.utf8), author: "ana", time: t, trusted: true)
        #expect(trusted.proposals[0].author == "mallory")
        let untrusted = try JSONLines.parse(Array(line.utf8), author: "ana", time: t, trusted: false)
        #expect(untrusted.proposals[0].author == "ana")
        #expect(untrusted.proposals[0].time == t)
    }

    /// Tags are a set in byte order; a list in that order already comes back as it is.
    @Test func tagsAreNormalizedToSortedUniqueBytes() {
        #expect(Tags.normalized([]) == [])
        #expect(Tags.normalized(["b"]) == ["b"])
        #expect(Tags.normalized(["b", "a", "b"]) == ["a", "b"])
        #expect(Tags.normalized(["a", "a"]) == ["a"])
        #expect(Tags.normalized(["a", "b", "b"]) == ["a", "b"])
        // Byte order, not Swift's String order: "Z" (0x5A) before "a" (0x61), "z" before "é" (0xC3 0xA9).
        #expect(Tags.normalized(["é", "a", "Z", "z"]) == ["Z", "a", "z", "é"])
        #expect(Tags.normalized(["Z", "a", "z", "é"]) == ["Z", "a", "z", "é"])
        #expect(Tags.normalized(["a", "Z"]) == ["Z", "a"])
    }
}
