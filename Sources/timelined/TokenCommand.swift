import ArgumentParser
import Foundation
import TimelineCore
import TimelineServer

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
                made with the token. A running server picks the token up at once.

                Example:
                  timelined token add ana --role annotator --data ./data
                """)

        @Argument(help: "Who the token is for (1-64 of letters, digits, . - _ @).")
        var name: String

        @Option(help: "reader, annotator, editor, replicator or admin.")
        var role: String

        @OptionGroup var data: DataOptions

        func validate() throws {
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
                print(try await data.openStore().tokens.add(name: name, role: role))
            } catch {
                fail(describe(error))
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List tokens (names and roles; never the tokens).")

        @OptionGroup var data: DataOptions

        @Flag(help: "One JSON object per line.")
        var json = false

        func run() async throws {
            if data.store == nil { try data.requireFolder() }
            do {
                for e in try await data.openStore().tokens.entries() {
                    let state = e.revoked.map { "revoked \($0.rfc3339)" } ?? "active"
                    if json {
                        print(
                            #"{"name":"\#(e.name)","role":"\#(e.role.rawValue)","created":"\#(e.created.rfc3339)","revoked":\#(e.revoked.map { "\"\($0.rfc3339)\"" } ?? "null")}"#
                        )
                    } else {
                        print(
                            "\(e.name.padding(toLength: 20, withPad: " ", startingAt: 0)) \(e.role.rawValue.padding(toLength: 11, withPad: " ", startingAt: 0)) created \(e.created.rfc3339)  \(state)"
                        )
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
