import ArgumentParser
import Foundation
import TimelineCore
import TimelineStore

struct Log: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List events from the replica, in date order.",
        discussion: """
            Examples:
              timeline log --since 2014-01-01 --until 2014-06-30
              timeline log --tag cyber --json | jq .title
              timeline log --grep "cyber dialogue" --author ana
            """)
    @OptionGroup var global: GlobalOptions
    @Option(help: "Events that end on or after this day (YYYY-MM-DD).") var since: String?
    @Option(help: "Events that start on or before this day (YYYY-MM-DD).") var until: String?
    @Option(help: "Only events with this tag, on the event or on one of its annotations.") var tag: String?
    @Option(help: "Only events whose text, or an annotation's text or author, contains this (any case).")
    var grep: String?
    @Option(help: "Only events with an annotation by this author.") var author: String?
    @Flag(help: "Include deleted events.") var deleted = false

    func validate() throws {
        for (name, value) in [("--since", since), ("--until", until)] where value != nil && CivilDay(iso: value!) == nil
        {
            throw ValidationError("\(name) takes a day as YYYY-MM-DD")
        }
        if let since, let until, let from = CivilDay(iso: since), let to = CivilDay(iso: until), to < from {
            throw ValidationError("--until \(until) is before --since \(since): no event could be in between")
        }
    }

    func run() async throws {
        let client = try global.client()
        Pager.start(global)
        let views = try await client.replica.events(
            matching: EventFilter(
                from: since.flatMap(CivilDay.init(iso:)), until: until.flatMap(CivilDay.init(iso:)), tag: tag,
                text: grep, includeDeleted: deleted, limit: Int.max, throughAnnotations: true,
                annotationAuthor: author))
        if global.json {
            for v in views { Output.json(v.json) }
        } else if views.isEmpty {
            // On standard error: a script reading standard output gets no lines, as it should.
            FileHandle.standardError.write(Data("no event matches these filters\n".utf8))
        } else {
            Output.eventLines(views, short: try await client.shortForms(views.map(\.event.id.description)))
        }
    }
}
