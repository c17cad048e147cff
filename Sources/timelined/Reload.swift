import ArgumentParser
import Foundation
import TimelineServer
import TimelineTLS

struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make the folder's running server load its certificate and key again, without dropping anyone.",
        discussion: """
            Sends the server SIGHUP: connections from then on handshake with the certificate and key files as they \
            are now; open connections keep theirs. Files that do not load leave the current ones in use (the \
            server's log says so); the folder's own tls/ files are checked here first. Under systemd: systemctl \
            reload timelined.

            Example:
              cp new.crt ./data/tls/server.crt && cp new.key ./data/tls/server.key && timelined reload --data ./data
            """)

    @Option(help: "The data folder of the running server.")
    var data: String

    func run() throws {
        let dir = DataDirectory(path: (data as NSString).expandingTildeInPath)
        guard let pid = dir.liveWriter(), pid > 0 else { fail("no timelined is serving \(dir.path)") }
        var checked = ""
        if FileManager.default.fileExists(atPath: dir.certificatePath) {
            do {
                _ = try TLSContext.server(certificateFile: dir.certificatePath, keyFile: dir.keyPath)
                let fingerprint = try DataDirectory.fingerprint(ofCertificateAt: dir.certificatePath)
                checked = "; \(dir.certificatePath) has SHA-256 fingerprint \(fingerprint.hex)"
            } catch {
                fail("\(dir.path)/tls: \(describe(error)); nothing sent, the server keeps its current certificate")
            }
        }
        guard kill(pid, SIGHUP) == 0 else {
            fail("could not signal timelined (pid \(pid)): \(String(cString: strerror(errno)))")
        }
        print("asked timelined (pid \(pid)) to load its certificate and key again\(checked)")
    }
}
