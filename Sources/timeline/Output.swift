import Foundation
import TimelineClient
import TimelineCore

enum Output {
    static let isTTY = isatty(STDOUT_FILENO) == 1
    static let colour = isTTY && ProcessInfo.processInfo.environment["NO_COLOR"] == nil

    static func dim(_ s: String) -> String { colour ? "\u{1B}[2m\(s)\u{1B}[0m" : s }
    static func bold(_ s: String) -> String { colour ? "\u{1B}[1m\(s)\u{1B}[0m" : s }
    static func warn(_ s: String) -> String { colour ? "\u{1B}[33m\(s)\u{1B}[0m" : s }

    static func json(_ value: JSON) { print(value.canonicalString) }

    /// After edits were sent and acknowledged: refreshing the local replica is a convenience, so its failure is a
    /// warning on standard error, not a failed command.
    static func refreshReplica(_ client: TimelineClient) async {
        do {
            _ = try await client.pull()
        } catch {
            FileHandle.standardError.write(
                Data(
                    "warning: sent, but the local replica was not updated (\(describe(error))); run timeline pull\n"
                        .utf8))
        }
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case let e as ClientError: return "\(e.code): \(e.message)"
        case let e as TimelineError: return "\(e.code.rawValue): \(e.message)"
        default: return "\(error)"
        }
    }

    static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
    }

    static func clip(_ s: String, _ width: Int) -> String {
        let one = s.replacingOccurrences(of: "\n", with: " ")
        return one.count <= width ? one : String(one.prefix(width - 1)) + "…"
    }

    /// One line per event: short ID, date as written, title.
    static func eventLines(_ views: [EventView]) {
        let short = ShortID.prefixes(views.map(\.event.id.description), minimum: 8)
        let idWidth = short.values.map(\.count).max() ?? 8
        let dateWidth = min(28, views.map(\.event.date.text.count).max() ?? 10)
        for v in views {
            let notes = v.annotations.filter { !$0.retracted }.count
            let tags = v.event.tags.isEmpty ? "" : " " + dim(v.event.tags.map { "#" + $0 }.joined(separator: " "))
            let badge = notes > 0 ? dim(" [\(notes) note\(notes == 1 ? "" : "s")]") : ""
            print(
                "\(bold(pad(short[v.event.id.description] ?? "", idWidth)))  \(pad(clip(v.event.date.text, dateWidth), dateWidth))  "
                    + clip(v.event.title, 70) + tags + badge)
        }
    }

    static func eventDetail(_ v: EventView, pending: [OutboxItem]) {
        let e = v.event
        print(bold(e.title))
        print("id        \(e.id)   revision \(e.revision)\(e.deleted ? "   " + warn("DELETED") : "")")
        let span = e.date.start.map { s in e.date.end.map { "\(s.iso) – \($0.iso)" } ?? s.iso } ?? "unknown"
        print("date      \(e.date.text)   \(dim("(\(span), \(e.date.precision.rawValue))"))")
        if !e.tags.isEmpty { print("tags      \(e.tags.joined(separator: ", "))") }
        print("")
        print(e.summary)
        if !e.references.isEmpty {
            print("")
            for r in e.references { print(dim("[\(r.number)] ") + clip(r.text, 200)) }
        }
        if !v.annotations.isEmpty {
            print("")
            for a in v.annotations {
                let state = a.retracted ? warn(" (retracted)") : ""
                let tags = a.tags.isEmpty ? "" : dim(" " + a.tags.map { "#" + $0 }.joined(separator: " "))
                print(
                    "• \(a.author), \(a.created.rfc3339.prefix(16).replacingOccurrences(of: "T", with: " ")): \(a.text)\(tags)\(state)  \(dim(a.id.description))"
                )
            }
        }
        for item in pending {
            print(warn("• pending: ") + clip(item.proposal.canonicalString, 160))
        }
    }

    static func editLine(_ edit: Edit) -> String {
        var what = edit.operation.rawValue
        switch edit.change {
        case .updateEvent(let p):
            let fields =
                p.setFields.map(\.0) + (p.addTags.isEmpty ? [] : ["+" + p.addTags.joined(separator: ",+")])
                + (p.removeTags.isEmpty ? [] : ["-" + p.removeTags.joined(separator: ",-")])
            what += " " + fields.joined(separator: " ")
        case .addAnnotation(_, let text, _): what += " \"\(clip(text, 60))\""
        case .updateAnnotation(_, let p): what += p.text.map { " \"\(clip($0, 60))\"" } ?? ""
        case .createEvent(let f): what += " \"\(clip(f.title, 60))\""
        default: break
        }
        return
            "v\(edit.version)  r\(edit.revision)  \(edit.time.rfc3339.prefix(19).replacingOccurrences(of: "T", with: " "))  \(pad(edit.author, 12))  \(what)"
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
