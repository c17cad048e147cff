import ArgumentParser
import Foundation
import TimelineClient
import TimelineCore
import TimelineLink
import TimelineTLS

struct Init: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Set up this home for a server, verify it, and pull the timeline.",
        discussion: """
            The server is trusted by its pinned certificate fingerprint (printed by timelined on start) or by a CA \
            file; there is no "accept anything".

            The token is read from --token-file, else from TIMELINE_TOKEN; --token works too, but leaves the token \
            in your shell's history and visible to other users while the command runs.

            Examples:
              timeline init --server 127.0.0.1:7447 --token-file ana.token --fingerprint 9fc83ae3…
              TIMELINE_TOKEN=tl_… timeline init --server tl.example.org:7447 --ca /etc/ssl/certs/office-ca.pem
            """)

    @OptionGroup var global: GlobalOptions
    @Option(help: "HOST:PORT of timelined.") var server: String
    @Option(help: "A file holding your token (from timelined token add).") var tokenFile: String?
    @Option(help: "Your token (prefer --token-file or TIMELINE_TOKEN: an argument is visible to others).")
    var token: String?
    @Option(help: "CA bundle (PEM) that signed the server's certificate.") var ca: String?
    @Option(help: "The server certificate's SHA-256 fingerprint (64 hex digits).") var fingerprint: String?

    func validate() throws {
        guard (ca == nil) != (fingerprint == nil) else {
            throw ValidationError("give exactly one of --ca and --fingerprint")
        }
        if let fingerprint, Fingerprint(hex: fingerprint) == nil {
            throw ValidationError("--fingerprint takes 64 hex digits (colons allowed)")
        }
        guard let colon = server.lastIndex(of: ":"), Int(server[server.index(after: colon)...]) != nil else {
            throw ValidationError("--server takes HOST:PORT")
        }
        guard token == nil || tokenFile == nil else { throw ValidationError("give --token-file or --token, not both") }
    }

    /// The token from --token-file, TIMELINE_TOKEN or --token, in that order.
    func readToken() throws -> String {
        if let tokenFile {
            guard let text = try? String(contentsOfFile: (tokenFile as NSString).expandingTildeInPath, encoding: .utf8)
            else { throw ValidationError("cannot read the token file \(tokenFile)") }
            let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !token.isEmpty else { throw ValidationError("the token file \(tokenFile) is empty") }
            return token
        }
        if let token { return token }
        if let env = ProcessInfo.processInfo.environment["TIMELINE_TOKEN"], !env.isEmpty { return env }
        throw ValidationError("give your token with --token-file FILE or in TIMELINE_TOKEN")
    }

    func run() async throws {
        let colon = server.lastIndex(of: ":")!
        let config = ClientConfig(
            host: String(server[..<colon]), port: Int(server[server.index(after: colon)...])!, token: try readToken(),
            fingerprint: fingerprint.flatMap(Fingerprint.init(hex:)), caFile: ca)
        let client: TimelineClient
        do {
            client = try await TimelineClient.initialize(home: global.clientHome, config: config)
        } catch let error as TimelineError where error.code == .authFailed {
            // Not Output.describe's advice about this home's token: there is no home yet, and nothing queued.
            if global.json {
                Output.error(code: error.code, message: "the server refused this token (unknown, revoked or expired)")
            } else {
                FileHandle.standardError.write(
                    Data(
                        "timeline: AUTH_FAILED: the server refused this token (unknown, revoked or expired); nothing was set up\n"
                            .utf8))
            }
            throw ExitCode(1)
        }
        let report = try await client.pull(progress: Output.progress)
        // timeline changes lists what changed after this.
        if try client.mark() == nil { try client.setMark(report.version) }
        if global.json {
            Output.json([
                "home": .string(client.home.path), "dataset": .string(client.replica.dataset),
                "version": .int(report.version),
            ])
        } else {
            print(
                "initialized \(client.home.path) for \(server): dataset \(client.replica.dataset), version \(report.version)"
            )
        }
    }
}
