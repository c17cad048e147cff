import NIOCore
import TimelineCore

/// An event named by a request: a whole ID, or a prefix of one (4 or more characters) for a person typing.
public enum EventReference: Sendable, Hashable, CustomStringConvertible {
    case id(EventID)
    case prefix(String)

    public init?(_ text: Substring) {
        if let id = EventID(String(text)) {
            self = .id(id)
        } else if text.count >= 4, text.count < 26, text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) {
            self = .prefix(String(text))
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .id(let id): id.description
        case .prefix(let p): p
        }
    }
}

/// A request's verb with its arguments, parsed and checked (Protocol/PROTOCOL.md, Appendix A): what the server
/// executes and what a client sends, written and read by this one type.
public enum Command: Sendable, Equatable {
    case auth(token: String)
    case ping
    case caps
    /// Edits after `since`, at most `limit` of them (the server's default when nil).
    case pull(since: Int64, limit: Int?)
    /// An event as it is, or as it was at a version.
    case get(EventReference, at: Int64?)
    case log(EventFilter)
    case history(EventReference)
    /// One edit: its JSON text, decoded by the server with the caller's identity.
    case propose(edit: String)
    /// `count` edit lines follow the request.
    case batch(count: Int)
    case watch(since: Int64)
    case conflicts
    case quit

    public var verb: Verb {
        switch self {
        case .auth: .auth
        case .ping: .ping
        case .caps: .caps
        case .pull: .pull
        case .get: .get
        case .log: .log
        case .history: .history
        case .propose: .propose
        case .batch: .batch
        case .watch: .watch
        case .conflicts: .conflicts
        case .quit: .quit
        }
    }

    /// The request line after the tag: `PULL 5 1000`, `GET 01J… AT 12`, `LOG {"tag":"x"}`.
    public var line: String {
        switch self {
        case .auth(let token): "AUTH \(token)"
        case .ping, .caps, .conflicts, .quit: verb.rawValue
        case .pull(let since, let limit): "PULL \(since)" + (limit.map { " \($0)" } ?? "")
        case .get(let ref, let at): "GET \(ref)" + (at.map { " AT \($0)" } ?? "")
        case .log(let filter):
            filter == EventFilter(limit: Self.logDefaultLimit) ? "LOG" : "LOG \(Self.json(filter).canonicalString)"
        case .history(let ref): "HISTORY \(ref)"
        case .propose(let edit): "PROPOSE \(edit)"
        case .batch(let count): "BATCH \(count)"
        case .watch(let since): "WATCH \(since)"
        }
    }

    /// LOG's limit when its filter names none.
    public static let logDefaultLimit = 10_000
    /// The largest LOG limit.
    public static let logMaxLimit = 100_000
    /// The longest text LOG searches for, in bytes.
    public static let logMaxText = 1_000

    /// Parses a verb's arguments (the rest of the line after the verb and one space, verbatim).
    public static func parse(_ verb: Verb, _ arguments: String) -> Result<Command, TimelineError> {
        let words = arguments.split(separator: " ", omittingEmptySubsequences: true)
        func usage(_ message: String) -> Result<Command, TimelineError> {
            .failure(TimelineError(.badArgument, message))
        }
        switch verb {
        case .ping, .caps, .conflicts, .quit:
            return words.isEmpty ? .success(bare(verb)) : usage("\(verb.rawValue) takes no arguments")
        case .auth:
            guard words.count == 1 else { return usage("usage: AUTH token") }
            return .success(.auth(token: String(words[0])))
        case .pull:
            guard (1...2).contains(words.count), let since = number(words[0]) else {
                return usage("usage: PULL since [limit]")
            }
            guard words.count == 2 else { return .success(.pull(since: since, limit: nil)) }
            guard let limit = number(words[1]).map(Int.init), limit >= 1 else {
                return usage("limit must be a positive integer")
            }
            return .success(.pull(since: since, limit: limit))
        case .get:
            guard words.count == 1 || (words.count == 3 && words[1].uppercased() == "AT") else {
                return usage("usage: GET id [AT version]")
            }
            guard let ref = EventReference(words[0]) else { return notAnID(words[0]) }
            guard words.count == 3 else { return .success(.get(ref, at: nil)) }
            guard let at = number(words[2]) else { return usage("AT takes a version, 0 or more") }
            return .success(.get(ref, at: at))
        case .history:
            guard words.count == 1 else { return usage("usage: HISTORY id") }
            guard let ref = EventReference(words[0]) else { return notAnID(words[0]) }
            return .success(.history(ref))
        case .log:
            return logFilter(arguments).map { .log($0) }
        case .propose:
            guard !arguments.isEmpty else { return usage("usage: PROPOSE {json edit}") }
            return .success(.propose(edit: arguments))
        case .batch:
            guard words.count == 1, let n = number(words[0]).map(Int.init), n >= 1 else {
                return usage("usage: BATCH n, then n lines of JSON edits")
            }
            return .success(.batch(count: n))
        case .watch:
            guard words.count == 1, let since = number(words[0]) else { return usage("usage: WATCH since") }
            return .success(.watch(since: since))
        }
    }

