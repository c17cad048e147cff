import TimelineCore

/// The timeline as one SVG picture (axis, density, lanes, marks, labels, undated events, legend), drawn from a
/// `TimelineLayout`: for slides and reports, and the picture inside the HTML page.
public enum TimelineSVG {
    /// Sizes in pixels.
    public static let margin = 24.0
    static let headerHeight = 56.0
    static let histogramHeight = 28.0
    static let axisHeight = 30.0
    static let laneHeader = 24.0
    static let rowHeight = 30.0
    static let legendHeight = 34.0
    /// A label's font size, and the width of its average character, for the layout's collision check.
    static let fontSize = 11.0
    public static func labelWidth(_ text: String) -> Double { Double(TimelineLayout.columns(text)) * 6.3 }

    /// Colours that stay apart for colour-blind readers (Okabe and Ito) and in greyscale by their lightness;
    /// lanes cycle through them.
    static let palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9"]
    /// The untagged lane is always grey: colours are for tags.
    static let untagged = "#666666"

    static func laneColour(_ layout: TimelineLayout, lane: Int) -> (colour: String, gradient: Int) {
        layout.lanes[lane].name.isEmpty
            ? (untagged, palette.count + 1) : (palette[lane % palette.count], lane % palette.count)
    }

    /// The layout options for a picture `width` pixels wide.
    public static func options(
        width: Double, lanes: TimelineLayout.Lanes = .firstTag, changed: Set<EventID> = []
    ) -> TimelineLayout.Options {
        .init(
            width: width - 2 * margin, lanes: lanes, labelWidth: { labelWidth($0) }, gap: 8, maxLabel: 48,
            changed: changed)
    }

    /// The picture's height for a layout.
    public static func height(_ layout: TimelineLayout) -> Double {
        var y = headerHeight + histogramHeight + axisHeight
        for lane in layout.lanes { y += laneHeader + Double(lane.rows) * rowHeight }
        if !layout.undated.isEmpty { y += laneHeader + Double(layout.undated.count) * 18 + 6 }
        return y + legendHeight
    }

