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
        var numbers: [Int] = []
        try decode(lines, author: author, time: time, trusted: trusted, limits: limits) { numbers.append($1) }
        return numbers
    }

    private static func decode(
        _ lines: [String], author: String, time: Timestamp, trusted: Bool, limits: JSON.ParseLimits,
        _ body: (Proposal, Int) -> Void
    ) throws(TimelineError) {
        var createdEvents: [EventID: Int] = [:]
        var addedAnnotations: [AnnotationID: Int] = [:]
        for (index, line) in lines.enumerated() {
            let number = index + 1
            if line.allSatisfy(\.isWhitespace) { continue }
            let json: JSON
            do {
                json = try JSON(parsing: line, limits: limits)
            } catch {
                throw TimelineError(.badJSON, "line \(number): \(error)")
            }
            let proposal: Proposal
            do {
                proposal = try EditCodec.decodeProposal(json, author: author, time: time, allowAuthorFields: trusted)
            } catch {
                throw error.at("line \(number)")
            }
            switch proposal.change {
            case .createEvent:
                if let id = proposal.event, let first = createdEvents.updateValue(number, forKey: id) {
                    throw TimelineError(
                        .duplicateID, "line \(number): event \(id) is created again (first on line \(first))")
                }
            case .addAnnotation(let id, _, _) where json["annotation"] != nil:
                // Only IDs the lines name can repeat; one the decoder made up for a line without is unique.
                if let first = addedAnnotations.updateValue(number, forKey: id) {
                    throw TimelineError(
                        .duplicateID, "line \(number): annotation \(id) is added again (first on line \(first))")
                }
            default:
                break
            }
            body(proposal, number)
        }
    }
}
