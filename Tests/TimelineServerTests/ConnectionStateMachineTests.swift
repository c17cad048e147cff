import NIOConcurrencyHelpers
import NIOCore
import Testing
import TimelineCore
import TimelineStore
import TimelineWire

@testable import TimelineServer

/// The connection's decisions, without sockets: events in, actions out.
@Suite struct ConnectionStateMachineTests {
    typealias Action = ConnectionStateMachine.Action

    static let editor = TokenStore.Identity(name: "ana", role: .editor)
    static let token = SHA256.hash(Array("tl_ana".utf8))

    /// A machine with a token store of one token, which a test may revoke.
    final class Harness {
        var machine: ConnectionStateMachine
        let tokens = NIOLockedValueBox<[Digest: TokenStore.Identity]>([token: editor])
        var now = NIODeadline.uptimeNanoseconds(0)

        init(limits: Limits = Limits(), forwardsWrites: Bool = false) {
            let tokens = self.tokens
            machine = ConnectionStateMachine(
                configuration: .init(
                    limits: limits, dataset: "d1", forwardsWrites: forwardsWrites,
                    identityOfToken: { hash in tokens.withLockedValue { $0[hash] } }),
                now: now)
        }

        /// Opened and greeted; authenticated unless told otherwise.
        func open(authenticate: Bool = true) {
            let opening = machine.opened(connections: 1, shuttingDown: false)
            #expect(opening.contains { if case .greet = $0 { true } else { false } })
            _ = machine.greeted(["version": 0])
            if authenticate { self.authenticate() }
        }

        func authenticate() {
            let auth = lines("a0 AUTH tl_ana")
            #expect(auth.contains { if case .authenticate(tag: "a0", token: "tl_ana") = $0 { true } else { false } })
            let ok = machine.authenticated("a0", as: ConnectionStateMachineTests.editor, tokenHash: token)
            #expect(sent(ok) == [#"a0 OK {"role":"editor","user":"ana"}"#])
        }

        /// Reads each line (as the channel hands them, one frame each); returns every action.
        func lines(_ text: String...) -> [Action] {
            text.flatMap { machine.lineRead(.line(ByteBuffer(string: $0)), now: now) }
        }
    }

    /// The lines the actions write, in order (EDIT lines by their version).
    static func sent(_ actions: [Action]) -> [String] {
        actions.flatMap { action -> [String] in
            switch action {
            case .send(let replies), .write(let replies): replies.map { String($0.line.dropLast()) }
            case .writeEdits(let buffer):
                String(buffer: buffer).split(separator: "\n").map { line in
                    let edit = try? WrittenEdit.edit(String(line))
                    return "EDIT \(edit ?? -1)"
                }
            default: []
            }
        }
    }

    static func runs(_ actions: [Action]) -> [String] {
        actions.compactMap { if case .run(let tag, let command, _) = $0 { "\(tag) \(command.line)" } else { nil } }
    }

    static func closes(_ actions: [Action]) -> Bool {
        actions.contains { if case .close = $0 { true } else { false } }
    }

    static func reads(_ actions: [Action]) -> Bool {
        actions.contains { if case .read = $0 { true } else { false } }
    }

    static func edit(_ version: Int64) -> Edit {
        let proposal = Proposal(
            event: EventID("01JQ8ZQW007TKPA8XK03963NRD")!, change: .deleteEvent, base: version - 1, author: "ana",
            time: Timestamp(milliseconds: 0))
        return Edit(version: version, revision: version, proposal: proposal, hash: SHA256.hash([UInt8(version)]))
    }

