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
    @OptionGroup var filters: FilterOptions
    @Option(help: "Only events with an annotation by this author.") var author: String?
    @Flag(help: "Include deleted events.") var deleted = false

    func run() async throws {
        let client = try global.client()
        Pager.start(global)
        let views = try await client.replica.events(matching: filters.filter(author: author, deleted: deleted))
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