    /// The SVG document. `title` heads it; `subtitle` says what is drawn (counts, filters).
    public static func render(_ layout: TimelineLayout, title: String, subtitle: String) -> String {
        let width = layout.width + 2 * margin
        let height = height(layout)
        var out = ""
        out.reserveCapacity(512 + layout.marks.count * 400)
        // One gradient per colour: a gradient's `currentColor` is its own, not that of what it fills.
        let gradients = (palette + ["#444", untagged]).enumerated().map { i, colour in
            "<linearGradient id=\"fade\(i)\" x1=\"0\" x2=\"1\" y1=\"0\" y2=\"0\">"
                + [(0, 0.15), (0.2, 1), (0.8, 1), (1, 0.15)].map { offset, opacity in
                    "<stop offset=\"\(offset)\" stop-color=\"\(colour)\" stop-opacity=\"\(opacity)\"/>"
                }.joined() + "</linearGradient>"
        }.joined(separator: "\n")
        out += """
            <svg xmlns="http://www.w3.org/2000/svg" class="timeline" data-margin="\(n(margin))" viewBox="0 0 \(n(width)) \(n(height))" \
            width="\(n(width))" height="\(n(height))" role="img" aria-label="\(xml(title))" \
            font-family="DejaVu Sans, Verdana, WenQuanYi Micro Hei, Noto Sans CJK JP, sans-serif" font-size="\(n(fontSize))">
            <defs>
            \(gradients)
            <style>
            .mark text, .undated text { fill: #111; }
            .mark:focus { outline: none; }
            .mark:focus > :last-child, .mark.selected > :last-child { stroke: #000; stroke-width: 2; }
            .mark.changed > :last-child { stroke: #000; stroke-width: 2.5; }
            .mark.changed text { text-decoration: underline; }
            .tick line { stroke: #ccc; }
            .tick.major line { stroke: #999; }
            .tick text { fill: #333; }
            .lane-name { font-weight: bold; fill: #222; }
            .badge { fill: #555; font-style: italic; }
            .warning { fill: #b00; }
            </style>
            </defs>
            <rect class="background" width="100%" height="100%" fill="#fff"/>
            <text x="\(n(margin))" y="24" font-size="17" font-weight="bold">\(xml(fitted(title, width, 10)))</text>
            <text x="\(n(margin))" y="44" fill="#444">\(xml(fitted(subtitle, width, 6.3)))</text>

            """
        let axisTop = headerHeight + histogramHeight
        let bottom = height - legendHeight
        // Density: how many events start in each tick interval.
        let most = max(1, layout.histogram.map(\.count).max() ?? 1)
        out +=
            "<g class=\"histogram\" fill=\"#bbb\">"
        for b in layout.histogram where b.count > 0 {
            let h = (histogramHeight - 6) * Double(b.count) / Double(most)
            out += "<rect data-x0=\"\(n(b.x0))\" data-x1=\"\(n(b.x1))\" x=\"\(n(margin + b.x0 + 1))\" "
            out += "y=\"\(n(axisTop - 2 - h))\" width=\"\(n(max(1, b.x1 - b.x0 - 2)))\" height=\"\(n(h))\">"
            out += "<title>\(b.count) event\(b.count == 1 ? "" : "s")</title></rect>"
        }
        out += "</g>\n"
        out += axis(layout.ticks, factor: 1, top: axisTop, bottom: bottom)
        // Finer ticks for the HTML page's zoom: hidden until zoomed that far.
        for (factor, ticks) in layout.zoomTicks { out += axis(ticks, factor: factor, top: axisTop, bottom: bottom) }
        var y = axisTop + axisHeight
        var laneTops: [Double] = []
        for (i, lane) in layout.lanes.enumerated() {
            laneTops.append(y + laneHeader)
            let colour = laneColour(layout, lane: i).colour
            let name = lane.name.isEmpty ? "untagged" : "#\(lane.name)"
            out +=
                "<g class=\"lane-head\" data-lane=\"\(i)\"><line x1=\"\(n(margin))\" x2=\"\(n(margin + layout.width))\" "
            out += "y1=\"\(n(y + 4))\" y2=\"\(n(y + 4))\" stroke=\"\(colour)\" stroke-width=\"2\"/>"
            out += "<text class=\"lane-name\" x=\"\(n(margin))\" y=\"\(n(y + 18))\" fill=\"\(colour)\">"
            out += "\(xml(name)) (\(lane.count))</text>"
            if !lane.hidden.isEmpty {
                out +=
                    "<text class=\"badge\" x=\"\(n(margin + 200))\" y=\"\(n(y + 18))\">+\(lane.hidden.count) more</text>"
            }
            out += "</g>\n"
            y += laneHeader + Double(lane.rows) * rowHeight
        }
        for m in layout.marks {
            let top = laneTops[m.lane] + Double(m.row) * rowHeight
            let (colour, gradient) = laneColour(layout, lane: m.lane)
            out += mark(m, top: top, colour: colour, gradient: gradient)
        }
        if !layout.undated.isEmpty {
            out += "<g class=\"undated-lane\"><text class=\"lane-name\" x=\"\(n(margin))\" y=\"\(n(y + 18))\">"
            out += "dates that cannot be placed (\(layout.undated.count))</text></g>\n"
            y += laneHeader
            for u in layout.undated {
                y += 18
                out +=
                    "<g class=\"mark undated\(u.changed ? " changed" : "")\" data-event-id=\"\(u.event)\" tabindex=\"0\" "
                out += "role=\"button\" aria-label=\"\(xml(u.dateText)): \(xml(u.label))\">"
                out += "<text x=\"\(n(margin))\" y=\"\(n(y))\"><tspan font-style=\"italic\">\(xml(u.dateText))</tspan>"
                out += " — \(xml(u.label))\(u.warning == nil ? "" : " ⚠")</text></g>\n"
            }
            y += 6
        }
        let ly = bottom + 22
        out += """
            <g class="legend" fill="#333"><circle cx="\(n(margin + 5))" cy="\(n(ly - 4))" r="4.5" fill="#444"/>\
            <text x="\(n(margin + 14))" y="\(n(ly))">one day</text>\
            <rect x="\(n(margin + 80))" y="\(n(ly - 8))" width="34" height="8" fill="#444"/>\
            <text x="\(n(margin + 120))" y="\(n(ly))">days, given to the day</text>\
            <rect x="\(n(margin + 270))" y="\(n(ly - 8))" width="34" height="8" fill="url(#fade\(palette.count))"/>\
            <text x="\(n(margin + 310))" y="\(n(ly))">a month, season or year: somewhere within</text>\
            <text class="warning" x="\(n(margin + 600))" y="\(n(ly))">⚠ a date the importer doubted</text>\
            <rect x="\(n(margin + 790))" y="\(n(ly - 9))" width="8" height="10" fill="#bbb"/>\
            <text x="\(n(margin + 803))" y="\(n(ly))">above the axis: events per interval</text></g>
            </svg>

            """
        return out
    }

