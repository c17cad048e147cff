import ArgumentParser
import TimelineClient
import TimelineTLS

struct Init: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Set up this home for a server, verify it, and pull the timeline.",
        discussion: """
            The server is trusted by its pinned certificate fingerprint (printed by timelined on start) or by a CA
            file; there is no "accept anything".

            Examples:
              timeline init --server 127.0.0.1:7447 --token tl_… --fingerprint 9fc83ae3…
              timeline init --server tl.example.org:7447 --token tl_… --ca /etc/ssl/certs/office-ca.pem
            """)

    @OptionGroup var global: GlobalOptions
    @Option(help: "HOST:PORT of timelined.") var server: String
    @Option(help: "Your token (from timelined token add).") var token: String
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
    }

    func run() async throws {
        let colon = server.lastIndex(of: ":")!
        let config = ClientConfig(
            host: String(server[..<colon]), port: Int(server[server.index(after: colon)...])!, token: token,
            fingerprint: fingerprint.flatMap(Fingerprint.init(hex:)), caFile: ca)
        let client = try await TimelineClient.initialize(home: global.clientHome, config: config)
        let report = try await client.pull(progress: Output.progress)
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
