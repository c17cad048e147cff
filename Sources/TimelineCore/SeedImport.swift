/// Something doubtful an import noticed; the data is kept as written and the warning says where.
public struct ImportWarning: Sendable, Hashable, CustomStringConvertible {
    public var line: Int
    public var message: String
    public var description: String { "line \(line): \(message)" }
}

/// A timeline document in the "seed text" style: a header (source, last updated), bullet lines
/// `l  DATE: text [n]`, and a numbered reference list `[n] citation`.
public struct SeedDocument: Sendable {
    public struct Entry: Sendable, Hashable {
        /// 1-based line in the document.
        public var line: Int
        public var fields: EventFields
    }

    public var entries: [Entry]
    /// Every reference of the list, cited or not.
    public var references: [Reference]
    /// `source`, `updated`, `header`, `notes`, `references`: what the document says besides its events.
    public var meta: [String: JSON]
    public var warnings: [ImportWarning]

    /// Parses a document. Only input that is not text at all is refused; everything else is kept, with
    /// warnings where something is doubtful.
    public static func parse(_ bytes: [UInt8]) throws(TimelineError) -> SeedDocument {
        let lines = try TextLines.split(bytes)
        var parser = SeedParser()
        for (index, line) in lines.enumerated() { parser.take(line, number: index + 1) }
        return parser.finish()
    }

    /// The edits that load this document into an empty timeline: its metadata, then one `event.create` per
    /// entry. IDs derive from `idSeed` and the entry's line, so loading the same document twice with the same
    /// seed gives the same IDs (the bundled sample is the same on every server).
    public func proposals(author: String, time: Timestamp, idSeed: String) -> [Proposal] {
        var out = [Proposal(event: nil, change: .setMeta(meta), base: 0, author: author, time: time)]
        for entry in entries {
            let id = EventID(ULID.derived(at: time, seed: "\(idSeed)#\(entry.line)"))
            out.append(Proposal(event: id, change: .createEvent(entry.fields), base: 0, author: author, time: time))
        }
        return out
    }
}

/// Splits a document into lines: UTF-8 strictly (a bad byte is refused with its line number), an
/// optional BOM dropped, LF or CRLF endings.
public enum TextLines {
    /// Whether `text` is empty or white space only, as `allSatisfy(\.isWhitespace)` answers: a byte of ASCII that
    /// is not white space settles it without Unicode's property tables (a line or a text checked that way cost a
    /// twentieth of checking a batch). Such a byte starts a character of its own or follows a prepended mark in
    /// one, and neither is white space.
    public static func isBlank(_ text: String) -> Bool {
        for byte in text.utf8 where byte < 0x80 && byte != 0x20 && !(0x09...0x0D).contains(byte) { return false }
        return text.allSatisfy(\.isWhitespace)
    }

    public static func split(_ bytes: [UInt8]) throws(TimelineError) -> [String] {
        var start = 0
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { start = 3 }
        var lines: [String] = []
        var lineStart = start
        var number = 1
        func emit(_ end: Int) throws(TimelineError) {
            var stop = end
            if stop > lineStart, bytes[stop - 1] == 0x0D { stop -= 1 }
            let slice = bytes[lineStart..<stop]
            guard let line = String(validating: slice, as: UTF8.self) else {
                throw TimelineError(.badUTF8, "line \(number): not valid UTF-8")
            }
            // In valid UTF-8 a NUL scalar is the byte 0 and nothing else is: the bytes tell, without decoding
            // every line's scalars (this split runs before `timeline batch` checks its lines on every core).
            guard !slice.contains(0) else {
                throw TimelineError(.badImport, "line \(number): contains a NUL byte")
            }
            lines.append(line)
        }
        while let newline = bytes[lineStart...].firstIndex(of: 0x0A) {
            try emit(newline)
            number += 1
            lineStart = newline + 1
        }
        if lineStart < bytes.count { try emit(bytes.count) }
        return lines
    }
}

struct SeedParser {
    var entries: [SeedDocument.Entry] = []
    var references: [Reference] = []
    var referenceLines: [Int: Int] = [:]  // number → line
    var header: [String] = []
    var notes: [String] = []
    var source: String?
    var updated: String?
    var warnings: [ImportWarning] = []
    /// (line, date text, body) of bullets, resolved against the reference list at the end.
    var pending: [(line: Int, date: String, body: String)] = []

