import ArgumentParser
import Foundation
import TimelineClient
import TimelineCore
import TimelineLink

struct Annotate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Annotate an event: stored first, then sent at once when the server is reachable.",
        discussion: """
            The note is the TEXT argument, or the file given with --file (- for standard input), or, with \
            neither, what you write in $VISUAL or $EDITOR (lines starting with # are left out), as git commit does.
            Examples:
              timeline annotate 94EPPCE "Confirmed by the MOFA fact sheet" --tag verified
              timeline annotate 94EPPCE --file note.md
              timeline annotate 94EPPCE
            """)
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Event ID (short or whole).") var id: String
    @Argument(help: "The note's text.") var text: String?
    @Option(
        name: [.customShort("F"), .customLong("file")], help: "Read the note from this file (- for standard input).")
    var file: String?
    @Option(name: .customLong("tag"), help: "A tag (repeatable).") var tags: [String] = []

    func validate() throws {
        if text != nil, file != nil { throw ValidationError("give the note as TEXT or with --file, not both") }
        if let text, text.allSatisfy(\.isWhitespace) { throw ValidationError("the text is empty") }
        for tag in tags where !Tags.isValid(tag) {
            throw ValidationError("\"\(tag)\" is not a tag (1-64 bytes, no spaces)")
        }
    }

    func run() async throws {
        let client = try global.client()
        let eventID = try await client.resolve(id)
        let event = try await client.event(eventID).event
        let note = try text ?? NoteSource.read(file: file, about: event)
        let (annotation, item) = try await client.annotateQueued(eventID, text: note, tags: tags)
        try await Sending.sendNow(
            client, item: item, json: global.json,
            edit: [
                "op": "annotation.add", "annotation": .string(annotation.description),
                "event": .string(eventID.description),
            ]
        ) {
            let short = (try? await client.shortForms([annotation.description, eventID.description])) ?? [:]
            return
                "annotation \(short[annotation.description] ?? annotation.description) on \(Output.name(eventID, short: short, title: event.title))"
        }
    }
}

/// A note longer than a command line: from a file, standard input, or the person's editor.
enum NoteSource {
    static func read(file: String?, about event: Event) throws -> String {
        let text: String
        if let file {
            let data =
                file == "-"
                ? FileHandle.standardInput.readDataToEndOfFile()
                : FileManager.default.contents(atPath: (file as NSString).expandingTildeInPath)
            guard let data else { throw TimelineError(.notFound, "cannot read \(file)") }
            guard let decoded = String(data: data, encoding: .utf8) else {
                throw TimelineError(.badField, "\(file) is not UTF-8 text")
            }
            text = decoded
        } else {
            guard isatty(STDIN_FILENO) == 1 else {
                throw ValidationError("no note: give it as TEXT, with --file FILE, or --file - to read standard input")
            }
            text = try edit(about: event)
        }
        // Trailing white space is the editor's or the file's, not the note's.
        var note = text
        while let last = note.last, last.isWhitespace { note.removeLast() }
        guard !note.allSatisfy(\.isWhitespace) else {
            throw TimelineError(.badField, "the note is empty; nothing was queued")
        }
        return note
    }

    /// Opens $VISUAL or $EDITOR (vi by default) on a file that names the event; returns what was written, without
    /// the lines starting with #.
    static func edit(about event: Event) throws -> String {
        let env = ProcessInfo.processInfo.environment
        let editor = [env["VISUAL"], env["EDITOR"]].compactMap { $0 }.first { !$0.isEmpty } ?? "vi"
        let path = NSTemporaryDirectory() + "timeline-note-\(getpid()).md"
        let header = """

            # Your note on “\(event.title)” (\(event.date.text)).
            # Lines starting with # are left out; an empty note queues nothing.

            """
        guard
            FileManager.default.createFile(
                atPath: path, contents: Data(header.utf8), attributes: [.posixPermissions: 0o600])
        else { throw TimelineError(.storeFailed, "cannot write \(path)") }
        defer { try? FileManager.default.removeItem(atPath: path) }
        // Spawned in this process's group, with its terminal: an editor started in a group of its own (as
        // Foundation's Process does) is not in the terminal's foreground and cannot read the keyboard.
        var child: pid_t = 0
        let words: [String] = ["/bin/sh", "-c", "\(editor) \"$1\"", "sh", path]
        let argv: [UnsafeMutablePointer<CChar>?] = words.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        guard posix_spawn(&child, "/bin/sh", nil, nil, argv, environ) == 0 else {
            throw TimelineError(.editor, "cannot start \(editor); set VISUAL or EDITOR, or give the note with --file")
        }
        var status: Int32 = 0
        while waitpid(child, &status, 0) == -1 && errno == EINTR {}
        let exited = (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        guard exited == 0 else {
            throw TimelineError(
                .editor,
                exited == 127
                    ? "the editor \(editor) was not found; set VISUAL or EDITOR, or give the note with --file; nothing was queued"
                    : "the editor \(editor) exited with status \(exited); nothing was queued")
        }
        let written = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return written.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.hasPrefix("#") }
            .joined(separator: "\n")
    }
}
