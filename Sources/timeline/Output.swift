import Foundation
import TimelineClient
import TimelineCore
import TimelineLink

enum Output {
    static let isTTY = isatty(STDOUT_FILENO) == 1
    static let colour = isTTY && ProcessInfo.processInfo.environment["NO_COLOR"] == nil

    /// The terminal's width when standard output is one (`COLUMNS` first, as a shell sets it); nil in a pipe,
    /// where lines are written whole for the programs that read them.
    static let width: Int? = {
        guard isTTY else { return nil }
        if let columns = ProcessInfo.processInfo.environment["COLUMNS"].flatMap(Int.init), columns > 20 {
            return columns
        }
        var size = winsize()
        if ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 20 { return Int(size.ws_col) }
        return 80
    }()

    static func dim(_ s: String) -> String { colour ? "\u{1B}[2m\(s)\u{1B}[0m" : s }
    static func bold(_ s: String) -> String { colour ? "\u{1B}[1m\(s)\u{1B}[0m" : s }
    static func warn(_ s: String) -> String { colour ? "\u{1B}[33m\(s)\u{1B}[0m" : s }

    static func json(_ value: JSON) { print(value.canonicalString) }

    /// An error for scripts (`--json`): one JSON object on standard error.
    static func error(code: ErrorCode, message: String, extra: [String: JSON] = [:]) {
        var o = extra
        o["code"] = .string(code.rawValue)
        o["message"] = .string(message)
        FileHandle.standardError.write(Data((JSON.object(o).canonicalString + "\n").utf8))
    }

