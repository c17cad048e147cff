import NIOCore
import NIOEmbedded
import Testing
import TimelineCore

@testable import TimelineWire

@Suite struct LineFrameDecoderTests {
    func channel(max: Int) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineFrameDecoder(maxLength: max)))
        return channel
    }

    func frames(_ channel: EmbeddedChannel) throws -> [Frame] {
        var out: [Frame] = []
        while let f = try channel.readInbound(as: Frame.self) { out.append(f) }
        return out
    }

    func line(_ s: String) -> Frame { .line(ByteBuffer(string: s)) }

    @Test func splitsOnLFAndDropsOneCR() throws {
        let ch = try channel(max: 100)
        try ch.writeInbound(ByteBuffer(string: "a1 PING\r\na2 CAPS\n\nx\r\r\n"))
        #expect(try frames(ch) == [line("a1 PING"), line("a2 CAPS"), line(""), line("x\r")])
        _ = try ch.finish()
    }

    @Test func reassemblesLinesSplitAcrossReads() throws {
        let ch = try channel(max: 100)
        for piece in ["a1 P", "IN", "G\r", "\na2", " QUIT\n"] { try ch.writeInbound(ByteBuffer(string: piece)) }
        #expect(try frames(ch) == [line("a1 PING"), line("a2 QUIT")])
        _ = try ch.finish()
    }

    @Test func exactlyTheLimitPassesOneMoreIsTooLong() throws {
        let ch = try channel(max: 10)
        try ch.writeInbound(ByteBuffer(string: "0123456789\n0123456789\r\n01234567890\nok\n"))
        let got = try frames(ch)
        #expect(got.count == 4)
        #expect(got[0] == line("0123456789"))
        #expect(got[1] == line("0123456789"))
        guard case .tooLong(let head) = got[2] else {
            Issue.record("expected tooLong")
            return
        }
        #expect(String(buffer: head).hasPrefix("01234567890"))
        #expect(got[3] == line("ok"))
        _ = try ch.finish()
    }

    @Test func anOversizedLineEndingInTheSameReadKeepsWhatFollows() throws {
        let ch = try channel(max: 10)
        try ch.writeInbound(ByteBuffer(string: "t1 " + String(repeating: "x", count: 50) + "\nt2 PING\nt3 PING\n"))
        let got = try frames(ch)
        #expect(got.count == 3)
        if case .tooLong(let head) = got[0] {
            #expect(Request.tag(of: head) == "t1")
        } else {
            Issue.record("no tooLong")
        }
        #expect(Array(got.dropFirst()) == [line("t2 PING"), line("t3 PING")])
        _ = try ch.finish()
    }

    @Test func anEndlessLineIsDiscardedWithoutBuffering() throws {
        let ch = try channel(max: 1_000)
        try ch.writeInbound(ByteBuffer(string: "t9 " + String(repeating: "x", count: 2_000)))
        for _ in 0..<100 { try ch.writeInbound(ByteBuffer(string: String(repeating: "y", count: 10_000))) }
        try ch.writeInbound(ByteBuffer(string: "zzz\nt10 PING\n"))
        let got = try frames(ch)
        #expect(got.count == 2)
        if case .tooLong(let head) = got[0] { #expect(Request.tag(of: head) == "t9") }
        #expect(got[1] == line("t10 PING"))
        _ = try ch.finish()
    }

    @Test func aLastLineWithoutLFIsDropped() throws {
        let ch = try channel(max: 100)
        try ch.writeInbound(ByteBuffer(string: "a1 PING\na2 PROPOSE {\"op\""))
        #expect(try frames(ch) == [line("a1 PING")])
        _ = try ch.finish()
        #expect(try frames(ch).isEmpty)
    }
}

@Suite struct RequestTests {
    func parse(_ s: String) -> Result<Request, RefusedLine> { Request.parse(ByteBuffer(string: s)) }

    @Test func parsesTagVerbAndArguments() throws {
        #expect(try parse("a1 ping").get() == Request(tag: "a1", verb: .ping, arguments: ""))
        #expect(try parse("A.b-c_9 PULL 10 500").get().command == .success(.pull(since: 10, limit: 500)))
        let json = #"x PROPOSE {"op":"annotation.add","text":"a  b"}"#
        #expect(try parse(json).get().arguments == #"{"op":"annotation.add","text":"a  b"}"#)
        #expect(try parse(String(repeating: "t", count: 32) + " CAPS").get().verb == .caps)
    }

    @Test(arguments: [
        ("PING", nil, ErrorCode.badSyntax),
        (String(repeating: "t", count: 33) + " PING", nil, .badTag),
        ("a/1 PING", nil, .badTag),
        (" a1 PING", nil, .badTag),
        ("a1", "a1", .badSyntax),
        ("a1 FETCH 1", "a1", .unknownVerb),
        ("a1 PING \u{0}", "a1", .badSyntax),
    ])
    func refusesWithACodeAndTheTagWhenThereIsOne(line: String, tag: String?, code: ErrorCode) {
        guard case .failure(let error) = parse(line) else {
            Issue.record("\(line) parsed")
            return
        }
        #expect(error.error.code == code || (line == "PING" && error.error.code == .badSyntax))
        #expect(error.tag == tag || line == "PING")
    }

