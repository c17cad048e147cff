import ArgumentParser
import Foundation
import Yams

/// `timelined serve --config FILE`: serve's options from a YAML file, one key per option, named as on the command
/// line without the dashes (`listen: 0.0.0.0:7447`, `empty: true`). The file's settings go before the command
/// line's, so a flag given there overrides the file.
enum ConfigFile {
    struct Problem: Error, CustomStringConvertible {
        var description: String
    }

    /// The arguments `timelined serve …` stands for: the file's settings, then the command line's own, when the
    /// command line names a file with --config; `arguments` unchanged otherwise.
    static func expand(_ arguments: [String]) throws -> [String] {
        guard arguments.first == "serve" else { return arguments }
        var path: String?
        for (i, argument) in arguments.enumerated() {
            if argument == "--config", i + 1 < arguments.count { path = arguments[i + 1] }
            if argument.hasPrefix("--config=") { path = String(argument.dropFirst("--config=".count)) }
        }
        guard let path else { return arguments }
        return ["serve"] + (try settings(in: path)) + arguments.dropFirst()
    }

    /// The file's settings as serve's arguments.
    static func settings(in path: String) throws -> [String] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw Problem(description: "cannot read the configuration file \(path)")
        }
        let loaded: Any?
        do {
            loaded = try Yams.load(yaml: text)
        } catch {
            throw Problem(description: "\(path) is not YAML: \(error)")
        }
        guard let loaded else { return [] }
        guard let table = loaded as? [String: Any] else {
            throw Problem(description: "\(path) must be a mapping of serve's options (listen: 0.0.0.0:7447)")
        }
        let known = knownOptions()
        var out: [String] = []
        for key in table.keys.sorted() {
            guard known.contains(key), key != "config", key != "help" else {
                throw Problem(
                    description: "\(path): unknown setting '\(key)'; the settings are serve's options without the "
                        + "dashes (timelined serve --help)")
            }
            switch table[key] {
            case let flag as Bool:
                if flag { out.append("--\(key)") }
            case let number as Int:
                out += ["--\(key)", "\(number)"]
            case let text as String:
                out += ["--\(key)", text]
            default:
                throw Problem(description: "\(path): '\(key)' takes one value (a word, a number, true or false)")
            }
        }
        return out
    }

    /// serve's long options, as its help lists them: always the options of this build.
    static func knownOptions() -> Set<String> {
        let help = Serve.helpMessage(columns: 10_000)
        var names = Set<String>()
        var rest = Substring(help)
        while let range = rest.range(of: "--") {
            let name = rest[range.upperBound...].prefix { $0.isLetter || $0.isNumber || $0 == "-" }
            if !name.isEmpty { names.insert(String(name)) }
            rest = rest[range.upperBound...]
        }
        return names
    }
}
