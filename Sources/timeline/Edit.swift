import ArgumentParser
import TimelineCore

struct EditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edit",
        abstract: "Change an event's fields (only those named) and tags.",
        discussion: #"Example: timeline edit 019ECZQW00ZB --date "October 18 to 19, 2012" --add-tag corrected"#)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Event ID or unique prefix.") var id: String
    @Option(help: "New title.") var title: String?
    @Option(help: "New summary.") var summary: String?
    @Option(help: "New date, as text (e.g. \"June 9 to 10, 2011\").") var date: String?
    @Option(name: .customLong("add-tag"), help: "Tag to add (repeatable).") var addTags: [String] = []
    @Option(name: .customLong("remove-tag"), help: "Tag to remove (repeatable).") var removeTags: [String] = []

    func validate() throws {
        guard title != nil || summary != nil || date != nil || !addTags.isEmpty || !removeTags.isEmpty else {
            throw ValidationError("name at least one change: --title, --summary, --date, --add-tag, --remove-tag")
        }
        for tag in addTags + removeTags where !Tags.isValid(tag) { throw ValidationError("\"\(tag)\" is not a tag") }
    }

    func run() async throws {
        let client = try global.client()
        let eventID = try await client.resolve(id)
        var set: [String: JSON] = [:]
        if let title { set["title"] = .string(title) }
        if let summary { set["summary"] = .string(summary) }
        if let date { set["date"] = .string(date) }
        var proposal: [String: JSON] = [
            "op": "event.update", "event": .string(eventID.description),
            "base": .int(try await client.base(of: eventID)),
            "set": .object(set),
        ]
        if !addTags.isEmpty || !removeTags.isEmpty {
            proposal["tags"] = [
                "add": .array(addTags.map { .string($0) }), "remove": .array(removeTags.map { .string($0) }),
            ]
        }
        // Checked here as the server will, so that a typo is refused now rather than at the next sync.
        _ = try EditCodec.decodeProposal(.object(proposal), author: "me", time: Timestamp(milliseconds: 0))
        try client.enqueue(.object(proposal))
        try await Sending.pushNow(client, json: global.json, what: ["event": .string(eventID.description)])
    }
}
