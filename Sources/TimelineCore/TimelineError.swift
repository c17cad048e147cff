/// Why something was refused: a stable code for programs and one human sentence for people.
/// The message never carries secrets or internal paths; `detail` carries structured facts (a conflict).
/// The one error type of every layer: a refusal from the store, the wire, TLS, the server or the client.
public struct TimelineError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The stable code: one type for every layer.
    public typealias Code = ErrorCode

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
