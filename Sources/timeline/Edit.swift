import ArgumentParser
import TimelineClient
import TimelineCore
import TimelineLink

struct EditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edit",
        abstract: "Change an event's fields (only those named) and tags.",
        discussion: #"Example: timeline edit ZBYNZC1 --date "October 18 to 19, 2012" --add-tag corrected"#)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Event ID (short or whole).") var id: String
    @Option(help: "New title (not empty).") var title: String?
    @Option(help: "New summary.") var summary: String?
    @Option(help: "New date, as text (e.g. \"June 9 to 10, 2011\", \"2011-06\", \"Q3 2011\").") var date: String?
    @Flag(help: "Keep a --date the calendar cannot place, as text only (the event then drops out of date filters).")
    var dateTextOnly = false
    @Option(name: .customLong("add-tag"), help: "Tag to add (repeatable).") var addTags: [String] = []
    @Option(name: .customLong("remove-tag"), help: "Tag to remove (repeatable).") var removeTags: [String] = []
    @Option(name: .customLong("add-reference"), help: "A reference to add, \"[n] citation\" (repeatable).")
    var addReferences: [String] = []
    @Option(name: .customLong("remove-reference"), help: "The number of a reference to remove (repeatable).")
    var removeReferences: [Int] = []

    func validate() throws {
        guard
            title != nil || summary != nil || date != nil || !addTags.isEmpty || !removeTags.isEmpty
                || !addReferences.isEmpty || !removeReferences.isEmpty
        else {
            throw ValidationError(
                "name at least one change: --title, --summary, --date, --add-tag, --remove-tag, --add-reference, --remove-reference"
            )
        }
        if let title, title.allSatisfy(\.isWhitespace) { throw ValidationError("--title must not be empty") }
        if let date { try DateCheck.placeable(date, textOnly: dateTextOnly) }
        if let both = addTags.first(where: removeTags.contains) {
            throw ValidationError("--add-tag \(both) and --remove-tag \(both) cancel out: give one of them")
        }
        for tag in addTags + removeTags where !Tags.isValid(tag) {
            throw ValidationError("\"\(tag)\" is not a tag (1-64 bytes, no spaces)")
        }
    }

    func run() async throws {
        let client = try global.client()
        let eventID = try await client.resolve(id)
        let current = try await client.event(eventID).event
        var set: [String: JSON] = [:]
        // Only what changes: setting a field to the value it has would only add a version.
        if let title, title != current.title { set["title"] = .string(title) }
        if let summary, summary != current.summary { set["summary"] = .string(summary) }
        if let date, date != current.date.text || (dateTextOnly && current.date.precision != .unknown) {
            set["date"] = DateCheck.json(date, textOnly: dateTextOnly)
        }
        if !addReferences.isEmpty || !removeReferences.isEmpty {
            let numbers = Set(current.references.map(\.number))
            for n in removeReferences where !numbers.contains(n) {
                throw ValidationError(
                    "the event has no reference [\(n)]; it has \(numbers.sorted().map { "[\($0)]" }.joined(separator: ", "))"
                )
            }
            var refs = current.references.filter { !removeReferences.contains($0.number) }
            refs += try References.typed(addReferences, after: current.references, keeping: refs)
            set["references"] = .array(refs.map(\.json))
        }
        // Tags the event has (or lacks) already change nothing, as far as this replica knows.
        let adding = addTags.filter { !current.tags.contains($0) }
        let removing = removeTags.filter { current.tags.contains($0) }
        if set.isEmpty, adding.isEmpty, removing.isEmpty, addReferences.isEmpty, removeReferences.isEmpty {
            if global.json {
                Output.json(["state": "unchanged", "event": .string(eventID.description)])
            } else {
                print(
                    "nothing to change: the event already has what you gave (timeline pull, if someone just changed it)"
                )
            }
            return
        }
        // Spelled as JSON, not as a typed Change: a date goes as typed, for the server's parser to place.
        var proposal: [String: JSON] = [
            "op": "event.update", "event": .string(eventID.description),
            "base": .int(current.revision),
        ]
        if !set.isEmpty { proposal["set"] = .object(set) }
        if !adding.isEmpty || !removing.isEmpty {
            proposal["tags"] = [
                "add": .array(adding.map { .string($0) }), "remove": .array(removing.map { .string($0) }),
            ]
        }
        // Checked here as the server will (fields, limits, the role), so that a refusal comes now, not at a sync.
        let item = try await client.propose(.object(proposal))
        try await Sending.sendNow(
            client, item: item, json: global.json,
            edit: ["op": "event.update", "event": .string(eventID.description)]
        ) {
            let short = (try? await client.shortForms([eventID.description])) ?? [:]
            return "edit of \(Output.name(eventID, short: short, title: title ?? current.title))"
        }
    }
}

/// A date typed by a person must be one the calendar can place, or they must say they mean text only.
enum DateCheck {
    /// The date as a proposal gives it: text for the server to parse, or with --date-text-only the date object
    /// itself, with no span (`precision` unknown), so that nothing is read into it.
    static func json(_ text: String, textOnly: Bool) -> JSON {
        textOnly ? .object(["text": .string(text), "precision": "unknown"]) : .string(text)
    }

    static func placeable(_ text: String, textOnly: Bool) throws {
        guard !text.allSatisfy(\.isWhitespace) else { throw ValidationError("--date must not be empty") }
        let (date, warnings) = EventDate.parse(text)
        guard !textOnly else { return }
        if date.precision != .unknown, let warning = warnings.first {
            // Placed, but not as written (a range that ends before it starts): the importer's warning, as a refusal.
            throw ValidationError(
                "the calendar cannot read the date as written (\(warning)); write it as you mean it, or add --date-text-only to keep it as text only"
            )
        }
        guard date.precision == .unknown else { return }
        throw ValidationError(
            """
            cannot place "\(text)" on the calendar (a day that does not exist, or words it does not read), so the \
            event would drop out of every date filter; write it as \
            e.g. "June 9, 2011", "June 9 to 10, 2011", "June 2011", "Q3 2011", "summer 2011" or "2011", or add \
            --date-text-only to keep it as text
            """)
    }
}

/// References as a person types them, "[n] citation" or a citation alone, checked before anything is queued.
enum References {
    /// New references from `texts`: one without a number takes the next after every number the event has or had
    /// (`after`: a removed one's may be cited still); a number already among `keeping` is refused.
    static func typed(_ texts: [String], after existing: [Reference], keeping: [Reference]) throws -> [Reference] {
        var taken = Set(keeping.map(\.number))
        var highest = (existing + keeping).map(\.number).max() ?? 0
        var out: [Reference] = []
        for text in texts {
            let trimmed = text.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("["), let close = trimmed.firstIndex(of: "]"),
                Int(trimmed[trimmed.index(after: trimmed.startIndex)..<close]) == nil
            {
                throw ValidationError("\"\(text)\": a reference starts with its number in brackets, [17], or with none")
            }
            let reference = Reference.typed(text, next: highest + 1)
            guard !reference.text.isEmpty else {
                throw ValidationError("\"\(text)\" has no citation: give the source after the number")
            }
            guard taken.insert(reference.number).inserted else {
                throw ValidationError(
                    "the event already has a reference [\(reference.number)]: remove it first (--remove-reference \(reference.number)), or give another number"
                )
            }
            highest = max(highest, reference.number)
            out.append(reference)
        }
        return out
    }
}
