import Foundation
import Testing

/// Replays every `Protocol/transcripts/*.txt` against a new real server, over real TLS.
@Suite struct TranscriptTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Protocol/transcripts")

    static var names: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder.path)) ?? []).filter { $0.hasSuffix(".txt") }
            .sorted()
    }

    @Test func thereAreTranscripts() {
        #expect(Self.names.count >= 7)
    }

    /// Every transcript on both stores: the wire does not depend on what keeps the log.
    @Test(arguments: names, ["sqlite", "postgresql"])
    func replay(_ name: String, store: String) async throws {
        // The harness gives AUTH more time than the default 30 s (a transcript under ThreadSanitizer, with every
        // suite starting servers, took longer and was closed); the greeting's transcript leaves that limit open.
        let server = try ServerProcess(
            arguments: store == "sqlite" ? [] : ["--store", try PostgresNodesTests.newDatabase()])
        var tokens: [String: String] = [:]
        let text = try String(contentsOf: Self.folder.appendingPathComponent(name), encoding: .utf8)
        let client = try await TestClient.connect(
            port: server.port, fingerprint: server.fingerprint, readGreeting: false)
        defer { Task { await client.close() } }
        var sawGreeting = false
        for (number, raw) in text.components(separatedBy: "\n").enumerated() {
            let line = raw.hasSuffix("\r") ? String(raw.dropLast()) : raw
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("C: ") {
                if !sawGreeting {
                    // Transcripts that do not show the greeting still receive it first.
                    let hello = try await client.nextLine()
                    #expect(hello?.hasPrefix("* HELLO timeline/1 ") == true)
                    sawGreeting = true
                }
                var sent = String(line.dropFirst(3))
                sent = sent.replacingOccurrences(of: "{{admin}}", with: server.adminToken)
                while let range = sent.range(of: #"\{\{token:[a-z]+\}\}"#, options: .regularExpression) {
                    let role = String(sent[range].dropFirst(8).dropLast(2))
                    if tokens[role] == nil { tokens[role] = try server.addToken(role, role: role) }
                    sent.replaceSubrange(range, with: tokens[role]!)
                }
                try await client.sendRaw(sent + "\n")
            } else if line.hasPrefix("S: ") {
                let expected = String(line.dropFirst(3))
                guard let actual = try await client.nextLine() else {
                    Issue.record("\(name):\(number + 1): the server closed; expected \(expected)")
                    return
                }
                sawGreeting = true
                #expect(
                    Self.matches(actual, pattern: expected),
                    "\(name):\(number + 1)\nexpected: \(expected)\nactual:   \(actual)")
            } else {
                Issue.record("\(name):\(number + 1): a line must start with C: , S: or #")
            }
        }
    }

    /// `{{*}}` matches any text; everything else literally; the whole line must match.
    static func matches(_ actual: String, pattern: String) -> Bool {
        let parts = pattern.components(separatedBy: "{{*}}").map { NSRegularExpression.escapedPattern(for: $0) }
        let regex = "^" + parts.joined(separator: ".*?") + "$"
        return actual.range(of: regex, options: .regularExpression) != nil
    }
}
