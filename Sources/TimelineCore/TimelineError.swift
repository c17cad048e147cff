/// Why something was refused: a stable code for programs and one human sentence for people.
/// The message never carries secrets or internal paths; `detail` carries structured facts (a conflict).
public struct TimelineError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        /// Not valid JSON (or not the JSON subset the timeline accepts).
        public static let badJSON = Code(rawValue: "BAD_JSON")
        /// Input that is not valid UTF-8.
        public static let badUTF8 = Code(rawValue: "BAD_UTF8")
        /// An `op` that the timeline does not know.
        public static let unknownOperation = Code(rawValue: "UNKNOWN_OP")
        /// A field missing, of the wrong type, or out of its limits.
        public static let badField = Code(rawValue: "BAD_FIELD")
        /// An event or annotation that does not exist.
        public static let notFound = Code(rawValue: "NOT_FOUND")
        /// An ID that already exists.
        public static let duplicateID = Code(rawValue: "DUPLICATE_ID")
        /// The same field changed to two different values; `detail` names them.
        public static let conflict = Code(rawValue: "CONFLICT")
        /// A base revision newer than the event's current revision.
        public static let badBase = Code(rawValue: "BAD_BASE")
        /// The change is not allowed in the annotation's or event's present state.
        public static let invalidState = Code(rawValue: "INVALID_STATE")
        /// Not allowed to this author (another author's annotation, above the token's role).
        public static let forbidden = Code(rawValue: "FORBIDDEN")
        /// A document that could not be imported.
        public static let badImport = Code(rawValue: "BAD_IMPORT")
        /// The store refused or failed the write (disk full, I/O error); nothing was written.
        public static let storeFailed = Code(rawValue: "STORE_FAILED")
        /// The store's log or state is inconsistent.
        public static let corrupt = Code(rawValue: "CORRUPT")
        /// A version outside the log (negative, or beyond the current version).
        public static let badVersion = Code(rawValue: "BAD_VERSION")
        /// A store created for a different dataset.
        public static let wrongDataset = Code(rawValue: "WRONG_DATASET")
        /// A data folder another process writes (a second `serve` or `import`).
        public static let inUse = Code(rawValue: "IN_USE")
    }

    public var code: Code
    public var message: String
    public var detail: JSON?

    public init(_ code: Code, _ message: String, detail: JSON? = nil) {
        self.code = code
        self.message = message
        self.detail = detail
    }

    public var description: String { "\(code.rawValue): \(message)" }

    /// The same error with a prefix saying where it happened ("line 12: …", "edit 3 of 10: …").
    public func at(_ location: String) -> TimelineError {
        TimelineError(code, "\(location): \(message)", detail: detail)
    }
}
