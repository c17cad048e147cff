import ArgumentParser
import Foundation
import TimelineCore
import TimelineServer
import TimelineStore

struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Manage bearer tokens (stored only as SHA-256 hashes).",
        subcommands: [Add.self, List.self, Revoke.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create a token and print it alone on standard output.",
            discussion: """
                Roles: reader, annotator, editor, replicator, admin. The name becomes the author of the edits \
                made with the token. A running server picks the token up at once. With --expires, the token \
                stops working then: AUTH is refused, and a connection using it is refused at its next request.

                Examples:
                  timelined token add ana --role annotator --data ./data
                  timelined token add contractor --role reader --expires 90d --data ./data
                  timelined token add audit --role reader --expires 2027-03-31 --data ./data
                """)

        @Argument(help: "Who the token is for (1-64 of letters, digits, . - _ @).")
        var name: String

        @Option(help: "reader, annotator, editor, replicator or admin.")
        var role: String

        @Option(help: "When it stops working: a time from now (90d, 12h, 30m) or a date (2027-03-31, UTC midnight).")
        var expires: String?

        @OptionGroup var data: DataOptions

        func validate() throws {
            if let expires { _ = try Self.expiry(expires, now: WallClock.now()) }
            guard Role(rawValue: role) != nil else {
                throw ValidationError("unknown role \(role); use reader, annotator, editor, replicator or admin")
            }
            guard TokenStore.isValidName(name) else {
                throw ValidationError("a token's name is 1 to 64 letters, digits, '.', '-', '_' or '@'")
            }
        }

        func run() async throws {
            let role = Role(rawValue: role)!
            if data.store == nil { try data.requireFolder() }
            do {
                let until = try expires.map { try Self.expiry($0, now: WallClock.now()) }
                print(try await data.openStore().tokens.add(name: name, role: role, expires: until))
            } catch {
                fail(describe(error))
            }
        }

        /// `90d`, `12h`, `30m`, `45s` from `now`, or a date (`2027-03-31`, its midnight UTC) or an RFC 3339 time.
        static func expiry(_ text: String, now: Timestamp) throws -> Timestamp {
            let units: [Character: Int64] = ["s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000]
            if let unit = text.last, let scale = units[unit], let count = Int64(text.dropLast()), count > 0,
                count < 100_000
            {
                return Timestamp(milliseconds: now.milliseconds + count * scale)
            }
            let time = Timestamp(rfc3339: text) ?? (text.count == 10 ? Timestamp(rfc3339: text + "T00:00:00Z") : nil)
            guard let time else {
                throw ValidationError(
                    "--expires \(text): give a time from now (90d, 12h, 30m, 45s) or a date (2027-03-31)")
            }
            guard time > now else { throw ValidationError("--expires \(text) is not in the future") }
            return time
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List tokens: names, roles, expiry and last use (never the tokens).")

        @OptionGroup var data: DataOptions

        @Flag(help: "One JSON object per line.")
        var json = false

        func run() async throws {
            if data.store == nil { try data.requireFolder() }
            do {
                let now = WallClock.now()
                for e in try await data.openStore().tokens.entriesWithUses() {
                    let state =
                        e.revoked.map { "revoked \($0.rfc3339)" }
                        ?? e.expires.map { $0 <= now ? "expired \($0.rfc3339)" : "active until \($0.rfc3339)" }
                        ?? "active"
                    if json {
                        print(
                            JSON.object([
                                "name": .string(e.name), "role": .string(e.role.rawValue),
                                "created": .string(e.created.rfc3339),
                                "revoked": e.revoked.map { .string($0.rfc3339) } ?? .null,
                                "expires": e.expires.map { .string($0.rfc3339) } ?? .null,
                                "last_used": e.lastUsed.map { .string($0.rfc3339) } ?? .null,
                                "live": .bool(e.isLive(at: now)),
                            ]).canonicalString)
                    } else {
                        let name = e.name.padding(toLength: 20, withPad: " ", startingAt: 0)
                        let role = e.role.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)
                        let used = e.lastUsed.map { "last used \($0.rfc3339)" } ?? "never used"
                        print("\(name) \(role) created \(e.created.rfc3339)  \(used)  \(state)")
                    }
                }
            } catch {
                fail(describe(error))
            }
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Revoke every live token of a name.")

        @Argument var name: String
        @OptionGroup var data: DataOptions

        func run() async throws {
            if data.store == nil { try data.requireFolder() }
            do {
                let n = try await data.openStore().tokens.revoke(name: name)
                print("revoked \(n) token\(n == 1 ? "" : "s") of \(name)")
            } catch {
                fail(describe(error))
            }
        }
    }
}
