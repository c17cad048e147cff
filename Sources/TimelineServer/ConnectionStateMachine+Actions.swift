import Logging
import NIOCore
import TimelineCore
import TimelineStore
import TimelineWire

/// A write decoded by its connection, or the refusal to send in its place.
enum DecodedWrite: Sendable {
    case proposals([Proposal])
    case refused(Reply)
}

extension ConnectionStateMachine {
    struct Configuration {
        var limits: Limits
        /// The dataset served (a RESYNC names it).
        var dataset: String
        /// An office replica forwards writes upstream one at a time instead of committing them in flight.
        var forwardsWrites: Bool
        /// Who a token hash stands for now (nil once it is revoked): asked before each request, and each second
        /// while watching, so that a revoked token stops at its next request and a watcher within a second.
        var identityOfToken: @Sendable (Digest) -> Identity?
        /// Told of each request line parsed (its tag, and its verb or `INVALID`), and of the edits a watcher is
        /// sent: for metrics and logs.
        var requestParsed: @Sendable (_ tag: String?, _ verb: String) -> Void = { _, _ in }
        var editsWatched: @Sendable (Int) -> Void = { _ in }
        /// Writes in flight at once on one connection.
        var maxWritesInFlight = 32
        /// Edits read from the store per page while a watcher catches up.
        var watchPage = 1_000
    }

    typealias Identity = TokenStore.Identity

    enum Action {
        /// Write the replies as one buffer, and flush.
        case send([Reply])
        /// Write the replies as one buffer; a `flush` follows.
        case write([Reply])
        /// Write EDIT lines already encoded.
        case writeEdits(ByteBuffer)
        case flush
        /// Close once what was written has reached the socket (or the close grace has passed).
        case close
        /// Ask the channel for more input.
        case read
        /// Read the capabilities for the greeting, then report `greeted`.
        case greet
        /// Execute a verb against the store; report `answered` with its replies.
        case run(tag: String, Command, Identity)
        /// Forward a BATCH upstream (an office replica); report `answered`.
        case forwardBatch(tag: String, lines: [String], Identity)
        /// Decode a write in flight; report `decoded(number, …)`. A BATCH is decoded off the event loop.
        case decodePropose(number: Int, tag: String, edit: String, Identity)
        case decodeBatch(number: Int, tag: String, lines: [String], Identity)
        /// Hand decoded proposals to the store; report `committed(number, …)`.
        case submit(number: Int, tag: String, batch: Bool, [Proposal])
        /// Look the token up; report `authenticated` or `authenticationFailed`.
        case authenticate(tag: String, token: String)
        /// Hold a refused AUTH's answer (longer for repeated failures from one address); report `refusalDue`.
        case delayRefusal(tag: String)
        /// Register as a watcher (live edits reported by `live`) and read the head; report `watchHead`.
        case startWatch(since: Int64)
        /// Stop receiving live edits.
        case stopWatch
        /// Read stored edits after `after` and the head; report `watchPage` or `watchFailed`.
        case fetchWatchPage(after: Int64)
        /// Report `watchWritten` once what was written reached the socket, or `watchStalled` if it does not
        /// within the close grace.
        case reportWhenWritten
        /// Check the watcher's token in a second (`revocationCheckDue`).
        case scheduleRevocationCheck
        /// Report `authTimerFired` after the AUTH timeout.
        case scheduleAuthTimer(after: TimeAmount)
        case scheduleIdleCheck(after: TimeAmount)
        case cancelIdleCheck
        case cancelAuthTimer
        case log(Logger.Level, String)
    }
}