    private static func bare(_ verb: Verb) -> Command {
        switch verb {
        case .caps: .caps
        case .conflicts: .conflicts
        case .quit: .quit
        default: .ping
        }
    }

    private static func notAnID(_ text: Substring) -> Result<Command, TimelineError> {
        .failure(
            TimelineError(
                .badArgument, "\"\(text.prefix(40))\" is not an event ID or a prefix of 4 or more characters"))
    }

    /// A version or a count as the grammar writes it: decimal digits, no sign, no leading zero (but `0` itself),
    /// at most 18 digits (it fits a signed 64-bit integer).
    public static func number(_ word: Substring) -> Int64? {
        let bytes = word.utf8
        guard !bytes.isEmpty, bytes.count <= 18, bytes.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            bytes.count == 1 || bytes.first != 0x30
        else { return nil }
        return Int64(word)
    }

    /// LOG's filter keys, each spelled once: what `logFilter` reads and `json` writes.
    private enum LogKey {
        static let from = "from", until = "until", tag = "tag", text = "text", limit = "limit"
        static let deleted = "deleted"
        static let all: Set<String> = [from, until, tag, text, limit, deleted]
    }

    private static func logFilter(_ arguments: String) -> Result<EventFilter, TimelineError> {
        var filter = EventFilter(limit: logDefaultLimit)
        guard !arguments.isEmpty else { return .success(filter) }
        func bad(_ message: String) -> Result<EventFilter, TimelineError> {
            .failure(TimelineError(.badArgument, message))
        }
        let json: JSON
        do { json = try JSON(parsing: arguments) } catch {
            return .failure(TimelineError(.badJSON, "LOG filter: \(error)"))
        }
        guard let o = json.objectValue else { return bad("LOG takes a JSON object") }
        for key in o.keys.sorted() where !LogKey.all.contains(key) { return bad("unknown filter \"\(key)\"") }
        func day(_ key: String) -> CivilDay?? {
            guard let v = o[key] else { return .some(nil) }
            guard let s = v.stringValue, let d = CivilDay(iso: s) else { return nil }
            return .some(d)
        }
        guard let from = day(LogKey.from), let until = day(LogKey.until) else {
            return bad("from and until are YYYY-MM-DD")
        }
        filter.from = from
        filter.until = until
        if let v = o[LogKey.tag] {
            guard let t = v.stringValue, Tags.isValid(t) else { return bad("tag must be a tag") }
            filter.tag = t
        }
        if let v = o[LogKey.text] {
            guard let t = v.stringValue, t.utf8.count <= logMaxText else {
                return bad("text must be a string of at most \(logMaxText) bytes")
            }
            filter.text = t
        }
        if let v = o[LogKey.limit] {
            guard let l = v.intValue, l >= 1, l <= logMaxLimit else { return bad("limit must be 1 to \(logMaxLimit)") }
            filter.limit = Int(l)
        }
        if let v = o[LogKey.deleted] {
            guard let b = v.boolValue else { return bad("deleted must be true or false") }
            filter.includeDeleted = b
        }
        return .success(filter)
    }

    /// A filter as LOG's JSON object (what the wire can say: not the client's own search options).
    private static func json(_ filter: EventFilter) -> JSON {
        var o: [String: JSON] = [:]
        if let d = filter.from { o[LogKey.from] = .string(d.description) }
        if let d = filter.until { o[LogKey.until] = .string(d.description) }
        if let t = filter.tag { o[LogKey.tag] = .string(t) }
        if let t = filter.text { o[LogKey.text] = .string(t) }
        if filter.limit != logDefaultLimit { o[LogKey.limit] = .int(Int64(filter.limit)) }
        if filter.includeDeleted { o[LogKey.deleted] = true }
        return .object(o)
    }
}
