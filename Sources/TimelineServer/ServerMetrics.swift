import Metrics
import NIOConcurrencyHelpers
import TimelineCore

/// What the server counts, through swift-metrics: `timelined serve --metrics` exports it in Prometheus's text
/// format; without a backend each call is a no-op. Names follow Prometheus's conventions (`_total` counters, base
/// units).
final class ServerMetrics: Sendable {
    let connectionsOpen = Gauge(label: "timeline_connections_open")
    let connections = Counter(label: "timeline_connections_total")
    let authFailures = Counter(label: "timeline_auth_failures_total")
    /// From a PROPOSE's or BATCH's submission to the store until it is durable (or refused).
    let commitSeconds = Metrics.Timer(label: "timeline_commit_seconds")
    let editsAppended = Counter(label: "timeline_edits_appended_total")
    let editsPulled = Counter(label: "timeline_edits_sent_total", dimensions: [("by", "pull")])
    let editsWatched = Counter(label: "timeline_edits_sent_total", dimensions: [("by", "watch")])
    let watchers = Gauge(label: "timeline_watchers")
    /// Counters with labels, made once per set of values (the values are bounded: verbs and error codes).
    private let labelled = NIOLockedValueBox<[Key: Counter]>([:])

    /// A counter's name and its labels' values (each name has its labels in one order).
    private struct Key: Hashable {
        var name: String
        var values: [String]
    }

    /// Counts one more of `name{labels}`.
    func count(_ name: String, _ labels: [(String, String)]) {
        let id = Key(name: name, values: labels.map(\.1))
        let counter = labelled.withLockedValue { counters in
            if let known = counters[id] { return known }
            let made = Counter(label: name, dimensions: labels)
            counters[id] = made
            return made
        }
        counter.increment()
    }

    /// A request answered: by its verb (`INVALID` for a line that was not a request) and its result, `OK` or the
    /// error code.
    func answered(verb: String, result: String) {
        count("timeline_requests_total", [("verb", verb), ("result", result)])
    }

    /// A `* BYE`, by its code; those at the door (too many connections, shutting down) are refused connections.
    func disconnected(_ code: ErrorCode) {
        count("timeline_disconnects_total", [("reason", code.rawValue)])
        if code == .tooManyConnections || code == .shuttingDown {
            count("timeline_connections_refused_total", [("reason", code.rawValue)])
        }
    }
}
