import ArgumentParser
import TimelineClient
import TimelineCore
import TimelineLink

struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the replica's hash chain and state, and that its log is the server's (exit 1 if not).",
        discussion: """
            The replica is checked on its own first (every edit's hash, and its state against the log replayed); \
            then the server's edit at the replica's last version must have the same hash, which vouches for every \
            edit before it. When the server cannot be reached, only the first check is made (exit 0 if it passes); \
            when it refuses the token, verify fails. Example: timeline verify --json
            """)
    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let client = try global.client()
        let r = try await client.verify()
        let local = r.local
        if global.json {
            Output.json([
                "ok": .bool(local.ok && r.agrees != false), "version": .int(local.version),
                "head": .string(local.headHash.hex), "state": .string(local.stateHash.hex),
                "problems": .array(local.problems.map { .string($0) }),
                "server_version": r.serverVersion.map { .int($0) } ?? .null,
                "server_agrees": r.agrees.map { .bool($0) } ?? .null,
                "unreachable": r.unreachable.map { .string($0) } ?? .null,
            ])
        } else {
            print("version   \(local.version)")
            print("head      \(local.headHash.hex)")
            print("state     \(local.stateHash.hex)")
            print(
                local.ok
                    ? "replica   ok: every hash follows the chain, the state is the log replayed"
                    : "replica   FAILED: \(local)")
            switch r.agrees {
            case true?:
                let behind = (r.serverVersion ?? local.version) - local.version
                print(
                    "server    the same log up to version \(local.version)\(behind > 0 ? "; \(behind) newer edits to pull" : "")"
                )
            case false?:
                print(
                    Output.warn(
                        "server    DIFFERENT: the server's edit \(local.version) has another hash; this replica does not follow the server's log"
                    ))
            case nil:
                print("server    not compared: \(r.unreachable ?? "the server holds no edit at this version")")
            }
        }
        // Offline only the replica can be checked; any other reason not to compare (a refused token) is a failure.
        if !local.ok || r.agrees == false || (r.unreachable != nil && !r.offline) { throw ExitCode(1) }
    }
}

struct Blame: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Each field of an event with who last set it, in which version and when.",
        discussion: "Example: timeline blame ZBYNZC1")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Event ID (short or whole).") var id: String

    func run() async throws {
        let client = try global.client()
        let event = try await Checks.event(id, of: client)
        let lines = try await client.blame(event)
        Pager.start(global)
        for b in lines {
            let time = b.edit.time.rfc3339.prefix(16).replacingOccurrences(of: "T", with: " ")
            if global.json {
                Output.json([
                    "field": .string(b.field), "value": b.value, "author": .string(b.edit.author),
                    "version": .int(b.edit.version), "time": .string(b.edit.time.rfc3339),
                ])
            } else {
                let who = "\(b.edit.author)  v\(b.edit.version)  \(time)"
                print(
                    "\(Output.pad(b.field, 11)) \(Output.pad(who, 34))  \(Output.clip(Diff.text(b.value, field: b.field), Output.width.map { max(20, $0 - 47) }))"
                )
            }
        }
    }
}

struct Changes: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Events edited since you last ran this (pull first to see the server's latest).",
        discussion: """
            The mark is kept in the home; each run moves it to the replica's version, unless --peek. The first \
            mark is set by timeline init. Example: timeline pull && timeline changes
            """)
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Show the changes without moving the mark.") var peek = false
    @Option(help: "Show the changes after this version instead of the mark (the mark does not move).") var since: Int64?

    func run() async throws {
        let client = try global.client()
        let head = try await client.replica.currentVersion()
        let mark = try since ?? client.mark() ?? head
        let changes = try await client.changes(after: mark)
        let short = try await client.shortForms(changes.map(\.view.event.id.description))
        if global.json {
            for c in changes {
                guard case .object(var o) = c.view.json else { continue }
                o["edits_since"] = .array(c.edits.map { EditCodec.json($0) })
                Output.json(.object(o))
            }
        } else if changes.isEmpty {
            print(
                "nothing changed after version \(mark)\(mark == head ? " (the replica's head; timeline pull for newer edits)" : "")"
            )
        } else {
            print("\(changes.count) event\(changes.count == 1 ? "" : "s") changed after version \(mark):")
            for c in changes {
                let authors = Set(c.edits.map(\.author)).sorted().joined(separator: ", ")
                var what: [String] = []
                let notes = c.edits.filter { $0.operation == .annotationAdd }.count
                if c.edits.contains(where: { $0.operation == .eventCreate }) { what.append("new") }
                let fields = Set(
                    c.edits.flatMap { edit -> [String] in
                        if case .updateEvent(let p) = edit.change {
                            return p.setFields.map(\.0) + (p.addTags.isEmpty && p.removeTags.isEmpty ? [] : ["tags"])
                        }
                        return []
                    })
                if !fields.isEmpty { what.append(fields.sorted().joined(separator: ", ")) }
                if notes > 0 { what.append("\(notes) new note\(notes == 1 ? "" : "s")") }
                if c.edits.contains(where: { $0.operation == .eventDelete }) { what.append("deleted") }
                print(
                    "\(Output.bold(short[c.view.event.id.description] ?? c.view.event.id.description))  \(Output.clip(c.view.event.title, 50))  \(Output.dim("\(what.joined(separator: "; ")) by \(authors)"))"
                )
            }
        }
        if since == nil, !peek { try client.setMark(head) }
    }
}
