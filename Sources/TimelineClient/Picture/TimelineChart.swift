import TimelineCore

/// The timeline drawn with Unicode block characters in a terminal's width: the same axis and lanes as the
/// SVG (`TimelineLayout`), one row per event under its lane, labels cut to their column with care.
public enum TimelineChart {
    /// ANSI colours (256-colour codes) close to the picture's palette.
    static let colours = [32, 166, 35, 175, 214, 117, 250]

    /// The chart, lines ending in LF. `shortIDs` names events as the rest of the CLI does; `colour` adds ANSI
    /// colours (for a terminal that wants them).
    public static func render(
        _ events: [Event], width: Int, lanes: TimelineLayout.Lanes = .firstTag, changed: Set<EventID> = [],
        shortIDs: [String: String] = [:], title: String, colour: Bool
    ) -> String {
        let width = max(40, width)
        let labelColumns = min(80, max(18, width * 2 / 5))
        let axisColumns = width - labelColumns - 1
        let layout = TimelineLayout(
            events,
            options: .init(
                width: Double(axisColumns), lanes: lanes, labelWidth: { _ in 0 }, gap: 0, maxLabel: 200,
                changed: changed))
        var out = ""
        func paint(_ s: String, _ code: Int?) -> String {
            guard colour, let code, !s.isEmpty else { return s }
            return "\u{1B}[38;5;\(code)m\(s)\u{1B}[0m"
        }
        func bold(_ s: String) -> String { colour ? "\u{1B}[1m\(s)\u{1B}[0m" : s }
        func dim(_ s: String) -> String { colour ? "\u{1B}[2m\(s)\u{1B}[0m" : s }

        let span =
            layout.first.map { f in f.year == layout.last!.year ? "\(f.year)" : "\(f.year)–\(layout.last!.year)" }
            ?? "no dates"
        let count = layout.marks.filter { !$0.copy }.count + layout.undated.count
        let laneWord = lanes == .firstTag ? "lanes by first tag" : "a lane for each tag"
        out += fit(bold(title), plain: title, width) + "\n"
        out += dim(fit("\(count) event\(count == 1 ? "" : "s"), \(span), \(laneWord)", width)) + "\n"

        if !layout.ticks.isEmpty {
            var labels = [Character](repeating: " ", count: axisColumns)
            var rule = [Character](repeating: "─", count: axisColumns)
            var free = 0
            for t in layout.ticks {
                let col = Int(t.x.rounded(.down))
                guard col < axisColumns else { continue }
                rule[col] = "┼"
                let text = Array(t.label)
                if text.isEmpty { continue }
                if col >= free, col + text.count <= axisColumns {
                    for (i, ch) in text.enumerated() { labels[col + i] = ch }
                    free = col + text.count + 1
                }
            }
            rule[0] = rule[0] == "┼" ? "├" : "╶"
            // Density: how many events start in each column, in eighths of the busiest.
            var starts = [Int](repeating: 0, count: axisColumns)
            for m in layout.marks where !m.copy { starts[min(axisColumns - 1, max(0, Int(m.x0.rounded(.down))))] += 1 }
            let most = max(1, starts.max() ?? 1)
            let levels = Array(" ▁▂▃▄▅▆▇█")
            let density = String(starts.map { n in n == 0 ? " " : levels[max(1, (n * 8 + most - 1) / most)] })
            out += fit(
                dim("events per column, busiest \(most)"), plain: "events per column, busiest \(most)", labelColumns)
            out += " " + dim(density) + "\n"
            out += String(repeating: " ", count: labelColumns + 1) + String(labels) + "\n"
            out += String(repeating: " ", count: labelColumns + 1) + dim(String(rule)) + "\n"
        }

        for (index, lane) in layout.lanes.enumerated() {
            let name = lane.name.isEmpty ? "untagged" : "#\(lane.name)"
            out += paint(bold("\(name) (\(lane.count))"), colours[index % colours.count]) + "\n"
            let marks = layout.marks.filter { $0.lane == index }.sorted { ($0.x0, $0.x1) < ($1.x0, $1.x1) }
            for m in marks {
                var label = "\(shortIDs[m.event.description] ?? String(m.event.description.suffix(7))) "
                label += m.changed ? "* " : ""
                let mark = m.warning == nil ? "" : " ⚠"
                let text = fit(label + m.label, labelColumns - TimelineLayout.columns(mark)) + mark
                out += (m.changed ? bold(text) : text) + " "
                out += paint(bar(m, columns: axisColumns), colours[index % colours.count])
                out += "\n"
            }
        }
        if !layout.undated.isEmpty {
            out += bold("dates that cannot be placed (\(layout.undated.count))") + "\n"
            for u in layout.undated {
                let id = shortIDs[u.event.description] ?? String(u.event.description.suffix(7))
                out += fit("\(id) \(u.dateText): \(u.label)", width) + "\n"
            }
        }
        let legend =
            width >= 100
            ? "● one day  █ days  ▒ a month, season or year: somewhere within  ⚠ doubted date"
            : "● day  █ days  ▒ month, season or year  ⚠ doubted"
        // What a mark means comes first; it must not be what is cut.
        out += dim(fit((changed.isEmpty ? "" : "* changed  ") + legend, width))
        // Padding is for the label column only: no line ends in spaces.
        return out.split(separator: "\n", omittingEmptySubsequences: false).map { line in
            var l = Substring(line)
            while l.last == " " { l = l.dropLast() }
            return String(l)
        }.joined(separator: "\n") + "\n"
    }

    /// A mark across the axis' columns, trailing spaces left out.
    static func bar(_ m: TimelineLayout.Mark, columns: Int) -> String {
        let start = min(columns - 1, max(0, Int(m.x0.rounded(.down))))
        let end = min(columns, max(start + 1, Int(m.x1.rounded(.up))))
        var cells = [Character](repeating: " ", count: end)
        switch m.shape {
        case .point:
            cells[start] = "●"
        case .range:
            for i in start..<end { cells[i] = "█" }
        case .uncertain:
            for i in start..<end { cells[i] = "▒" }
            if end - start >= 4 {
                cells[start] = "░"
                cells[end - 1] = "░"
            }
        }
        return String(cells)
    }

    /// `text` in exactly `columns` terminal columns: cut with "…" if longer, padded with spaces if shorter.
    /// `plain` is the text without escape codes, when `text` has them.
    static func fit(_ text: String, plain: String? = nil, _ columns: Int) -> String {
        let visible = plain ?? text
        let used = TimelineLayout.columns(visible)
        if used <= columns { return text + String(repeating: " ", count: columns - used) }
        var out = ""
        var n = 0
        for ch in visible {
            let w = TimelineLayout.columns(String(ch))
            if n + w > columns - 1 { break }
            out.append(ch)
            n += w
        }
        return out + "…" + String(repeating: " ", count: max(0, columns - 1 - n))
    }
}
