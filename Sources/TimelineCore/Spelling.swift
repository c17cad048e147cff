/// "did you mean" for a mistyped command, as git says it: the commands of both programs.
public enum Spelling {
    /// A sentence for a first argument that names no command, with the closest one if it is close; nil when the
    /// first argument is a command, an option, or absent.
    public static func unknownCommand(_ arguments: ArraySlice<String>, known: [String], program: String) -> String? {
        guard let word = arguments.first, !word.hasPrefix("-"), !known.contains(word), word != "help" else {
            return nil
        }
        let close = known.map { ($0, distance(word, $0)) }.filter { $0.1 <= (word.count >= 4 ? 2 : 1) }
            .sorted { $0.1 < $1.1 }
        guard let best = close.first else {
            return "'\(word)' is not a \(program) command; see \(program) --help"
        }
        return "'\(word)' is not a \(program) command; did you mean '\(best.0)'?"
    }

    /// Edit distance counting a swap of two neighbouring letters as one edit ("shwo" is one from "show").
    public static func distance(_ a: String, _ b: String) -> Int {
        let a = Array(a)
        let b = Array(b)
        guard !a.isEmpty, !b.isEmpty else { return max(a.count, b.count) }
        var d = [[Int]](repeating: [Int](repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
                }
            }
        }
        return d[a.count][b.count]
    }
}