    static let bullets: Set<Character> = ["l", "•", "·", "・", "-", "*", "●", "○", "■", "◆", "▪"]

    mutating func take(_ raw: String, number: Int) {
        let line = raw.trimmingSpaces()
        if line.isEmpty { return }
        if let (n, citation) = Self.referenceLine(line) {
            if let first = referenceLines[n] {
                warnings.append(
                    ImportWarning(
                        line: number,
                        message:
                            "reference [\(n)] is listed again (first on line \(first)); kept in the document's notes (its metadata)"
                    ))
                notes.append(line)
                return
            }
            referenceLines[n] = number
            references.append(Reference(number: n, text: citation, urls: Self.urls(in: citation)))
            return
        }
        if let bulletBody = Self.bulletBody(line) {
            guard let colon = bulletBody.firstIndex(of: ":") else {
                warnings.append(
                    ImportWarning(
                        line: number,
                        message:
                            "bullet without \"DATE:\"; kept in the document's notes (its metadata), not as an event"))
                notes.append(line)
                return
            }
            let date = String(bulletBody[..<colon]).trimmingSpaces()
            let body = String(bulletBody[bulletBody.index(after: colon)...]).trimmingSpaces()
            guard !date.isEmpty, date.count <= 200 else {
                warnings.append(
                    ImportWarning(
                        line: number,
                        message:
                            "bullet without a date before \":\"; kept in the document's notes (its metadata), not as an event"
                    ))
                notes.append(line)
                return
            }
            pending.append((number, date, body))
            return
        }
        if updated == nil, let value = Self.updatedLine(line) {
            let (date, _) = EventDate.parse(value)
            if let day = date.start, date.precision == .day {
                updated = day.iso
            } else {
                updated = value
                warnings.append(
                    ImportWarning(line: number, message: "last-updated date \"\(value)\" not understood; kept as text"))
            }
            source = header.last
            return
        }
        if pending.isEmpty && references.isEmpty { header.append(line) } else { notes.append(line) }
    }

    /// `[12] citation` → (12, "citation").
    static func referenceLine(_ line: String) -> (Int, String)? {
        guard line.first == "[", let close = line.firstIndex(of: "]") else { return nil }
        let digits = line[line.index(after: line.startIndex)..<close]
        guard !digits.isEmpty, digits.count <= 6, digits.allSatisfy(\.isASCII), let n = Int(digits) else { return nil }
        let rest = String(line[line.index(after: close)...]).trimmingSpaces()
        return (n, rest)
    }

    /// The text after a bullet marker, or nil when the line is no bullet.
    static func bulletBody(_ line: String) -> Substring? {
        guard let first = line.first, bullets.contains(first) else { return nil }
        let rest = line.dropFirst()
        // The marker must be followed by white space ("l  2009: …"), or "like this" would be a bullet.
        guard let next = rest.first, next.isWhitespace else { return nil }
        return rest.drop(while: \.isWhitespace)
    }

    static func updatedLine(_ line: String) -> String? {
        let lower = line.lowercased()
        for marker in ["最終更新日", "last updated", "last update", "updated"] where lower.hasPrefix(marker) {
            guard let colon = line.firstIndex(where: { $0 == ":" || $0 == "：" }) else { return nil }
            return String(line[line.index(after: colon)...]).trimmingSpaces()
        }
        return nil
    }

    /// `http://` and `https://` URLs, without the sentence punctuation that follows them.
    static func urls(in text: String) -> [String] {
        var out: [String] = []
        var rest = Substring(text)
        while true {
            let candidates = [rest.firstRange(of: "http://"), rest.firstRange(of: "https://")].compactMap { $0 }
            guard let start = candidates.map(\.lowerBound).min() else { break }
            let tail = rest[start...]
            let end =
                tail.firstIndex(where: { $0.isWhitespace || $0 == "\"" || $0 == "”" || $0 == "<" }) ?? tail.endIndex
            var url = String(tail[..<end])
            while let last = url.last, ".,;:)]’'".contains(last) { url.removeLast() }
            if url.count > 8 { out.append(url) }
            rest = tail[end...]
        }
        return out
    }

