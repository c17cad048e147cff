import ArgumentParser
import Foundation
import TimelineServer
import TimelineStore

struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the hash chain and that the state equals the log replayed.",
        discussion: "Prints the version, head hash and state hash; exits 1 on any inconsistency.")

    @OptionGroup var data: DataOptions

    @Flag(help: "Print the report as one JSON object.")
    var json = false

    func run() async throws {
        do {
            let (_, store, _, live) = try await data.openStore()
            let report = try await store.verify()
            if json {
                let problems = report.problems.map { "\"\($0.replacingOccurrences(of: "\"", with: "'"))\"" }.joined(
                    separator: ",")
                print(
                    #"{"ok":\#(report.ok),"dataset":"\#(store.dataset)","version":\#(report.version),"head":"\#(report.headHash.hex)","state":"\#(report.stateHash.hex)","first_bad_version":\#(report.firstBadVersion.map(String.init) ?? "null"),"problems":[\#(problems)],"live_pid":\#(live.map(String.init) ?? "null")}"#
                )
            } else {
                print("dataset \(store.dataset)")
                print("version \(report.version)")
                print("head    \(report.headHash.hex)")
                print("state   \(report.stateHash.hex)")
                if let live { print("(a snapshot: timelined pid \(live) is serving this folder)") }
                print(report.ok ? "ok" : "FAILED: \(report)")
            }
            if !report.ok { throw ExitCode(1) }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            fail(describe(error))
        }
    }
}