    static func axis(_ ticks: [TimelineLayout.Tick], factor: Int, top: Double, bottom: Double) -> String {
        var out = "<g class=\"axis\" data-zoom=\"\(factor)\"\(factor == 1 ? "" : " display=\"none\"")>"
        for t in ticks {
            let x = margin + t.x
            out += "<g class=\"tick\(t.major ? " major" : "")\" data-x=\"\(n(t.x))\">"
            out += "<line x1=\"\(n(x))\" x2=\"\(n(x))\" y1=\"\(n(top))\" y2=\"\(n(bottom))\"/>"
            if !t.label.isEmpty { out += "<text x=\"\(n(x + 3))\" y=\"\(n(top + 14))\">\(xml(t.label))</text>" }
            out += "</g>"
        }
        return out + "</g>\n"
    }

    static func mark(_ m: TimelineLayout.Mark, top: Double, colour: String, gradient: Int) -> String {
        var classes = "mark \(m.shape.rawValue)"
        if m.changed { classes += " changed" }
        if m.copy { classes += " copy" }
        let id = m.copy ? "data-copy-of" : "data-event-id"
        // Each byte here is paid ten thousand times in a large page: the label names the mark (its accessible
        // name), the date and the rest are in the details.
        var out = "<g class=\"\(classes)\" \(id)=\"\(m.event)\" data-revision=\"\(m.revision)\" "
        out += "data-x0=\"\(n(m.x0))\" data-x1=\"\(n(m.x1))\" "
        out += "tabindex=\"0\" role=\"button\">"
        if let warning = m.warning { out += "<title>\(xml(m.dateText)): ⚠ \(xml(warning))</title>" }
        out += "<text x=\"\(n(margin + m.labelX))\" y=\"\(n(top + 12))\">\(xml(m.label))"
        if m.warning != nil { out += "<tspan class=\"warning\"> ⚠</tspan>" }
        out += "</text>"
        switch m.shape {
        case .point:
            out +=
                "<circle cx=\"\(n(margin + m.x0))\" cy=\"\(n(top + 20))\" r=\"5\" fill=\"\(colour)\"/>"
        case .range:
            out += "<rect x=\"\(n(margin + m.x0))\" y=\"\(n(top + 16))\" "
            // Days given to the day stay a bar however short: at least as wide as a day's dot.
            out += "width=\"\(n(max(5, m.x1 - m.x0)))\" height=\"8\" rx=\"2\" fill=\"\(colour)\"/>"
        case .uncertain:
            out += "<rect x=\"\(n(margin + m.x0))\" y=\"\(n(top + 16))\" "
            out +=
                "width=\"\(n(max(2, m.x1 - m.x0)))\" height=\"8\" rx=\"2\" fill=\"url(#fade\(gradient))\"/>"
        }
        return out + "</g>\n"
    }

    /// A heading shortened to the picture's width, at `perCharacter` pixels a column.
    static func fitted(_ text: String, _ width: Double, _ perCharacter: Double) -> String {
        TimelineLayout.shorten(text, max(8, Int((width - 2 * margin) / perCharacter)))
    }

    /// A coordinate with at most one decimal: the file stays small and diffs stay readable.
    static func n(_ v: Double) -> String {
        let r = (v * 10).rounded() / 10
        return r == r.rounded() ? String(Int(r)) : String(r)
    }

    /// Text for XML content and attributes.
    public static func xml(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default:
                // XML 1.0 allows no C0 control but tab, newline and carriage return.
                if c.value < 0x20, c != "\t", c != "\n", c != "\r" { out += " " } else { out.unicodeScalars.append(c) }
            }
        }
        return out
    }
}