    /// `[n]` markers in event text, in order of first appearance.
    static func citations(in text: String) -> [Int] {
        var out: [Int] = []
        var rest = Substring(text)
        while let open = rest.firstIndex(of: "[") {
            let after = rest[rest.index(after: open)...]
            guard let close = after.firstIndex(of: "]") else { break }
            let digits = after[..<close]
            if !digits.isEmpty, digits.count <= 6, digits.allSatisfy({ $0.isASCII && $0.isNumber }),
                let n = Int(digits),
                !out.contains(n)
            {
                out.append(n)
            }
            rest = after
        }
        return out
    }

    /// The first sentence without citation markers, shortened at a word boundary when long.
    static func title(from body: String) -> String {
        var plain = ""
        var rest = Substring(body)
        while let open = rest.firstIndex(of: "[") {
            plain += rest[..<open]
            let after = rest[rest.index(after: open)...]
            if let close = after.firstIndex(of: "]"), !after[..<close].isEmpty,
                after[..<close].allSatisfy({ $0.isASCII && $0.isNumber })
            {
                rest = after[after.index(after: close)...]
            } else {
                plain.append("[")
                rest = after
            }
        }
        plain += rest
        plain = plain.trimmingSpaces()
        let words = plain.split(separator: " ", omittingEmptySubsequences: true)
        var title = ""
        for word in words {
            let candidate = title.isEmpty ? String(word) : title + " " + word
            if candidate.count > 100 { return title + "…" }
            title = candidate
            // A sentence ends at a full stop after a lower-case word of more than one letter ("Tokyo." but not "Mr.").
            if word.count > 2, word.hasSuffix("."), let before = word.dropLast().last, before.isLowercase {
                return String(title.dropLast())
            }
        }
        return title
    }

    mutating func finish() -> SeedDocument {
        let byNumber = Dictionary(references.map { ($0.number, $0) }, uniquingKeysWith: { first, _ in first })
        for item in pending {
            let (date, dateWarnings) = EventDate.parse(item.date)
            for w in dateWarnings { warnings.append(ImportWarning(line: item.line, message: w)) }
            var cited: [Reference] = []
            for n in Self.citations(in: item.body) {
                if let r = byNumber[n] {
                    cited.append(r)
                } else {
                    warnings.append(
                        ImportWarning(
                            line: item.line, message: "cites [\(n)], which the reference list lacks; kept the number"))
                    cited.append(Reference(number: n, text: "", urls: []))
                }
            }
            let title = Self.title(from: item.body)
            entries.append(
                SeedDocument.Entry(
                    line: item.line,
                    fields: EventFields(
                        date: date, title: title.isEmpty ? item.date : title, summary: item.body, references: cited)))
        }
        var meta: [String: JSON] = [
            "format": "seed-text",
            "references": .array(references.map(\.json)),
        ]
        if !header.isEmpty { meta["header"] = .array(header.map { .string($0) }) }
        if !notes.isEmpty { meta["notes"] = .array(notes.map { .string($0) }) }
        if let source = source ?? header.last { meta["source"] = .string(source) }
        if let updated { meta["updated"] = .string(updated) }
        return SeedDocument(
            entries: entries, references: references, meta: meta, warnings: warnings.sorted { $0.line < $1.line })
    }
}

extension StringProtocol {
    /// Trims white space including the no-break spaces that documents converted from HTML are full of.
    func trimmingSpaces() -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })!
        return String(String.UnicodeScalarView(scalars[first...last]))
    }
}

extension Reference {
    /// A citation as a person types it: "[17] Sankei, …, http://…" keeps its number, one without gets `next`; its
    /// URLs are found in its text as the importer finds them.
    public static func typed(_ text: String, next: Int) -> Reference {
        var body = Substring(text.trimmingSpaces())
        var number = next
        if body.first == "[", let close = body.firstIndex(of: "]"),
            let n = Int(body[body.index(after: body.startIndex)..<close])
        {
            number = n
            body = body[body.index(after: close)...]
        }
        let citation = body.trimmingSpaces()
        return Reference(number: number, text: citation, urls: SeedParser.urls(in: citation))
    }
}
