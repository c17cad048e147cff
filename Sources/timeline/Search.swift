import ArgumentParser
import TimelineClient
import TimelineCore
import TimelineLink

struct Search: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Events whose text or annotations hold every word, best match first (full-text, ranked).",
        discussion: """
            Words match as prefixes and without accents ("dialog" finds "Dialogue", "resume" "résumé"); an event \
            matches through its title, summary, date, references and tags, or through one of its annotations (text, \
            tags, author). For filters by date, tag or author, see timeline log.
            Examples:
              timeline search cyber dialogue
              timeline search joint exercise --json | jq -r .id
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Words to look for.") var words: [String]
    @Option(help: "At most this many events.") var limit = 20

    func validate() throws {
        guard !words.allSatisfy({ $0.allSatisfy(\.isWhitespace) }) else {
            throw ValidationError("give one or more words to search for")
        }
        guard limit >= 1 else { throw ValidationError("--limit is 1 or more") }
    }

    func run() async throws {
        let client = try global.client()
        Pager.start(global)
        let marks = Output.colour ? ("\u{1B}[1m", "\u{1B}[0m") : ("«", "»")
        let hits = try await client.search(words, limit: limit, highlight: marks)
        if global.json {
            for hit in hits {
                guard case .object(var o) = hit.view.json else { continue }
                o["matched_annotations"] = .array(hit.annotations.map { .string($0.description) })
                Output.json(.object(o))
            }
            return
        }
        if hits.isEmpty {
            print("no event matches \(words.joined(separator: " "))")
            return
        }
        let short = try await client.shortForms(
            hits.flatMap { [$0.view.event.id.description] + $0.annotations.map(\.description) })
        let below = hits.map { hit in
            let notes = hit.annotations.map { short[$0.description] ?? $0.description }
            return hit.snippet + (notes.isEmpty ? "" : Output.dim("  (note \(notes.joined(separator: ", ")))"))
        }
        Output.eventLines(hits.map(\.view), short: short, below: below)
    }
}
