import Foundation
import Testing
import TimelineClient
import TimelineCore
import TimelineLink
import TimelineTLS

/// Who may do what, hostile input, and the TLS surface: a real `timelined` over real TLS, outside tools
/// (`sslscan`, `openssl`) where they exist.
@Suite(.serialized) struct SecurityTests {
    let event = "019ECZQW007TKPA8XK03963NRD"

    /// The completion's first words: "OK", "NO FORBIDDEN", "BAD BAD_FIELD".
    func outcome(_ line: String?) -> String {
        guard let words = line?.split(separator: " ", maxSplits: 3).map(String.init), words.count >= 2 else {
            return "none"
        }
        return words[1] == "OK" ? "OK" : "\(words[1]) \(words.count > 2 ? words[2] : "")"
    }

    @Test func everyVerbAgainstEveryRoleIncludingRevokedAndNoToken() async throws {
        let server = try ServerProcess()
        var tokens: [String: String] = ["admin": server.adminToken]
        for role in ["reader", "annotator", "editor", "replicator"] {
            tokens[role] = try server.addToken(role, role: role)
        }
        tokens["revoked"] = try server.addToken("gone", role: "admin")
        #expect(try server.tool(["token", "revoke", "gone"]).0 == 0)
        let add = #"{"op":"annotation.add","event":"\#(event)","text":"matrix"}"#
        let addFor = #"{"op":"annotation.add","event":"\#(event)","text":"matrix","on_behalf_of":"bea@office-b"}"#
        let tag = #"{"op":"event.update","event":"\#(event)","base":1,"tags":{"add":["matrix"]}}"#
        let meta = #"{"op":"timeline.meta","set":{"matrix":1}}"#
        // Each row: a request and the outcome for none, revoked, reader, annotator, editor, replicator, admin.
        let rows: [(String, [String])] = [
            ("PING", ["OK", "OK", "OK", "OK", "OK", "OK", "OK"]),
            ("CAPS", ["OK", "OK", "OK", "OK", "OK", "OK", "OK"]),
            ("PULL 0 1", ["NO AUTH_REQUIRED", "NO AUTH_REQUIRED", "OK", "OK", "OK", "OK", "OK"]),
            ("GET \(event)", ["NO AUTH_REQUIRED", "NO AUTH_REQUIRED", "OK", "OK", "OK", "OK", "OK"]),
            (#"LOG {"limit":1}"#, ["NO AUTH_REQUIRED", "NO AUTH_REQUIRED", "OK", "OK", "OK", "OK", "OK"]),
            ("HISTORY \(event)", ["NO AUTH_REQUIRED", "NO AUTH_REQUIRED", "OK", "OK", "OK", "OK", "OK"]),
            ("CONFLICTS", ["NO AUTH_REQUIRED", "NO AUTH_REQUIRED", "OK", "OK", "OK", "OK", "OK"]),
            ("WATCH 0", ["NO AUTH_REQUIRED", "NO AUTH_REQUIRED", "OK", "OK", "OK", "OK", "OK"]),
            (
                "PROPOSE \(add)",
                ["NO AUTH_REQUIRED", "NO AUTH_REQUIRED", "NO FORBIDDEN", "OK", "OK", "BAD BAD_FIELD", "OK"]
            ),
            (
                "PROPOSE \(addFor)",
                [
                    "NO AUTH_REQUIRED", "NO AUTH_REQUIRED", "NO FORBIDDEN", "BAD BAD_FIELD", "BAD BAD_FIELD", "OK",
                    "BAD BAD_FIELD",
                ]
            ),
            (
                "PROPOSE \(tag)",
                ["NO AUTH_REQUIRED", "NO AUTH_REQUIRED", "NO FORBIDDEN", "NO FORBIDDEN", "OK", "BAD BAD_FIELD", "OK"]
            ),
            (
                "PROPOSE \(meta)",
                ["NO AUTH_REQUIRED", "NO AUTH_REQUIRED", "NO FORBIDDEN", "NO FORBIDDEN", "OK", "BAD BAD_FIELD", "OK"]
            ),
            (
                "BATCH 1\n\(add)",
                ["NO AUTH_REQUIRED", "NO AUTH_REQUIRED", "NO FORBIDDEN", "OK", "OK", "BAD BAD_FIELD", "OK"]
            ),
            ("QUIT", ["OK", "OK", "OK", "OK", "OK", "OK", "OK"]),
        ]
        let columns = ["none", "revoked", "reader", "annotator", "editor", "replicator", "admin"]
        var writes = 0
        for (column, who) in columns.enumerated() {
            let client = try await TestClient.connect(port: server.port, fingerprint: server.fingerprint)
            if let token = tokens[who] {
                let auth = try await client.request("a AUTH \(token)").last
                #expect(outcome(auth) == (who == "revoked" ? "NO AUTH_FAILED" : "OK"), "\(who): \(auth ?? "")")
            }
            for (index, (request, expected)) in rows.enumerated() {
                let t = "r\(index)"
                let got: String?
                if request.hasPrefix("WATCH") {
                    try await client.sendRaw("\(t) \(request)\nDONE\n")
                    got = try await client.collect(until: t).last
                } else {
                    try await client.sendRaw("\(t) \(request)\n")
                    got = try await client.collect(until: t).last
                }
                #expect(outcome(got) == expected[column], "\(who) \(request.prefix(40)): \(got ?? "no reply")")
                if outcome(got) == "OK", request.hasPrefix("PROPOSE") || request.hasPrefix("BATCH") { writes += 1 }
            }
            await client.close()
        }
        // Refusals wrote nothing: the log holds the sample (29 edits) and exactly the acknowledged writes.
        let admin = try await server.connect(token: server.adminToken)
        let head = try await admin.request("h PULL 0 1").last ?? ""
        #expect(head.contains(#""version":\#(29 + writes)"#), "\(head) after \(writes) writes")
        await admin.close()
    }

    @Test func tokensAreStoredAsHashesAndNeverLogged() async throws {
        let server = try ServerProcess(arguments: ["--log-level", "trace"])
        let token = try server.addToken("ana", role: "annotator")
        let client = try await server.connect(token: token)
        await client.close()
        let guesser = try await server.connect()
        #expect(outcome(try await guesser.request("x AUTH tl_wrong_guess_0123456789").last) == "NO AUTH_FAILED")
        await guesser.close()
        _ = try server.tool(["token", "list"])
        server.terminate()
        let log = try String(contentsOf: server.logFile, encoding: .utf8)
        #expect(log.contains("authenticated"), "the log is at trace level")
        for secret in [token, server.adminToken, "tl_wrong_guess_0123456789"] {
            #expect(!log.contains(secret))
            for file in ["tokens.json", "timeline.sqlite"] {
                let bytes = try Data(contentsOf: server.data.appendingPathComponent(file))
                #expect(bytes.range(of: Data(secret.utf8)) == nil, "\(file) holds a token in clear")
            }
        }
    }

    @Test func repeatedFailedAuthIsSlowedDownPerAddress() async throws {
        let server = try ServerProcess()
        let guesser = try await TestClient.connect(port: server.port, fingerprint: server.fingerprint)
        var waits: [Double] = []
        for i in 0..<5 {
            let start = Date()
            #expect(outcome(try await guesser.request("g\(i) AUTH tl_guess_\(i)").last) == "NO AUTH_FAILED")
            waits.append(Date().timeIntervalSince(start))
        }
        // 0.2, 0.4, 0.8, 1.6, 3.2 s: a lower bound the server enforces, not a speed measurement.
        #expect(waits[4] >= 3.0 && waits[3] >= 1.5 && waits[2] >= 0.7, "\(waits)")
        // The right token still works, and resets the count for the address.
        #expect(outcome(try await guesser.request("ok AUTH \(server.adminToken)").last) == "OK")
        await guesser.close()
    }

    @Test func anAnnotatorChangesOnlyTheirOwnAnnotations() async throws {
        let server = try ServerProcess()
        let ana = try await server.connect(token: try server.addToken("ana", role: "annotator"))
        let bob = try await server.connect(token: try server.addToken("bob", role: "annotator"))
        let ed = try await server.connect(token: try server.addToken("ed", role: "editor"))
        let made = try await ana.request(#"a1 PROPOSE {"op":"annotation.add","event":"\#(event)","text":"ana's"}"#)
        let id = try #require(made.last?.split(separator: "\"").drop { $0 != "annotation" }.dropFirst(2).first)
        let update =
            #"{"op":"annotation.update","event":"\#(event)","annotation":"\#(id)","base":2,"set":{"text":"x"}}"#
        let retract = #"{"op":"annotation.retract","event":"\#(event)","annotation":"\#(id)"}"#
        #expect(
            try await bob.request("b1 PROPOSE \(update)").last
                == "b1 NO FORBIDDEN annotation \(id) is ana's; only its author or an editor may change it")
        try await bob.sendRaw("b2 BATCH 1\n\(retract)\n")
        #expect(outcome(try await bob.collect(until: "b2").last) == "NO FORBIDDEN")
        #expect(outcome(try await ana.request("a2 PROPOSE \(update)").last) == "OK")
        #expect(outcome(try await ed.request("e1 PROPOSE \(retract)").last) == "OK")
        for c in [ana, bob, ed] { await c.close() }
    }

    @Test func hostileInputGetsItsCodeAndTheConnectionKeepsWorking() async throws {
        let server = try ServerProcess(arguments: ["--max-line", "4096"])
        let client = try await server.connect(token: server.adminToken)
        let bystander = try await server.connect(token: server.adminToken)
        let unknownID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
        let cases: [([UInt8], String)] = [
            (Array("x1 FROB\n".utf8), "x1 BAD UNKNOWN_VERB"),
            (Array("x2 PROPOSE {\"op\":\n".utf8), "x2 BAD BAD_JSON"),
            (Array("x3 PULL -1\n".utf8), "x3 BAD BAD_ARGUMENT"),
            (Array("x4 PULL 99999999999999999999999\n".utf8), "x4 BAD BAD_ARGUMENT"),
            (Array("x5 PULL 100000\n".utf8), "x5 NO RESYNC"),
            (Array("x6 GET \(event) AT 999999\n".utf8), "x6 BAD BAD_VERSION"),
            (Array("x7 GET \(event) AT -5\n".utf8), "x7 BAD BAD_ARGUMENT"),
            (
                Array("x8 PROPOSE \(String(repeating: "[", count: 100))\(String(repeating: "]", count: 100))\n".utf8),
                "x8 BAD BAD_JSON"
            ),
            (Array("x9 GET \(unknownID)\n".utf8), "x9 NO NOT_FOUND"),
            (
                Array(#"x10 PROPOSE {"op":"annotation.add","event":"\#(unknownID)","text":"x"}"#.utf8) + [10],
                "x10 NO NOT_FOUND"
            ),
            (Array("x11 PING ".utf8) + [0xFF, 0xFE, 10], "x11 BAD BAD_UTF8"),
            (Array("x12 PI".utf8) + [0] + Array("NG\n".utf8), "x12 BAD BAD_SYNTAX"),
            ([1, 2] + Array("garbage\n".utf8), "* BAD BAD_SYNTAX"),
            (Array("x13\n".utf8), "x13 BAD BAD_SYNTAX"),
            (Array("x14 BATCH abc\n".utf8), "x14 BAD BAD_ARGUMENT"),
            (Array("x15 BATCH 0\n".utf8), "x15 BAD BAD_ARGUMENT"),
            (
                Array(#"x16 PROPOSE {"op":"annotation.add","event":"\#(event)","text":"x","tags":[1.5]}"#.utf8) + [10],
                "x16 BAD BAD_JSON"
            ),
            (
                Array(#"x17 PROPOSE {"op":"annotation.add","event":"\#(event)","text":"x","text":"y"}"#.utf8) + [10],
                "x17 BAD BAD_JSON"
            ),
            (Array("x18 PROPOSE \(String(repeating: "A", count: 5_000))\n".utf8), "x18 BAD LINE_TOO_LONG"),
            (
                Array(#"x19 PROPOSE {"op":"event.update","event":"\#(event)","base":-1,"set":{"title":"t"}}"#.utf8) + [
                    10
                ],
                "x19 BAD BAD_FIELD"
            ),
            (
                Array(
                    #"x20 PROPOSE {"op":"event.update","event":"\#(event)","base":99999999,"set":{"title":"t"}}"#.utf8)
                    + [10],
                "x20 NO BAD_BASE"
            ),
            (
                Array(#"x21 PROPOSE {"op":"annotation.add","event":"\#(event)","text":"\u0000"}"#.utf8) + [10],
                "x21 BAD BAD_FIELD"
            ),
            (
                Array(#"x22 PROPOSE {"op":"annotation.add","event":"\#(event)","text":"ok"} trailing"#.utf8) + [10],
                "x22 BAD BAD_JSON"
            ),
            (Array("x23 WATCH -1\n".utf8), "x23 BAD BAD_ARGUMENT"),
            (Array(#"x24 LOG {"limit":-1}"#.utf8) + [10], "x24 BAD BAD_ARGUMENT"),
            (Array(#"x25 PROPOSE {"op":"event.explode","event":"\#(event)"}"#.utf8) + [10], "x25 BAD UNKNOWN_OP"),
        ]
        for (bytes, expected) in cases {
            // Each hostile line is followed by a PING in the same write: junk never eats the next request.
            try await client.sendRaw(bytes: bytes + Array("ok PING\n".utf8))
            let lines = try await client.collect(until: "ok")
            #expect(lines.contains { $0.hasPrefix(expected + " ") }, "\(expected): \(lines)")
            #expect(lines.last?.hasPrefix("ok OK") == true)
            #expect(try await bystander.request("b PING").last?.hasPrefix("b OK") == true)
        }
        // A BATCH far over the limit cannot be skipped: its code, then the connection closes; others go on.
        try await client.sendRaw("big BATCH 999999999\n")
        let closing = try await client.drainUntilClosed()
        #expect(closing.first == "big BAD BATCH_TOO_LARGE a batch holds at most 10000 edits")
        #expect(try await bystander.request("b2 PING").last?.hasPrefix("b2 OK") == true)
        // Nothing above was written.
        #expect(try await bystander.request("h PULL 0 1").last?.contains(#""version":29"#) == true)
        await bystander.close()
    }

    @Test func inputThatReachesSQLIsBoundNeverConcatenated() async throws {
        let server = try ServerProcess()
        let client = try await server.connect(token: server.adminToken)
        let hostileTag = "x');DROP-TABLE-edits;--"
        let injections = [
            "GET 019E' OR '1'='1",
            "GET 019ECZQW%",
            #"LOG {"text":"' OR 1=1 --"}"#,
            #"LOG {"text":"%"}"#,
            #"LOG {"tag":"' OR ''='"}"#,
            "HISTORY 019ECZQW007TKPA8XK03963NR' OR 1=1 --",
            #"PROPOSE {"op":"annotation.add","event":"019ECZQW007TKPA8XK03963NR'","text":"x"}"#,
        ]
        for (i, line) in injections.enumerated() {
            let reply = try await client.request("i\(i) \(line)")
            #expect(!reply.contains { $0.hasPrefix("* EVENT") || $0.hasPrefix("* EDIT") }, "\(line): \(reply)")
            #expect(reply.last.map { outcome($0) != "OK" || $0.contains(#""count":0"#) } == true, "\(line)")
        }
        // A hostile string stored as data comes back as data, and finds exactly its own event.
        let stored = try await client.request(
            #"s0 PROPOSE {"op":"annotation.add","event":"\#(event)","text":"'); DELETE FROM edits; --"}"#)
        #expect(outcome(stored.last) == "OK")
        let tagged = try await client.request(
            #"s1 PROPOSE {"op":"event.update","event":"\#(event)","base":2,"tags":{"add":["\#(hostileTag)"]}}"#)
        #expect(outcome(tagged.last) == "OK")
        let found = try await client.request(#"s2 LOG {"tag":"\#(hostileTag)"}"#)
        #expect(found.last == #"s2 OK {"count":1}"#)
        #expect(found.first?.contains(#""text":"'); DELETE FROM edits; --""#) == true)
        await client.close()
        let (status, out, _) = try server.tool(["verify", "--json"])
        #expect(status == 0 && out.contains(#""version":31"#), "\(out)")
    }

    @Test func savedFuzzInputsAndTheTranscriptsReplayThroughTheFuzzTargets() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let (status, out, err) = try ServerProcess.run(
            [
                root.appendingPathComponent("Tests/FuzzInputs").path,
                root.appendingPathComponent("Protocol/transcripts").path,
            ],
            executable: ServerProcess.sibling("timeline-fuzz"))
        #expect(status == 0, "\(err)")
        #expect(out.hasPrefix("replayed "), "\(out)")
    }

    @Test func sslscanSeesOnlyModernAEADTLS() async throws {
        let (found, _, _) = try shell("command -v sslscan")
        try #require(found == 0, "sslscan is installed by Scripts/test.sh")
        let server = try ServerProcess()
        let (_, out, _) = try shell("timeout 60 sslscan --no-colour 127.0.0.1:\(server.port)")
        let lines = out.split(separator: "\n").map { $0.split(separator: " ").joined(separator: " ") }
        for old in ["SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1"] {
            #expect(lines.contains("\(old) disabled"), "\(old) in \(out)")
        }
        #expect(lines.contains("TLSv1.2 enabled") && lines.contains("TLSv1.3 enabled"))
        #expect(out.contains("Session renegotiation not supported"))
        #expect(out.contains("not vulnerable to heartbleed"))
        let ciphers = out.split(separator: "\n").filter { $0.hasPrefix("Accepted") || $0.hasPrefix("Preferred") }
        #expect(ciphers.count >= 4)
        for line in ciphers {
            #expect(
                line.contains("GCM") || line.contains("CHACHA20-POLY1305") || line.contains("CHACHA20_POLY1305"),
                "not AEAD: \(line)")
        }
        // sslscan's OpenSSL has no compression to offer, so ask openssl directly.
        let (_, session, _) = try shell("echo | timeout 10 openssl s_client -connect 127.0.0.1:\(server.port) 2>&1")
        #expect(session.contains("Compression: NONE"))
    }

    @Test func theClientRefusesExpiredWrongHostAndUntrustedCertificates() async throws {
        let dir = ServerProcess.newDataFolder()
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { ServerProcess.removeData(dir) }
        let script = """
            set -e
            cd "$DIR"
            mkdir db && touch db/index.txt && echo 01 > db/serial
            cat > ca.cnf <<'EOF'
            [ca]
            default_ca = d
            [d]
            database = db/index.txt
            serial = db/serial
            new_certs_dir = db
            default_md = sha256
            policy = p
            unique_subject = no
            [p]
            commonName = supplied
            [good]
            subjectAltName = IP:127.0.0.1,DNS:localhost
            [other]
            subjectAltName = DNS:other.example
            EOF
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=office-ca \
              -keyout ca.key -out ca.crt 2>/dev/null
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=timelined \
              -keyout server.key -out server.csr 2>/dev/null
            sign() { openssl ca -batch -notext -config ca.cnf -cert ca.crt -keyfile ca.key -in server.csr "$@" 2>/dev/null; }
            sign -out good.crt -days 2 -extensions good
            sign -out expired.crt -startdate 20200101000000Z -enddate 20210101000000Z -extensions good
            sign -out wronghost.crt -days 2 -extensions other
            """
        let (made, _, err) = try shell(script, environment: ["DIR": dir.path])
        try #require(made == 0, "\(err)")
        func attempt(cert: String?) async throws -> TimelineError? {
            var arguments: [String] = []
            if let cert { arguments = ["--cert", dir.path + "/\(cert).crt", "--key", dir.path + "/server.key"] }
            let server = try ServerProcess(arguments: arguments)
            let config = ClientConfig(
                host: "127.0.0.1", port: server.port, token: server.adminToken, fingerprint: nil,
                caFile: dir.path + "/ca.crt")
            do {
                let c = try await TimelineConnection.open(config)
                await c.close()
                return nil
            } catch let e as TimelineError {
                return e
            }
        }
        #expect(try await attempt(cert: "good") == nil, "a certificate from the configured CA for this host")
        let expired = try await attempt(cert: "expired")
        #expect(
            expired?.code == .certificateRejected && expired?.message.contains("certificate has expired") == true,
            "\(String(describing: expired))")
        let wrongHost = try await attempt(cert: "wronghost")
        #expect(
            wrongHost?.code == .certificateRejected && wrongHost?.message.contains("mismatch") == true,
            "\(String(describing: wrongHost))")
        // The server's own self-signed certificate, neither pinned nor from the CA.
        let selfSigned = try await attempt(cert: nil)
        #expect(
            selfSigned?.code == .certificateRejected && selfSigned?.message.contains("self-signed") == true,
            "\(String(describing: selfSigned))")
    }
}
