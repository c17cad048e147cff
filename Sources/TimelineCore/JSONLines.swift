/// The timeline as JSON Lines: one edit proposal per line, in the same shape as `PROPOSE` and `BATCH`
/// take them. An export is the shortest list of edits that rebuilds the current state, so importing it into
/// an empty store gives the identical state hash.
public enum JSONLines {
    /// The lines that rebuild one event with its annotations (retracted ones included: history keeps them).
    public static func exportLines(_ view: EventView) -> [String] {
        let e = view.event
        var lines: [String] = []
        var create = EditCodec.changeFields(
            .createEvent(
                EventFields(
                    date: e.date, title: e.title, summary: e.summary, references: e.references, tags: e.tags)))
        create["event"] = .string(e.id.description)
        lines.append(JSON.object(create).canonicalString)
        for a in view.annotations {
            var add = EditCodec.changeFields(.addAnnotation(a.id, text: a.text, tags: a.tags))
            add["event"] = .string(e.id.description)
            add["author"] = .string(a.author)
            add["time"] = .string(a.created.rfc3339)
            lines.append(JSON.object(add).canonicalString)
            if a.retracted {
                var retract = EditCodec.changeFields(.retractAnnotation(a.id))
                retract["event"] = .string(e.id.description)
                retract["author"] = .string(a.author)
                lines.append(JSON.object(retract).canonicalString)
            }
        }
        if e.deleted {
            lines.append(JSON.object(["op": "event.delete", "event": .string(e.id.description)]).canonicalString)
        }
        return lines
    }

    /// The metadata line, or nil when there is none.
    public static func exportMeta(_ meta: [String: JSON]) -> String? {
        guard !meta.isEmpty else { return nil }
        return JSON.object(EditCodec.changeFields(.setMeta(meta))).canonicalString
    }

    /// Parses a whole JSONL document into proposals, with the line each came from. Any bad line refuses the whole
    /// document with its line number and reason, so that an import is all or nothing. `trusted` keeps each line's
    /// `author` and `time` (an administrator's offline import); otherwise every edit is stamped with `author` and
    /// `time`.
    public static func parse(
        _ bytes: [UInt8], author: String, time: Timestamp, trusted: Bool, limits: JSON.ParseLimits = .init()
    ) throws(TimelineError) -> (proposals: [Proposal], lines: [Int]) {
        var proposals: [Proposal] = []
        var numbers: [Int] = []
        try decode(try TextLines.split(bytes), author: author, time: time, trusted: trusted, limits: limits) {
            proposals.append($0)
            numbers.append($1)
        }
        return (proposals, numbers)
    }

    /// Checks already split lines as `parse` does, keeping only the numbers of the lines that hold edits: a bulk
    /// sender checks everything before sending anything without holding every decoded proposal at once.
    public static func check(
        _ lines: [String], author: String, time: Timestamp, trusted: Bool, limits: JSON.ParseLimits = .init()
    ) throws(TimelineError) -> [Int] {
        try merged([check(lines[...], author: author, time: time, trusted: trusted, limits: limits)])
    }

    /// What checking a run of lines found, to be `merged` with the runs around it: runs of one document can be
    /// checked at the same time, and the merge gives the answer, or the error, of checking them in one pass.
    public struct CheckedRun: Sendable {
        /// The numbers of the lines that hold edits, up to the first bad line.
        var numbers: [Int] = []
        /// The IDs lines name for what they create, which another line may not name again.
        var named: [(number: Int, id: NamedID)] = []
        /// The first bad line of the run; the run was checked no further.
        var failure: TimelineError?
        var failureLine = Int.max
    }

    enum NamedID: Sendable {
        case event(EventID)
        case annotation(AnnotationID)
    }

    /// Checks `lines` (a slice of the document's lines: their indices give the line numbers).
    public static func check(
        _ lines: ArraySlice<String>, author: String, time: Timestamp, trusted: Bool,
        limits: JSON.ParseLimits = .init()
    ) -> CheckedRun {
        var run = CheckedRun()
        decode(lines, author: author, time: time, trusted: trusted, limits: limits, into: &run) { _, _ in }
        return run
    }

    /// The numbers of the lines that hold edits in runs checked apart, given in the document's order; throws
    /// the error of the document's first bad line, a line that repeats an ID included.
    public static func merged(_ runs: [CheckedRun]) throws(TimelineError) -> [Int] {
        let firstBad = runs.map(\.failureLine).min() ?? Int.max
        var createdEvents: [EventID: Int] = [:]
        var addedAnnotations: [AnnotationID: Int] = [:]
        for run in runs {
            // A line after the first bad one was never checked in a single pass.
            for (number, id) in run.named where number < firstBad {
                switch id {
                case .event(let id):
                    if let first = createdEvents.updateValue(number, forKey: id) {
                        throw TimelineError(
                            .duplicateID, "line \(number): event \(id) is created again (first on line \(first))")
                    }
                case .annotation(let id):
                    if let first = addedAnnotations.updateValue(number, forKey: id) {
                        throw TimelineError(
                            .duplicateID, "line \(number): annotation \(id) is added again (first on line \(first))")
                    }
                }
            }
        }
        if let failure = runs.first(where: { $0.failureLine == firstBad })?.failure { throw failure }
        return runs.flatMap(\.numbers)
    }

    private static func decode(
        _ lines: [String], author: String, time: Timestamp, trusted: Bool, limits: JSON.ParseLimits,
        _ body: (Proposal, Int) -> Void
    ) throws(TimelineError) {
        var run = CheckedRun()
        decode(lines[...], author: author, time: time, trusted: trusted, limits: limits, into: &run, body)
        _ = try merged([run])
    }

    /// Decodes each line, up to the first bad one, giving each proposal to `body`.
    private static func decode(
        _ lines: ArraySlice<String>, author: String, time: Timestamp, trusted: Bool, limits: JSON.ParseLimits,
        into run: inout CheckedRun, _ body: (Proposal, Int) -> Void
    ) {
        for index in lines.indices {
            let line = lines[index]
            let number = index + 1
            if TextLines.isBlank(line) { continue }
            let members: JSONMembers?
            do {
                members = try JSON.parseObject(line, limits: limits)
            } catch {
                run.failure = TimelineError(.badJSON, "line \(number): \(error)")
                run.failureLine = number
                return
            }
            guard let members else {
                run.failure = TimelineError(.badJSON, "line \(number): an edit must be a JSON object")
                run.failureLine = number
                return
            }
            let proposal: Proposal
            do {
                proposal = try EditCodec.decodeProposal(
                    members, author: author, time: time, allowAuthorFields: trusted)
            } catch {
                run.failure = error.at("line \(number)")
                run.failureLine = number
                return
            }
            switch proposal.change {
            case .createEvent:
                if let id = proposal.event { run.named.append((number, .event(id))) }
            case .addAnnotation(let id, _, _) where members["annotation"] != nil:
                // Only IDs the lines name can repeat; one the decoder made up for a line without is unique.
                run.named.append((number, .annotation(id)))
            default:
                break
            }
            run.numbers.append(number)
            body(proposal, number)
        }
    }
}
