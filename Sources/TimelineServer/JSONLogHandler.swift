import Foundation
import Logging
import NIOConcurrencyHelpers
import TimelineCore
import TimelineStore

/// `--log-format json`: one JSON object per line on standard error, for the journal or a collector to index —
/// `time`, `level`, `label`, `message`, then each metadata key as its own member (a connection's `peer`,
/// `connection` and `user`; a refusal's `tag`, `verb` and `code`; an error's `error`).
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    /// One lock for the process's log lines: two never interleave.
    static let output = NIOLock()

    public init(label: String, level: Logger.Level) {
        self.label = label
        logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var members: [String: JSON] = [:]
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { $1 } }
        if let explicit = event.metadata { all.merge(explicit) { $1 } }
        for (key, value) in all { members[key] = Self.json(value) }
        if let error = event.error { members["error"] = .string("\(error)") }
        members["time"] = .string(WallClock.now().rfc3339)
        members["level"] = .string(event.level.rawValue)
        members["label"] = .string(label)
        members["message"] = .string(event.message.description)
        let line = Data(JSON.object(members).canonicalBytes + [0x0A])
        Self.output.withLock { FileHandle.standardError.write(line) }
    }

    static func json(_ value: Logger.Metadata.Value) -> JSON {
        switch value {
        case .string(let s): .string(s)
        case .stringConvertible(let c): .string(c.description)
        case .array(let a): .array(a.map(json))
        case .dictionary(let d): .object(d.mapValues(json))
        }
    }
}
