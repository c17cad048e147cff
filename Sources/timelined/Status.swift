import ArgumentParser
import Foundation
import TimelineCore
import TimelineLink
import TimelinePostgres
import TimelineServer
import TimelineStore

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "The store's version, and for an office replica its upstream link, lag and queue.",
        discussion: "Example: timelined status --data ./office-b --json")

    @OptionGroup var data: DataOptions

    @Flag(help: "One JSON object.")
    var json = false

    func run() async throws {
        do {
            let (dir, store, _, live) = try await data.openStore()
            let version = try await store.currentVersion()
            let storeName = (store as? PostgresStore).map { "\($0.location)" } ?? "sqlite"
            var out: [String: JSON] = [
                "dataset": .string(store.dataset), "version": .int(version),
                "live_pid": live.map { .int(Int64($0)) } ?? .null, "store": .string(storeName),
            ]
            if let dir, let link = FileManager.default.contents(atPath: dir.replicationStatusPath),
                case .object(var replica) = try JSON(parsingBytes: Array(link))
            {
                replica["behind"] = .int(max(0, (replica["upstream_version"]?.intValue ?? 0) - version))
                let outbox = try Outbox(path: dir.outboxPath)
                replica["queued"] = .int(Int64(try outbox.queued().count))
                replica["conflicts"] = .int(Int64(try outbox.notTaken().count))
                out["replica"] = .object(replica)
            }
            if json {
                print(JSON.object(out).canonicalString)
                return
            }
            print("dataset   \(store.dataset)")
            print("version   \(version)")
            print("store     \(storeName == "sqlite" ? "this folder's SQLite file" : storeName)")
            print("served    \(live.map { "yes, by timelined pid \($0)" } ?? "no")")
            if let r = out["replica"] {
                print("upstream  \(r["upstream"]?.stringValue ?? "")  (office \(r["office"]?.stringValue ?? ""))")
                print(
                    "state     \(r["state"]?.stringValue ?? "")\(r["message"]?.stringValue.map { $0.isEmpty ? "" : ": \($0)" } ?? "")"
                )
                print("behind    \(r["behind"]?.intValue ?? 0) (upstream at \(r["upstream_version"]?.intValue ?? 0))")
                print("contact   \(r["last_contact"]?.stringValue ?? "never")")
                print("queued    \(r["queued"]?.intValue ?? 0), conflicts \(r["conflicts"]?.intValue ?? 0)")
            }
        } catch {
            fail(describe(error))
        }
    }
}

struct Conflicts: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "An office replica's edits that upstream did not take as they were.",
        discussion: "Example: timelined conflicts --data ./office-b --json")

    @OptionGroup var data: DataOptions

    @Flag(help: "One JSON object per line.")
    var json = false

    func run() throws {
        data.requireData("an office replica's conflicts are kept in its folder")
        let dir = DataDirectory(path: data.directory)
        do {
            let list = try Outbox(path: dir.outboxPath).notTaken()
            for c in list {
                if json {
                    print(c.json.canonicalString)
                } else {
                    print(
                        "#\(c.id) \(c.event?.description ?? "") \(c.field.isEmpty ? c.code.rawValue : c.field): ours \(c.ours.canonicalString) theirs \(c.theirs.canonicalString) (\(c.theirAuthor))"
                    )
                }
            }
            if list.isEmpty && !json { print("no conflicts") }
        } catch {
            fail(describe(error))
        }
    }
}