    /// After edits were sent and acknowledged: refreshing the local replica is a convenience, so its failure is a
    /// warning on standard error, not a failed command.
    static func refreshReplica(_ client: TimelineClient, using connection: TimelineConnection? = nil) async {
        do {
            _ = try await client.pull(using: connection)
        } catch {
            FileHandle.standardError.write(
                Data(
                    "warning: sent, but the local replica was not updated (\(describe(error))); run timeline pull\n"
                        .utf8))
        }
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case let e as TimelineError where e.code == .authFailed || e.code == .authRevoked:
            // The server's words are for protocol clients ("AUTH with another"); a person needs the next step.
            return
                "\(e.code): the server refused this home's token (\(e.code == .authRevoked ? "revoked while the command ran" : "unknown, revoked or expired")); get a new token from your operator and run timeline init --server HOST:PORT --token-file FILE --fingerprint SHA256 again (queued edits stay queued)"
        case let e as TimelineError: return "\(e.code): \(e.message)"
        default: return "\(error)"
        }
    }

    static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
    }

    /// One line of at most `width` characters (newlines become spaces); unlimited when `width` is nil.
    static func clip(_ s: String, _ width: Int?) -> String {
        let one = s.replacingOccurrences(of: "\n", with: " ")
        guard let width, one.count > width else { return one }
        return String(one.prefix(max(1, width - 1))) + "…"
    }

    /// Text word-wrapped to the terminal's width (as it is in a pipe), each line after `indent`; paragraphs kept.
    static func wrap(_ text: String, indent: String = "") -> String {
        guard let width else {
            return text.split(separator: "\n", omittingEmptySubsequences: false).map { indent + $0 }.joined(
                separator: "\n")
        }
        let room = max(20, width - indent.count)
        var out: [String] = []
        for paragraph in text.split(separator: "\n", omittingEmptySubsequences: false) {
            var line = ""
            for word in paragraph.split(separator: " ") {
                if !line.isEmpty, line.count + 1 + word.count > room {
                    out.append(indent + line)
                    line = ""
                }
                line += (line.isEmpty ? "" : " ") + word
            }
            out.append(indent + line)
        }
        return out.joined(separator: "\n")
    }

    /// "EPPCEN5 “Title”": an event as a person recognises it, by its short ID and title.
    static func name(_ id: EventID, short: [String: String], title: String?) -> String {
        let s = short[id.description] ?? id.description
        guard let title else { return s }
        return "\(s) “\(clip(title, 60))”"
    }

    /// One line per event: short ID, date as written, title (to the terminal's width), tags, notes.
    static func eventLines(_ views: [EventView], short: [String: String], below: [String]? = nil) {
        let idWidth = views.map { short[$0.event.id.description]?.count ?? 26 }.max() ?? ShortID.minimum
        let dateWidth = min(28, views.map(\.event.date.text.count).max() ?? 10)
        for (index, v) in views.enumerated() {
            defer {
                if let below, index < below.count, !below[index].isEmpty {
                    print(
                        String(repeating: " ", count: idWidth + 2) + clip(below[index], width.map { $0 - idWidth - 2 }))
                }
            }
            let notes = v.annotations.filter { !$0.retracted }.count
            let tags = v.event.tags.isEmpty ? "" : " " + v.event.tags.map { "#" + $0 }.joined(separator: " ")
            let badge =
                (notes > 0 ? " [\(notes) note\(notes == 1 ? "" : "s")]" : "") + (v.event.deleted ? " DELETED" : "")
            let lead =
                "\(pad(short[v.event.id.description] ?? v.event.id.description, idWidth))  "
                + "\(pad(clip(v.event.date.text, dateWidth), dateWidth))  "
            // The title gets what the terminal has left after the ID, the date and (if they fit) tags and notes.
            let room = width.map { max(20, $0 - lead.count - tags.count - badge.count) }
            print(
                bold(String(lead.prefix(idWidth))) + lead.dropFirst(idWidth) + clip(v.event.title, room)
                    + dim(tags + badge))
        }
    }

    static func eventDetail(_ v: EventView, pending: [OutboxItem], short: [String: String]) {
        let e = v.event
        print(bold(e.title))
        print(
            "id        \(bold(short[e.id.description] ?? e.id.description))  \(dim(e.id.description))   revision \(e.revision)\(e.deleted ? "   " + warn("DELETED") : "")"
        )
        let span =
            e.date.start.map { s in e.date.end.map { "\(s.iso) – \($0.iso)" } ?? s.iso } ?? "not placed on the calendar"
        print("date      \(e.date.text)   \(dim("(\(span), \(e.date.precision.rawValue))"))")
        if !e.tags.isEmpty { print("tags      \(e.tags.joined(separator: ", "))") }
        if !e.summary.isEmpty {
            print("")
            print(wrap(e.summary))
        }
        if !e.references.isEmpty {
            print("")
            for r in e.references {
                print(dim("[\(r.number)] ") + wrap(r.text, indent: "").replacingOccurrences(of: "\n", with: "\n     "))
            }
        }
        let notes = v.annotations.sorted { ($0.created, $0.id) < ($1.created, $1.id) }
        if !notes.isEmpty {
            print("")
            for a in notes {
                let state = a.retracted ? warn(" (retracted)") : ""
                let tags = a.tags.isEmpty ? "" : dim(" " + a.tags.map { "#" + $0 }.joined(separator: " "))
                let when = a.created.rfc3339.prefix(16).replacingOccurrences(of: "T", with: " ")
                print("• \(bold(short[a.id.description] ?? a.id.description))  \(a.author), \(when)\(state)")
                print(wrap(a.text, indent: "  ") + tags)
            }
        }
        for item in pending {
            let state = item.refusal.map { warn("• refused (\($0.code): \($0.message)): ") } ?? warn("• queued: ")
            print(state + proposalSummary(item.proposal))
        }
    }

    /// A proposal as a person reads it: `annotation.add “text” #tag`, `event.update title “…”, +tag`.
    static func proposalSummary(_ p: JSON) -> String {
        let op = p["op"]?.stringValue ?? "edit"
        var parts: [String] = []
        if let text = p["text"]?.stringValue { parts.append("“\(clip(text, 60))”") }
        if let title = p["title"]?.stringValue { parts.append("“\(clip(title, 60))”") }
        if let set = p["set"]?.objectValue {
            for (key, value) in set.sorted(by: { $0.key < $1.key }) {
                parts.append("\(key) “\(clip(value.stringValue ?? value.canonicalString, 60))”")
            }
        }
        for tag in p["tags"]?["add"]?.arrayValue ?? [] { parts.append("+" + (tag.stringValue ?? "")) }
        for tag in p["tags"]?["remove"]?.arrayValue ?? [] { parts.append("-" + (tag.stringValue ?? "")) }
        if op == "annotation.add" {
            for tag in p["tags"]?.arrayValue ?? [] { parts.append("#" + (tag.stringValue ?? "")) }
        }
        return ([op] + parts).joined(separator: " ")
    }

    /// One edit: version, revision, time, author, which event (short ID and title), and what changed.
    static func editLine(_ edit: Edit, short: [String: String], titles: [EventID: String]) -> String {
        var what = edit.operation.rawValue
        switch edit.change {
        case .updateEvent(let p):
            let fields =
                p.setFields.map(\.0) + (p.addTags.isEmpty ? [] : ["+" + p.addTags.joined(separator: ",+")])
                + (p.removeTags.isEmpty ? [] : ["-" + p.removeTags.joined(separator: ",-")])
            what += " " + fields.joined(separator: " ")
        case .addAnnotation(let id, let text, _):
            what += " \(short[id.description] ?? id.description) “\(clip(text, 60))”"
        case .updateAnnotation(let id, let p):
            what += " \(short[id.description] ?? id.description)" + (p.text.map { " “\(clip($0, 60))”" } ?? "")
        case .retractAnnotation(let id):
            what += " \(short[id.description] ?? id.description)"
        case .createEvent(let f): what += " “\(clip(f.title, 60))”"
        default: break
        }
        let event = edit.event.map { name($0, short: short, title: titles[$0]) + "  " } ?? ""
        let time = edit.time.rfc3339.prefix(19).replacingOccurrences(of: "T", with: " ")
        return "v\(edit.version)  r\(edit.revision)  \(time)  \(pad(edit.author, 12))  \(event)\(what)"
    }

    /// The IDs an edit names (its event, its annotation), for `TimelineClient.shortForms`.
    static func ids(of edit: Edit) -> [String] {
        var out: [String] = []
        if let e = edit.event { out.append(e.description) }
        if let a = edit.change.annotationID { out.append(a.description) }
        return out
    }

    /// A progress bar on a terminal's standard error; nothing in pipes.
    static func progress(_ done: Int64, _ total: Int64) {
        guard isatty(STDERR_FILENO) == 1, total > 0 else { return }
        let width = 30
        let filled = Int(Double(width) * Double(done) / Double(total))
        let bar =
            String(repeating: "#", count: min(width, filled)) + String(repeating: ".", count: max(0, width - filled))
        FileHandle.standardError.write(Data("\r[\(bar)] \(done)/\(total)".utf8))
        if done >= total { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
