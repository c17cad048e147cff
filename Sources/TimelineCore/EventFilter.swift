/// What `LOG` asks for. Everything is optional; text matches title, summary and date text case-insensitively.
public struct EventFilter: Sendable, Hashable {
    /// Events whose span ends on or after this day.
    public var from: CivilDay?
    /// Events whose span starts on or before this day.
    public var until: CivilDay?
    public var tag: String?
    public var text: String?
    public var includeDeleted: Bool
    public var limit: Int
    /// `tag` and `text` also match an event through its annotations (not retracted): their tags, and their text
    /// and author. What a person searching means; LOG on the wire filters events only.
    public var throughAnnotations: Bool
    /// Only events with an annotation (not retracted) by this author.
    public var annotationAuthor: String?

    public init(
        from: CivilDay? = nil, until: CivilDay? = nil, tag: String? = nil, text: String? = nil,
        includeDeleted: Bool = false, limit: Int = 10_000, throughAnnotations: Bool = false,
        annotationAuthor: String? = nil
    ) {
        self.from = from
        self.until = until
        self.tag = tag
        self.text = text
        self.includeDeleted = includeDeleted
        self.limit = limit
        self.throughAnnotations = throughAnnotations
        self.annotationAuthor = annotationAuthor
    }
}