    @Test func requestsWaitForAUTHAndAreAnsweredOneAtATime() {
        let h = Harness()
        h.open(authenticate: false)
        #expect(Self.sent(h.lines("p1 PULL 0")) == ["p1 NO AUTH_REQUIRED PULL needs AUTH first"])
        // Arguments are checked only once the verb is allowed.
        #expect(Self.sent(h.lines("p2 PULL x")) == ["p2 NO AUTH_REQUIRED PULL needs AUTH first"])
        #expect(Self.runs(h.lines("p3 PING")) == ["p3 PING"])  // PING needs no AUTH
        #expect(Self.sent(h.machine.answered([.ok(tag: "p3", nil)])) == ["p3 OK"])
        h.authenticate()
        let first = h.lines("g1 GET 94EPPCE", "g2 HISTORY 94EPPCE")
        #expect(Self.runs(first) == ["g1 GET 94EPPCE"])  // g2 waits for g1's answer
        let second = h.machine.answered([.ok(tag: "g1", nil)])
        #expect(Self.sent(second) == ["g1 OK"])
        #expect(Self.runs(second) == ["g2 HISTORY 94EPPCE"])
        #expect(Self.sent(h.lines("g3 PULL x")) == [])  // queued behind g2
        #expect(
            Self.sent(h.machine.answered([.ok(tag: "g2", nil)])) == [
                "g2 OK", "g3 BAD BAD_ARGUMENT usage: PULL since [limit]",
            ])
    }

    @Test func pipelinedWritesCommitTogetherAndAreAnsweredInRequestOrder() {
        let h = Harness()
        h.open()
        let read = h.lines(#"w1 PROPOSE {"op":"event.delete"}"#, "w2 BATCH 1", #"{"op":"x"}"#, "r1 PING")
        let decodes = read.compactMap { action -> Int? in
            switch action {
            case .decodePropose(let n, _, _, _), .decodeBatch(let n, _, _, _): n
            default: nil
            }
        }
        #expect(decodes == [0, 1])
        #expect(Self.runs(read).isEmpty)  // PING waits until no write is in flight
        // The batch decodes first; nothing is submitted before the PROPOSE ahead of it.
        #expect(!h.machine.decoded(1, .proposals([])).contains { if case .submit = $0 { true } else { false } })
        let submitted = h.machine.decoded(0, .proposals([])).compactMap { action -> Int? in
            if case .submit(let n, _, _, _) = action { n } else { nil }
        }
        #expect(submitted == [0, 1])
        // The later write commits first; its answer waits for the earlier one's.
        #expect(Self.sent(h.machine.committed(1, [.ok(tag: "w2", ["count": 1])])) == [])
        let answers = h.machine.committed(0, [.ok(tag: "w1", ["version": 1])])
        #expect(Self.sent(answers) == [#"w1 OK {"version":1}"#, #"w2 OK {"count":1}"#])
        #expect(Self.runs(answers) == ["r1 PING"])
    }

    @Test func aRefusedWriteKeepsItsPlaceInTheOrder() {
        let h = Harness()
        h.open()
        _ = h.lines(#"w1 PROPOSE {"op":"event.delete"}"#, #"w2 PROPOSE {"op":"event.delete"}"#)
        // w2 is refused while w1 still decodes: its refusal waits for w1's answer.
        #expect(Self.sent(h.machine.decoded(1, .refused(.bad(tag: "w2", code: .badField, message: "no")))).isEmpty)
        _ = h.machine.decoded(0, .proposals([]))
        #expect(Self.sent(h.machine.committed(0, [.ok(tag: "w1", nil)])) == ["w1 OK", "w2 BAD BAD_FIELD no"])
    }

    @Test func readingStopsAtTheReadAheadLimitAndResumesBelowHalf() {
        var limits = Limits()
        limits.maxPipelined = 4
        let h = Harness(limits: limits)
        h.open()
        _ = h.lines("q1 PULL 0", "q2 PULL 0", "q3 PULL 0", "q4 PULL 0", "q5 PULL 0")
        #expect(!Self.reads(h.machine.readRequested()))  // q1 runs, four wait
        #expect(!Self.reads(h.machine.answered([.ok(tag: "q1", nil)])))  // three wait: not below half yet
        #expect(!Self.reads(h.machine.answered([.ok(tag: "q2", nil)])))
        #expect(Self.reads(h.machine.answered([.ok(tag: "q3", nil)])))  // one waits: reading resumes
    }

    @Test func aBatchIsCollectedLineByLineAndRefusedAsAWhole() {
        let h = Harness()
        h.open()
        let read = h.lines("b1 BATCH 3", #"{"op":"a"}"#, "{\"op\":\u{1}}", #"{"op":"c"}"#)
        #expect(
            Self.sent(read) == ["b1 BAD BAD_SYNTAX line 2 of the batch contains control characters (U+0000 to U+001F)"])
        // The connection goes on: the batch's lines were all consumed.
        #expect(Self.runs(h.lines("p1 PULL 0")) == ["p1 PULL 0"])
    }

    @Test func aBatchOverTheLimitEndsTheConnection() {
        var limits = Limits()
        limits.maxBatch = 2
        let h = Harness(limits: limits)
        h.open()
        let read = h.lines("b1 BATCH 3")
        #expect(
            Self.sent(read) == [
                "b1 BAD BATCH_TOO_LARGE a batch holds at most 2 edits",
                "* BYE PROTOCOL_ERROR cannot skip the lines of a batch over the limit",
            ])
        #expect(Self.closes(read))
        #expect(h.lines(#"{"op":"a"}"#, "p1 PING").isEmpty)
    }

    @Test func aWatchStreamsInOrderReadsOnlyDoneAndEndsWithTheLastVersion() {
        let h = Harness()
        h.open()
        let start = h.lines("w1 WATCH 0")
        #expect(start.contains { if case .startWatch(since: 0) = $0 { true } else { false } })
        #expect(start.contains { if case .cancelIdleCheck = $0 { true } else { false } })
        #expect(h.machine.watchHead(2).contains { if case .fetchWatchPage(after: 0) = $0 { true } else { false } })
        #expect(Self.sent(h.machine.watchPage([Self.edit(1), Self.edit(2)], head: 2)) == ["EDIT 1", "EDIT 2"])
        // Live edits: one already sent is not sent again; a gap is read from the store instead.
        #expect(Self.sent(h.machine.live([[Self.edit(2), Self.edit(3)]], writable: true)) == ["EDIT 3"])
        let gap = h.machine.live([[Self.edit(5)]], writable: true)
        #expect(Self.sent(gap).isEmpty)
        #expect(gap.contains { if case .fetchWatchPage(after: 3) = $0 { true } else { false } })
        #expect(Self.sent(h.machine.watchPage([Self.edit(4), Self.edit(5)], head: 5)) == ["EDIT 4", "EDIT 5"])
        #expect(Self.sent(h.lines("p1 PING")) == ["* BAD EXPECTED_DONE a WATCH is running; send DONE to end it"])
        let done = h.lines(" done ")
        #expect(Self.sent(done) == [#"w1 OK {"version":5}"#])
        #expect(done.contains { if case .stopWatch = $0 { true } else { false } })
        #expect(Self.runs(h.lines("p2 PULL 5")) == ["p2 PULL 5"])
    }

    @Test func aWatchBeyondTheHeadIsToldToResync() {
        let h = Harness()
        h.open()
        _ = h.lines("w1 WATCH 9")
        #expect(
            Self.sent(h.machine.watchHead(2)) == [
                #"w1 NO RESYNC {"dataset":"d1","message":"version 9 is beyond this server's version 2: this replica belongs to another dataset or a restored server; start again from 0","version":2}"#
            ])
    }

    @Test func aWatcherThatDoesNotReadIsClosed() {
        let h = Harness()
        h.open()
        _ = h.lines("w1 WATCH 0")
        _ = h.machine.watchHead(0)
        _ = h.machine.watchPage([], head: 0)
        let live = h.machine.live([[Self.edit(1)]], writable: false)
        #expect(Self.sent(live).first?.hasPrefix("* BYE SLOW_CONSUMER") == true)
        #expect(Self.closes(live))

        let stalled = Harness()
        stalled.open()
        _ = stalled.lines("w1 WATCH 0")
        _ = stalled.machine.watchHead(1)
        #expect(
            stalled.machine.watchPage([Self.edit(1)], head: 2).contains {
                if case .reportWhenWritten = $0 { true } else { false }
            })
        #expect(Self.sent(stalled.machine.watchStalled()).first?.hasPrefix("* BYE SLOW_CONSUMER") == true)
    }

    @Test func noAUTHInTimeClosesAndAFailedAUTHIsAnsweredLate() {
        let h = Harness()
        h.open(authenticate: false)
        let fired = h.machine.authTimerFired()
        #expect(Self.sent(fired) == ["* BYE AUTH_TIMEOUT not authenticated in time"])
        #expect(Self.closes(fired))

        let slow = Harness()
        slow.open(authenticate: false)
        _ = slow.lines("a1 AUTH tl_wrong")
        let failed = slow.machine.authenticationFailed("a1")
        #expect(Self.sent(failed).isEmpty)
        #expect(failed.contains { if case .delayRefusal(tag: "a1") = $0 { true } else { false } })
        #expect(Self.sent(slow.lines("p1 PING")).isEmpty)  // waits behind the held refusal
        let due = slow.machine.refusalDue("a1")
        #expect(Self.sent(due) == ["a1 NO AUTH_FAILED the token is unknown, revoked or expired"])
        #expect(Self.runs(due) == ["p1 PING"])
        // Authenticated, the timer no longer closes anything.
        _ = slow.machine.answered([.ok(tag: "p1", nil)])
        slow.authenticate()
        #expect(slow.machine.authTimerFired().isEmpty)
    }

    @Test func aRevokedTokenStopsAtTheNextRequestAndEndsAWatch() {
        let h = Harness()
        h.open()
        h.tokens.withLockedValue { $0 = [:] }
        #expect(
            Self.sent(h.lines("p1 PULL 0")) == [
                "p1 NO AUTH_REVOKED the token this connection authenticated with was revoked or has expired; AUTH with another"
            ])

        let watcher = Harness()
        watcher.open()
        _ = watcher.lines("w1 WATCH 0")
        _ = watcher.machine.watchHead(0)
        _ = watcher.machine.watchPage([], head: 0)
        #expect(
            watcher.machine.revocationCheckDue().contains {
                if case .scheduleRevocationCheck = $0 { true } else { false }
            })
        watcher.tokens.withLockedValue { $0 = [:] }
        let check = watcher.machine.revocationCheckDue()
        #expect(
            Self.sent(check) == [
                "* BYE AUTH_REVOKED the token this connection authenticated with was revoked or has expired"
            ])
        #expect(Self.closes(check))
    }

    @Test func shutdownFinishesWhatRunsRefusesTheRestThenSaysBye() {
        let h = Harness()
        h.open()
        _ = h.lines("g1 PULL 0", "g2 PULL 0", "b1 BATCH 1")
        let shutdown = h.machine.shutdownRequested()
        #expect(
            Self.sent(shutdown) == [
                "g2 NO SHUTTING_DOWN the server is shutting down; not executed"
            ])
        #expect(!Self.closes(shutdown))
        #expect(h.lines(#"{"op":"a"}"#, "g3 PING").isEmpty)  // no more input is read
        let last = h.machine.answered([.ok(tag: "g1", nil)])
        #expect(Self.sent(last) == ["g1 OK", "* BYE SHUTDOWN the server is shutting down"])
        #expect(Self.closes(last))
    }

    @Test func anIdleConnectionIsClosedButNotWhileItWorks() {
        var limits = Limits()
        limits.idleTimeout = .seconds(60)
        let h = Harness(limits: limits)
        h.open()
        h.now = h.now + .seconds(30)
        _ = h.lines("g1 PULL 0")
        h.now = h.now + .seconds(90)
        let working = h.machine.idleCheckDue(now: h.now)
        #expect(!Self.closes(working))  // g1 is still running
        _ = h.machine.answered([.ok(tag: "g1", nil)])
        let idle = h.machine.idleCheckDue(now: h.now)
        #expect(Self.sent(idle) == ["* BYE IDLE_TIMEOUT no request for 60 seconds"])
        #expect(Self.closes(idle))
    }

    @Test func tooManyConnectionsAndAServerShuttingDownSayByeAtOnce() {
        var limits = Limits()
        limits.maxConnections = 2
        var full = Harness(limits: limits).machine
        let refused = full.opened(connections: 3, shuttingDown: false)
        #expect(Self.sent(refused).first?.hasPrefix("* BYE TOO_MANY_CONNECTIONS") == true)
        #expect(Self.closes(refused))
        var late = Harness().machine
        #expect(
            Self.sent(late.opened(connections: 1, shuttingDown: true)) == [
                "* BYE SHUTDOWN the server is shutting down"
            ])
    }
}

/// Reads the version of an EDIT line the machine wrote.
enum WrittenEdit {
    static func edit(_ line: String) throws -> Int64? {
        guard line.hasPrefix("* EDIT ") else { return nil }
        return try JSON(parsing: String(line.dropFirst(7)))["version"]?.intValue
    }
}
