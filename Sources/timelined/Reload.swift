import ArgumentParser
import Foundation
import TimelineCore
import TimelineServer
import TimelineStore
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
        if FileManager.default.fileExists(atPath: dir.certificatePath) {
            do {
                _ = try TLSContext.server(certificateFile: dir.certificatePath, keyFile: dir.keyPath)
            } catch {
                fail("\(dir.path)/tls: \(describe(error)); nothing sent, the server keeps its current certificate")
            }
        }
        let asked = WallClock.now()
        guard kill(pid, SIGHUP) == 0 else {
            fail("could not signal timelined (pid \(pid)): \(String(cString: strerror(errno)))")
        }
        // The server writes what came of it; a reload is done in moments.
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if let data = FileManager.default.contents(atPath: dir.reloadStatusPath),
                let outcome = try? JSON(parsingBytes: Array(data)),
                let time = outcome["time"]?.stringValue.flatMap(Timestamp.init(rfc3339:)), time >= asked
            {
                guard outcome["ok"] == true, let fingerprint = outcome["fingerprint"]?.stringValue else {
                    fail(
                        "timelined (pid \(pid)) kept its current certificate: "
                            + (outcome["error"]?.stringValue ?? "it could not load the new one"))
                }
                print("timelined (pid \(pid)) gives new connections the certificate with fingerprint \(fingerprint)")
                return
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        fail("sent SIGHUP to timelined (pid \(pid)), which did not say within 10 s what came of it; see its log")
    }
}
