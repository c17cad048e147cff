import Metrics
import NIOConcurrencyHelpers
import TimelineWire

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
    /// Counters with one label, made once per value (the labels' values are bounded: verbs and error codes).
    private let labelled = NIOLockedValueBox<[String: Counter]>([:])

    /// Counts one more of `name{key="value"}`.
    func count(_ name: String, _ key: String, _ value: String) {
        let id = name + "\u{0}" + value
        let counter = labelled.withLockedValue { counters in
            if let known = counters[id] { return known }
            let made = Counter(label: name, dimensions: [(key, value)])
            counters[id] = made
            return made
        }
        counter.increment()
    }

    /// A request parsed (by verb; `INVALID` for a line that was not one).
    func request(_ verb: String) { count("timeline_requests_total", "verb", verb) }

    /// A tagged reply ending a request (`OK`, or the error code), a BYE (by its code), and connections refused
    /// at the door (too many, or shutting down).
    func replied(_ reply: Reply) {
        switch reply {
        case .ok: count("timeline_responses_total", "result", "OK")
        case .no(_, let code, _, _): count("timeline_responses_total", "result", code.rawValue)
        case .bad(_, let code, _): count("timeline_responses_total", "result", code.rawValue)
        case .bye(let code, _):
            count("timeline_disconnects_total", "reason", code.rawValue)
            if code == .tooManyConnections || code == .shuttingDown {
                count("timeline_connections_refused_total", "reason", code.rawValue)
            }
        default: break
        }
    }
}