    @Test func refusesInvalidUTF8() {
        var buffer = ByteBuffer(string: "a1 PROPOSE ")
        buffer.writeBytes([0xC3, 0x28])
        guard case .failure(let error) = Request.parse(buffer) else {
            Issue.record("parsed")
            return
        }
        #expect(error.error.code == .badUTF8)
        #expect(error.tag == "a1")
    }
}

@Suite struct CommandTests {
    /// Every command a client writes is read back by the server as the same command.
    @Test(arguments: [
        Command.auth(token: "tl_abc"), .ping, .caps, .conflicts, .quit, .pull(since: 0, limit: nil),
        .pull(since: 12, limit: 500), .get(EventReference("01JQ8ZQW007TKPA8XK03963NRD")!, at: nil),
        .get(EventReference("94EPPCE")!, at: 3), .history(EventReference("ZBYNZC1")!),
        .log(EventFilter(limit: Command.logDefaultLimit)),
        .log(EventFilter(from: CivilDay(iso: "1969-01-01"), tag: "apollo", text: "moon  landing", limit: 50)),
        .log(EventFilter(includeDeleted: true, limit: Command.logDefaultLimit)),
        .propose(edit: #"{"op":"annotation.add","text":"a  b"}"#), .batch(count: 3), .watch(since: 29),
    ])
    func roundTrips(command: Command) throws {
        let request = try Request.parse(ByteBuffer(string: Request(tag: "c1", command).line)).get()
        #expect(request.command == .success(command))
    }

    @Test(arguments: [
        ("PULL", "+5"), ("PULL", "5 01"), ("PULL", "-1"), ("PULL", ""), ("PULL", "1 0"), ("GET", "abc"),
        ("GET", "94EPPCE AT x"), ("GET", "94EPPCE at"), ("HISTORY", ""), ("WATCH", "1 2"), ("BATCH", "0"),
        ("AUTH", ""), ("PING", "now"), ("PROPOSE", ""), ("LOG", "[]"), ("LOG", #"{"colour":"red"}"#),
        ("LOG", #"{"limit":0}"#), ("LOG", #"{"from":"1969-13-01"}"#), ("LOG", #"{"deleted":1}"#),
    ])
    func refusesWrongArgumentsAsMalformed(verb: String, arguments: String) throws {
        let request = try Request.parse(ByteBuffer(string: "t1 \(verb)" + (arguments.isEmpty ? "" : " \(arguments)")))
            .get()
        guard case .failure(let error) = request.command else {
            Issue.record("\(verb) \(arguments) parsed as \(request.command)")
            return
        }
        #expect(error.code.isMalformed, "\(error)")
        #expect(Reply.refusal(tag: "t1", error).line.hasPrefix("t1 BAD \(error.code) "))
    }
}

@Suite struct ReplyTests {
    /// Every line the server writes is read back by a client as the same reply (data lines as their bytes).
    @Test func parsesWhatItWrites() throws {
        let replies: [Reply] = [
            .hello(["dataset": "d1", "version": 3]), .ok(tag: "c1", nil), .ok(tag: "c2", ["version": 4]),
            .no(tag: "c3", code: .notFound, message: "no event starts with ABCD", detail: nil),
            .no(tag: "c4", code: .conflict, message: "title changed", detail: ["conflicts": .array([])]),
            .bad(tag: "c5", code: .badArgument, message: "usage: PULL since [limit]"),
            .bad(tag: nil, code: .expectedDone, message: "a WATCH is running; send DONE to end it"),
            .bye(code: .shutdown, message: "the server is shutting down"),
            .encoded(kind: "EDIT", Array(#"{"version":1}"#.utf8)),
        ]
        for reply in replies {
            var line = reply.line
            line.removeLast()  // the LF
            #expect(Reply.parse(line) == reply, "\(line)")
        }
        #expect(Reply.parse("c1 MAYBE") == nil)
        #expect(Reply.parse("c1 OK {not json") == nil)
        #expect(Reply.parse("c1 NO lower case") == nil)
    }

    @Test func writesEachKindOfLine() {
        #expect(Reply.ok(tag: "a1", nil).line == "a1 OK\n")
        #expect(Reply.ok(tag: "a1", ["version": 3]).line == "a1 OK {\"version\":3}\n")
        #expect(Reply.data(kind: "EDIT", ["b": 1, "a": "x"]).line == "* EDIT {\"a\":\"x\",\"b\":1}\n")
        #expect(Reply.bad(tag: nil, code: .badTag, message: "no\ntag").line == "* BAD BAD_TAG no tag\n")
        #expect(Reply.bye(code: .idleTimeout, message: "bye").line == "* BYE IDLE_TIMEOUT bye\n")
        #expect(
            Reply.no(tag: "t", code: .authFailed, message: "{sneaky", detail: nil).line == "t NO AUTH_FAILED (sneaky\n")
        let conflict = Reply.no(
            tag: "t", code: .conflict, message: "title changed", detail: ["conflicts": []])
        #expect(conflict.line == #"t NO CONFLICT {"conflicts":[],"message":"title changed"}"# + "\n")
    }

    @Test func malformedCodesAreBADTheRestNO() {
        #expect(
            Reply.refusal(tag: "t", TimelineError(.badJSON, "x"))
                == .bad(tag: "t", code: .badJSON, message: "x"))
        #expect(
            Reply.refusal(tag: "t", TimelineError(.notFound, "x"))
                == .no(tag: "t", code: .notFound, message: "x", detail: nil))
    }
}
