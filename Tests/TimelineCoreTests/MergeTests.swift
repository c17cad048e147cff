import Testing

@testable import TimelineCore

/// The three-way merge, exercised through `TimelineState.admit` exactly as a store admits proposals.
@Suite struct MergeTests {
    let id = EventID(ULID.derived(at: Timestamp(milliseconds: 0), seed: "merge-event"))
    let t = Timestamp(milliseconds: 1_700_000_000_000)

    /// A state holding one event at revision 1, plus its log so that stale proposals can be merged.
    struct Fixture {
        var state = TimelineState()
        var log: [Edit] = []

        mutating func admit(_ p: Proposal) throws {
            let applied = try state.admit(p) { event, base in
                log.filter { $0.event == event && $0.revision > base }
            }
            log.append(Edit(version: state.version, revision: applied.revision, proposal: p, hash: .zero))
        }
    }

    func fixture() throws -> Fixture {
        var f = Fixture()
        try f.admit(
            Proposal(
                event: id,
                change: .createEvent(
                    EventFields(date: EventDate(parsing: "June 2010"), title: "Old title", summary: "Old", tags: ["a"])),
                base: 0, author: "ana", time: t))
        return f
    }

    func update(_ patch: EventPatch, base: Int64, by author: String) -> Proposal {
        Proposal(event: id, change: .updateEvent(patch), base: base, author: author, time: t)
    }

    @Test func differentFieldsMergeCleanly() throws {
        var f = try fixture()
        try f.admit(update(EventPatch(title: "Ana's title"), base: 1, by: "ana"))
        try f.admit(update(EventPatch(summary: "Ben's summary"), base: 1, by: "ben"))
        let e = try #require(f.state.events[id])
        #expect(e.title == "Ana's title")
        #expect(e.summary == "Ben's summary")
        #expect(e.revision == 3)
    }

    @Test func tagsMergeAsSets() throws {
        var f = try fixture()
        try f.admit(update(EventPatch(addTags: ["cyber"], removeTags: ["a"]), base: 1, by: "ana"))
        try f.admit(update(EventPatch(addTags: ["defense"]), base: 1, by: "ben"))
        try f.admit(update(EventPatch(title: "x", addTags: ["cyber"]), base: 1, by: "cy"))
        #expect(f.state.events[id]?.tags == ["cyber", "defense"])
    }

    @Test func sameFieldTwoValuesIsAConflictNamingBoth() throws {
        var f = try fixture()
        try f.admit(update(EventPatch(title: "Ana's title"), base: 1, by: "ana"))
        #expect {
            try f.admit(update(EventPatch(title: "Ben's title", summary: "fine"), base: 1, by: "ben"))
        } throws: { error in
            guard let e = error as? TimelineError, e.code == .conflict,
                let c = e.detail?["conflicts"]?.arrayValue, c.count == 1
            else { return false }
            return c[0]["field"] == "title" && c[0]["ours"] == "Ben's title" && c[0]["theirs"] == "Ana's title"
                && c[0]["our_author"] == "ben" && c[0]["their_author"] == "ana" && c[0]["their_version"] == 2
                && e.detail?["event"]?["title"] == "Ana's title"
        }
        // Nothing of the refused change was applied.
        #expect(f.state.events[id]?.summary == "Old")
        #expect(f.state.events[id]?.revision == 2)
    }

    @Test func sameFieldSameValueIsNoConflict() throws {
        var f = try fixture()
        try f.admit(update(EventPatch(title: "Agreed"), base: 1, by: "ana"))
        try f.admit(update(EventPatch(title: "Agreed"), base: 1, by: "ben"))
        #expect(f.state.events[id]?.title == "Agreed")
    }

    @Test func concurrentAnnotationsNeverConflict() throws {
        var f = try fixture()
        for (n, who) in ["ana", "ben", "cy"].enumerated() {
            let aid = AnnotationID(ULID.derived(at: t, seed: "note\(n)"))
            try f.admit(
                Proposal(
                    event: id, change: .addAnnotation(aid, text: "note by \(who)", tags: []), base: 1, author: who,
                    time: t))
        }
        #expect(f.state.annotations.count == 3)
        #expect(f.state.events[id]?.revision == 4)
        // An annotation and a field edit made on the same base both land.
        try f.admit(update(EventPatch(title: "New"), base: 1, by: "dee"))
        #expect(f.state.events[id]?.title == "New")
    }

    @Test func annotationTextEditedTwiceIsAConflict() throws {
        var f = try fixture()
        let aid = AnnotationID(ULID.derived(at: t, seed: "note"))
        try f.admit(
            Proposal(event: id, change: .addAnnotation(aid, text: "draft", tags: []), base: 1, author: "ana", time: t))
        try f.admit(
            Proposal(
                event: id, change: .updateAnnotation(aid, AnnotationPatch(text: "ana's")), base: 2, author: "ana",
                time: t))
        #expect(throws: TimelineError.self) {
            try f.admit(
                Proposal(
                    event: id, change: .updateAnnotation(aid, AnnotationPatch(text: "ben's")), base: 2, author: "ben",
                    time: t))
        }
        try f.admit(
            Proposal(
                event: id, change: .updateAnnotation(aid, AnnotationPatch(addTags: ["x"])), base: 2, author: "ben",
                time: t))
        #expect(f.state.annotations[aid]?.text == "ana's")
        #expect(f.state.annotations[aid]?.tags == ["x"])
    }

    @Test func deleteAgainstAConcurrentEditIsAConflict() throws {
        var f = try fixture()
        try f.admit(update(EventPatch(title: "Edited"), base: 1, by: "ana"))
        #expect(throws: TimelineError.self) {
            try f.admit(Proposal(event: id, change: .deleteEvent, base: 1, author: "ben", time: t))
        }
        try f.admit(Proposal(event: id, change: .deleteEvent, base: 2, author: "ben", time: t))
        // Editing a tombstone is a conflict on "deleted", not a silent resurrection.
        #expect {
            try f.admit(update(EventPatch(title: "Too late"), base: 2, by: "cy"))
        } throws: { error in
            (error as? TimelineError)?.detail?["conflicts"]?.arrayValue?.first?["field"] == "deleted"
        }
    }

    @Test func baseFromTheFutureIsRefused() throws {
        var f = try fixture()
        #expect {
            try f.admit(update(EventPatch(title: "x"), base: 7, by: "ana"))
        } throws: { ($0 as? TimelineError)?.code == .badBase }
    }

    @Test func mergeIsDeterministic() throws {
        let current = try #require(try fixture().state.events[id])
        let since = [
            Edit(
                version: 2, revision: 2, proposal: update(EventPatch(title: "A", summary: "S"), base: 1, by: "ana"),
                hash: .zero)
        ]
        let p = update(EventPatch(title: "B", summary: "T", date: EventDate(parsing: "2011")), base: 1, by: "ben")
        var mutated = current
        mutated.title = "A"
        mutated.summary = "S"
        let results = (0..<20).map { _ in Merge.merge(proposal: p, current: mutated, since: since) }
        #expect(Set(results).count == 1)
        guard case .conflict(let conflicts) = results[0] else {
            Issue.record("expected a conflict")
            return
        }
        #expect(conflicts.map(\.field) == ["summary", "title"])
    }
}
