import Foundation
import NIOCore
import Testing
import TimelineCore

/// What holds on a connection that stays open: a token revoked meanwhile, a commit larger than what may wait
/// for a watcher.
@Suite struct LiveConnectionTests {
    @Test func aRevokedTokenStopsAtItsNextRequestAndAWatcherIsCutOff() async throws {
        let server = try ServerProcess()
        let editor = try await server.connect(token: try server.addToken("ed", role: "editor"))
        let watcher = try await server.connect(token: try server.addToken("wat", role: "reader"))
        #expect(try await editor.request("p1 PING").last?.hasPrefix("p1 OK") == true)
        try await watcher.sendRaw("w WATCH 28\n")
        #expect(try await watcher.nextLine()?.hasPrefix("* EDIT ") == true)
        #expect(try server.tool(["token", "revoke", "ed"]).0 == 0)
        #expect(try server.tool(["token", "revoke", "wat"]).0 == 0)
        // The editor's connection is still open; its next write is refused and nothing is written.
        let refused = try await editor.request(
            #"e1 PROPOSE {"op":"event.update","event":"019ECZQW007TKPA8XK03963NRD","set":{"title":"after revocation"}}"#
        )
        #expect(
            refused == [
                "e1 NO AUTH_REVOKED the token this connection authenticated with was revoked or has expired; AUTH with another"
            ])
        #expect(try await editor.request("e2 GET 019ECZQW007TKPA8XK03963NRD").last?.contains("AUTH_REVOKED") == true)
        // The connection may authenticate again, with a token that is live.
        try await editor.auth(server.adminToken)
        #expect(
            try await editor.request("e3 GET 019ECZQW007TKPA8XK03963NRD").first?.contains("after revocation") == false)
        #expect(try JSON(parsing: try server.tool(["verify", "--json"]).1)["version"] == 29)
        // The watcher makes no request: it is told and disconnected.
        #expect(
            try await watcher.drainUntilClosed(timeout: 15) == [
                "* BYE AUTH_REVOKED the token this connection authenticated with was revoked or has expired"
            ])
        await editor.close()
    }

    /// One BATCH of a thousand 12 KB edits is 12 MB of edit lines: a watcher that does not read must not have them
    /// all queued for it (over a hundred times a 64 KiB limit); it is cut off as a slow consumer.
    @Test func oneLargeCommitDoesNotBypassTheOutboundLimit() async throws {
        let server = try ServerProcess(arguments: ["--max-outbound", "65536"])
        let watcher = try await server.connect(token: server.adminToken)
        try await watcher.sendRaw("w WATCH 29\n")
        // Until the WATCH is live: an edit through another connection arrives.
        let writer = try await server.connect(token: server.adminToken)
        _ = try await writer.request(
            #"s PROPOSE {"op":"annotation.add","event":"019ECZQW007TKPA8XK03963NRD","text":"x"}"#)
        #expect(try await watcher.nextLine()?.hasPrefix("* EDIT ") == true)
        try await watcher.channel.setOption(ChannelOptions.autoRead, value: false).get()
        let big = String(repeating: "twelve kilobytes of annotation text. ", count: 330)
        var batch = "b BATCH 1000\n"
        for i in 0..<1_000 {
            batch += #"{"op":"annotation.add","event":"019ECZQW007TKPA8XK03963NRD","text":"\#(i) \#(big)"}"# + "\n"
        }
        try await writer.sendRaw(batch)
        _ = try await writer.collect(until: "b", timeout: 60)
        // The server gives the watcher a chunk at a time, and cuts it off once one is not read within 10 s (its BYE
        // goes after the backlog, which the watcher stopped reading: the server's log says it). Reading again
        // afterwards shows what had been sent.
        let deadline = Date().addingTimeInterval(60)
        var log = ""
        while !log.contains("closing a watcher that does not read"), Date() < deadline {
            try await Task.sleep(nanoseconds: 200_000_000)
            log = try String(contentsOf: server.logFile, encoding: .utf8)
        }
        #expect(log.contains("closing a watcher that does not read"), "\(log.suffix(500))")
        try await watcher.channel.setOption(ChannelOptions.autoRead, value: true).get()
        let lines = try await watcher.drainUntilClosed(timeout: 30)
        let edits = lines.filter { $0.hasPrefix("* EDIT ") }.count
        #expect(edits < 1_000, "all \(edits) edits were queued for a watcher that does not read")
        await writer.close()
    }
}
