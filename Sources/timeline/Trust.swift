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
            edit before it. If the server cannot be asked (offline, a refused token), verify says so and exits 1; \
            --local checks the replica alone. Example: timeline verify --json
            """)
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Check the replica alone, without asking the server.") var local = false

    func run() async throws {
        let client = try global.client()
        let r = try await client.verify(askingServer: !local)
        let replica = r.local
        if global.json {
            Output.json([
                "ok": .bool(replica.ok && r.agrees != false && (r.agrees != nil || local)),
                "version": .int(replica.version),
                "head": .string(replica.headHash.hex), "state": .string(replica.stateHash.hex),
                "problems": .array(replica.problems.map { .string($0) }),
                "server_version": r.serverVersion.map { .int($0) } ?? .null,
                "server_agrees": r.agrees.map { .bool($0) } ?? .null,
                "unreachable": r.unreachable.map { .string($0) } ?? .null,
            ])
        } else {
            print("version   \(replica.version)")
            print("head      \(replica.headHash.hex)")
            print("state     \(replica.stateHash.hex)")
            print(
                replica.ok
                    ? "replica   ok: every hash follows the chain, the state is the log replayed"
                    : "replica   FAILED: \(replica)")
            switch r.agrees {
            case true?:
                let behind = (r.serverVersion ?? replica.version) - replica.version
                print(
                    "server    the same log up to version \(replica.version)\(behind > 0 ? "; \(behind) newer edits to pull" : "")"
                )
            case false?:
                print(
                    Output.warn(
                        "server    DIFFERENT: the server's edit \(replica.version) has another hash; this replica does not follow the server's log"
                    ))
            case nil where local:
                print("server    not asked (--local)")
            case nil:
                print(
                    Output.warn(
                        "server    NOT COMPARED: \(r.unreachable ?? "the server holds no edit at this version")"))
            }
        }
        // A comparison that could not be made is not a pass: --local asks for the replica alone.
        if !replica.ok || r.agrees == false || (r.agrees == nil && !local) { throw ExitCode(1) }
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
