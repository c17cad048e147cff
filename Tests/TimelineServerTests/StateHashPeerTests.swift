import Foundation
import Testing

/// The state hash as PROTOCOL.md §6.7 defines it, recomputed by an outside peer written from the spec's words
/// (Python, `Scripts/lib/state_hash_check.py`): over the sample, over a few hundred random edits of every kind
/// (compared with `timelined verify` as they go), against the spec's own worked examples.
@Suite struct StateHashPeerTests {
    @Test func aPeerWrittenFromTheSpecComputesTheServersStateHash() throws {
        let work = ServerProcess.newDataFolder()
        defer { ServerProcess.removeData(work) }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Scripts/lib/state_hash_check.py").path
        let seed = UInt32.random(in: 1...1_000_000)
        let (status, out, err) = try shell(
            "python3 '\(script)' --timelined '\(ServerProcess.binary.path)' '\(work.path)' --seed \(seed)")
        #expect(status == 0, "seed \(seed):\n\(out)\n\(err)")
        #expect(out.contains("ok in "), "\(out)")
    }
}
