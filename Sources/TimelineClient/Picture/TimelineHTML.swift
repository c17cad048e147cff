import Foundation
import TimelineCore

/// The timeline as one self-contained HTML page: the SVG picture, filters by tag and text, zoom and pan, and the
/// details of an event (references with their links, annotations) for the mouse and the keyboard alike. Nothing
/// is fetched from the network, so the file opens on an air-gapped machine and can be mailed.
///
/// The page's address can carry what it shows (`#tag=cyber&q=dialogue&event=ID&zoom=4`), so a view can be shared
/// and a test can open one.
public enum TimelineHTML {
    /// The page for `views` (the events drawn, with their annotations), laid out by `layout`.
    public static func render(
        _ layout: TimelineLayout, views: [EventView], title: String, subtitle: String
    ) -> String {
        let svg = TimelineSVG.render(layout, title: title, subtitle: subtitle)
        let drawn = Set(layout.marks.map(\.event)).union(layout.undated.map(\.event))
        // The layout judged each date once: its doubts are taken from there, not parsed again.
        var warnings: [EventID: String] = [:]
        for m in layout.marks { if let w = m.warning { warnings[m.event] = w } }
        for u in layout.undated { if let w = u.warning { warnings[u.event] = w } }
        var events: [String: JSON] = [:]
        for v in views where drawn.contains(v.event.id) {
            events[v.event.id.description] = json(v, warning: warnings[v.event.id])
        }
        // The tags `log --tag` finds: the events' own, and those of their annotations (not retracted).
        let tags = Set(
            views.filter { drawn.contains($0.event.id) }.flatMap { v in
                v.event.tags + v.annotations.filter { !$0.retracted }.flatMap(\.tags)
            }
        ).sorted()
        let data = JSON.object(["events": .object(events)])
        // Compressed (text compresses about fourfold), in base64: nothing in it can end its script element.
        let script = Data(Gzip.compress(data.canonicalBytes, level: 9)).base64EncodedString()
        let options = tags.map { "<option value=\"\(TimelineSVG.xml($0))\">#\(TimelineSVG.xml($0))</option>" }
        return """
            <!doctype html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <meta name="generator" content="timeline export --format html">
            <title>\(TimelineSVG.xml(title))</title>
            <style>\(css)</style>
            </head>
            <body>
            <header>
            <form id="controls" role="search" onsubmit="return false">
            <label>Tag <select id="tag"><option value="">every tag</option>\(options.joined())</select></label>
            <label>Text <input id="q" type="search" placeholder="words in titles, summaries, notes" size="28"></label>
            <span class="zoom" role="group" aria-label="zoom">\
            <button type="button" id="zoom-out" title="Zoom out (-)" aria-label="zoom out">−</button>\
            <button type="button" id="zoom-in" title="Zoom in (+)" aria-label="zoom in">+</button>\
            <button type="button" id="zoom-fit" title="Fit the whole timeline (0)">Fit</button></span>
            <output id="shown" aria-live="polite"></output>
            </form>
            <p class="help">Click an event, or Tab to it, to read its summary, references and \
            annotations (Esc closes them). In the picture: ← → pan, + − zoom, 0 fits; Ctrl+wheel zooms, dragging pans.</p>
            </header>
            <main>
            <div id="picture" tabindex="0" aria-label="the timeline; arrow keys pan, + and − zoom">
            \(svg)</div>
            <aside id="details" aria-live="polite" hidden><button type="button" id="close" \
            aria-label="close the details" title="Close (Esc)">×</button><div id="event"></div></aside>
            </main>
            <script type="application/gzip+base64" id="timeline-data">\(script)</script>
            <script>\(javascript)</script>
            </body>
            </html>

            """
    }

    /// What the details panel shows of an event, with short keys: 50,000 annotations stay a few megabytes.
    static func json(_ v: EventView, warning: String?) -> JSON {
        let e = v.event
        var o: [String: JSON] = [
            "d": .string(e.date.text), "t": .string(e.title), "s": .string(e.summary),
            "g": .array(e.tags.map { .string($0) }), "v": .int(e.revision),
            "r": .array(
                e.references.map { r in
                    .array([.int(Int64(r.number)), .string(r.text), .array(r.urls.map { .string($0) })])
                }),
            "a": .array(
                v.annotations.map { a in
                    .array([
                        .string(a.id.description), .string(a.author), .string(a.created.rfc3339), .string(a.text),
                        .bool(a.retracted), .array(a.tags.map { .string($0) }),
                    ])
                }),
        ]
        if let warning { o["w"] = .string(warning) }
        return .object(o)
    }

    static let css = """
        body { font: 14px/1.45 "DejaVu Sans", Verdana, "WenQuanYi Micro Hei", "Noto Sans CJK JP", sans-serif; margin: 0; color: #111; background: #fff; }
        header { padding: 10px 24px 0; }
        form { display: flex; flex-wrap: wrap; gap: 8px 16px; align-items: center; }
        .help { color: #555; margin: 6px 0; font-size: 12px; }
        button { min-width: 2.2em; }
        #picture { overflow-x: auto; overflow-y: hidden; cursor: grab; }
        #picture:focus-visible, .mark:focus-visible { outline: 2px solid #000; outline-offset: 2px; }
        #picture.dragging { cursor: grabbing; }
        .mark { cursor: pointer; }
        .mark.filtered { display: none; }
        #details { overflow-wrap: anywhere; position: fixed; top: 0; right: 0; bottom: 0; width: min(440px, 92vw); overflow-y: auto;
          box-sizing: border-box; padding: 8px 24px 24px; background: #fff; box-shadow: -4px 0 16px rgba(0,0,0,.25); }
        #details[hidden] { display: none; }
        #close { float: right; font-size: 20px; background: none; border: 1px solid #999; border-radius: 4px; }
        #details h2 { font-size: 17px; margin: 8px 0 4px; }
        #details .date { font-style: italic; color: #333; }
        #details .warning { color: #b00; }
        #details .tags span { display: inline-block; margin-right: 6px; color: #0057a0; }
        #details ol { padding-left: 1.6em; }
        #details li.annotation { list-style: none; border-left: 3px solid #999; padding-left: 8px; margin: 8px 0; }
        #details li.annotation.retracted { color: #666; border-left-style: dashed; }
        #details li.annotation.retracted .text { text-decoration: line-through; }
        #details .meta { font-size: 12px; color: #444; }
        @media print {
          header form, .help, #close { display: none; }
          #picture { overflow: visible; }
          #picture svg { width: 100%; height: auto; }
          #details { position: static; width: auto; box-shadow: none; }
          .mark.filtered { display: none; }
        }
        """

    static let javascript = #"""
        (function () {
          "use strict";
          var started = performance.now();
          var data = null;
          var picture = document.getElementById("picture");
          var svg = picture.querySelector("svg");
          var margin = parseFloat(svg.getAttribute("data-margin"));
          var baseWidth = svg.viewBox.baseVal.width;
          var axisWidth = baseWidth - 2 * margin;
          var height = svg.viewBox.baseVal.height;
          var marks = Array.prototype.slice.call(svg.querySelectorAll(".mark"));
          var axes = Array.prototype.slice.call(svg.querySelectorAll(".axis"));
          var tagSelect = document.getElementById("tag");
          var query = document.getElementById("q");
          var shown = document.getElementById("shown");
          var details = document.getElementById("details");
          var zoom = 1;
          var selected = null;

          function eventOf(el) { return el.getAttribute("data-event-id") || el.getAttribute("data-copy-of"); }

          // Positions are the layout's, in axis units; zoom stretches the axis, labels keep their size.
          function place() {
            var width = axisWidth * zoom + 2 * margin;
            svg.setAttribute("viewBox", "0 0 " + width + " " + height);
            svg.setAttribute("width", width);
            svg.querySelector(".background").setAttribute("width", width);
            function x(v) { return margin + parseFloat(v) * zoom; }
            marks.forEach(function (m) {
              if (!m.hasAttribute("data-x0")) { return; }
              var x0 = x(m.getAttribute("data-x0")), x1 = x(m.getAttribute("data-x1"));
              var shape = m.lastElementChild;
              var text = m.querySelector("text");
              // The label's place beside its mark, as the layout put it: read once, kept on the element.
              if (m.labelShift === undefined) {
                m.labelShift = parseFloat(text.getAttribute("x")) - margin - parseFloat(m.getAttribute("data-x0"));
              }
              var shift = m.labelShift;
              if (shape.tagName === "circle") { shape.setAttribute("cx", x0); }
              else { shape.setAttribute("x", x0); shape.setAttribute("width", Math.max(2, x1 - x0)); }
              text.setAttribute("x", x0 + shift);
            });
            var best = 1;
            axes.forEach(function (a) {
              var f = parseInt(a.getAttribute("data-zoom"), 10);
              if (f <= zoom && f > best) { best = f; }
            });
            axes.forEach(function (a) {
              var f = parseInt(a.getAttribute("data-zoom"), 10);
              a.setAttribute("display", f === best ? "inline" : "none");
              if (f !== best) { return; }
              Array.prototype.forEach.call(a.querySelectorAll(".tick"), function (t) {
                var tx = x(t.getAttribute("data-x"));
                var line = t.querySelector("line");
                line.setAttribute("x1", tx); line.setAttribute("x2", tx);
                var label = t.querySelector("text");
                if (label) { label.setAttribute("x", tx + 3); }
              });
            });
            Array.prototype.forEach.call(svg.querySelectorAll(".histogram rect"), function (r) {
              var x0 = x(r.getAttribute("data-x0")), x1 = x(r.getAttribute("data-x1"));
              r.setAttribute("x", x0 + 1); r.setAttribute("width", Math.max(1, x1 - x0 - 2));
            });
            Array.prototype.forEach.call(svg.querySelectorAll(".lane-head line"), function (l) {
              l.setAttribute("x2", margin + axisWidth * zoom);
            });
          }

          function setZoom(z, centre) {
            var before = zoom;
            zoom = Math.max(1, Math.min(256, z));
            var c = centre === undefined ? picture.scrollLeft + picture.clientWidth / 2 : centre;
            place();
            picture.scrollLeft = (c - margin) * zoom / before + margin - picture.clientWidth / 2;
            remember();
          }

          function tagged(ev, tag) {
            return ev.g.indexOf(tag) >= 0 || ev.a.some(function (a) { return !a[4] && a[5].indexOf(tag) >= 0; });
          }

          function matches(ev, tag, words) {
            if (tag && !tagged(ev, tag)) { return false; }
            if (!words.length) { return true; }
            var text = [ev.d, ev.t, ev.s].concat(ev.g, ev.r.map(function (r) { return r[1]; }),
              ev.a.filter(function (a) { return !a[4]; }).map(function (a) { return a[1] + " " + a[3] + " " + a[5].join(" "); }))
              .join(" ").toLowerCase();
            return words.every(function (w) { return text.indexOf(w) >= 0; });
          }

          function filter() {
            if (!data) { return; }
            var tag = tagSelect.value;
            var words = query.value.toLowerCase().split(/\s+/).filter(function (w) { return w; });
            var count = 0, seen = {};
            marks.forEach(function (m) {
              var id = eventOf(m);
              var ok = !tag && !words.length ? true : matches(data.events[id], tag, words);
              // Touching only what changes: restyling ten thousand marks costs more than deciding about them.
              if (m.classList.contains("filtered") === ok) { m.classList.toggle("filtered", !ok); }
              if (ok && !seen[id]) { seen[id] = true; count += 1; }
            });
            shown.textContent = count + " of " + Object.keys(data.events).length + " events shown";
            remember();
          }

          function el(name, text, cls) {
            var e = document.createElement(name);
            if (text !== undefined && text !== null) { e.textContent = text; }
            if (cls) { e.className = cls; }
            return e;
          }

          // An event's whole ID, from it or from a unique start of it or of its random part (the short IDs the
          // command line prints, after the ten characters of time that IDs minted together share).
          function resolve(text) {
            if (!data || !text) { return null; }
            var t = text.toUpperCase();
            if (data.events[t]) { return t; }
            var found = Object.keys(data.events).filter(function (id) {
              return id.indexOf(t) === 0 || id.slice(10).indexOf(t) === 0;
            });
            return found.length === 1 ? found[0] : null;
          }

          function show(text) {
            var id = resolve(text);
            var ev = id && data.events[id];
            if (!ev) {
              if (data && text) { shown.textContent = "no event " + text + " in this page"; }
              return;
            }
            if (selected) { selected.classList.remove("selected"); }
            selected = svg.querySelector('[data-event-id="' + id + '"]');
            if (selected) {
              selected.classList.add("selected");
              // Keep the selected mark in sight, left of the panel that now covers the right of the window.
              var r = selected.getBoundingClientRect();
              var free = window.innerWidth - Math.min(440, window.innerWidth * 0.92);
              if (r.right > free - 16) { picture.scrollLeft += r.right - free + 48; }
            }
            details.hidden = false;
            details.setAttribute("data-event-id", id);
            var box = document.getElementById("event");
            box.textContent = "";
            box.appendChild(el("h2", ev.t));
            var date = el("p", ev.d, "date");
            if (ev.w) { date.appendChild(el("span", " ⚠ " + ev.w, "warning")); }
            box.appendChild(date);
            if (ev.g.length) {
              var tags = el("p", null, "tags");
              ev.g.forEach(function (t) { tags.appendChild(el("span", "#" + t)); });
              box.appendChild(tags);
            }
            if (ev.s) { box.appendChild(el("p", ev.s, "summary")); }
            if (ev.r.length) {
              box.appendChild(el("h3", "References"));
              var ol = el("ol", null, "references");
              ev.r.forEach(function (r) {
                var li = el("li", r[1] + " ");
                li.value = r[0];
                r[2].forEach(function (u) {
                  if (!/^https?:\/\//i.test(u)) { return; }
                  var a = el("a", u);
                  a.href = u; a.rel = "noopener noreferrer"; a.target = "_blank";
                  li.appendChild(a); li.appendChild(document.createTextNode(" "));
                });
                ol.appendChild(li);
              });
              box.appendChild(ol);
            }
            box.appendChild(el("h3", ev.a.length ? "Annotations" : "No annotations"));
            var ul = el("ul", null, "annotations");
            ev.a.forEach(function (a) {
              var li = el("li", null, "annotation" + (a[4] ? " retracted" : ""));
              li.setAttribute("data-annotation-id", a[0]);
              li.appendChild(el("div", a[1] + ", " + a[2].slice(0, 16).replace("T", " ") + (a[4] ? " (retracted)" : ""), "meta"));
              li.appendChild(el("div", a[3], "text"));
              if (a[5].length) { li.appendChild(el("div", a[5].map(function (t) { return "#" + t; }).join(" "), "meta")); }
              ul.appendChild(li);
            });
            box.appendChild(ul);
            remember();
          }

          // The view in the address: #tag=…&q=…&event=…&zoom=…
          var restoring = false;
          function remember() {
            if (restoring) { return; }
            var parts = [];
            if (tagSelect.value) { parts.push("tag=" + encodeURIComponent(tagSelect.value)); }
            if (query.value) { parts.push("q=" + encodeURIComponent(query.value)); }
            if (selected) { parts.push("event=" + eventOf(selected)); }
            if (zoom !== 1) {
              parts.push("zoom=" + Math.round(zoom * 100) / 100);
              parts.push("x=" + (picture.scrollLeft / Math.max(1, picture.scrollWidth)).toFixed(4));
            }
            try {
              history.replaceState(null, "", parts.length ? "#" + parts.join("&") : location.pathname + location.search);
            } catch (e) { /* some browsers refuse it for files: the view then stays out of the address */ }
          }
          function restore() {
            restoring = true;
            var params = {};
            location.hash.replace(/^#/, "").split("&").forEach(function (p) {
              var i = p.indexOf("=");
              if (i > 0) { params[p.slice(0, i)] = decodeURIComponent(p.slice(i + 1)); }
            });
            var tag = params.tag || "";
            if (tag && !Array.prototype.some.call(tagSelect.options, function (o) { return o.value === tag; })) {
              // A tag no event here has: shown as chosen, matching nothing, rather than silently dropped.
              var o = document.createElement("option");
              o.value = tag; o.textContent = "#" + tag + " (no event)";
              tagSelect.appendChild(o);
            }
            tagSelect.value = tag;
            query.value = params.q || "";
            filter();
            if (params.zoom) { zoom = Math.max(1, Math.min(256, parseFloat(params.zoom) || 1)); place(); }
            if (params.x) { picture.scrollLeft = (parseFloat(params.x) || 0) * picture.scrollWidth; }
            if (params.event) { show(params.event); }
            restoring = false;
          }

          // One listener for every mark.
          function markOf(target) { return target.closest ? target.closest(".mark") : null; }
          svg.addEventListener("click", function (e) {
            var m = markOf(e.target);
            if (m) { show(eventOf(m)); }
          });
          // Moving through the marks with Tab reads each one, as a list with its details beside it.
          svg.addEventListener("focusin", function (e) {
            var m = markOf(e.target);
            if (m && m !== selected) { show(eventOf(m)); }
          });
          svg.addEventListener("keydown", function (e) {
            var m = markOf(e.target);
            if (m && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); show(eventOf(m)); }
          });
          function close() {
            details.hidden = true;
            if (selected) { selected.classList.remove("selected"); selected.focus(); }
            selected = null;
            remember();
          }
          document.getElementById("close").addEventListener("click", close);
          document.addEventListener("keydown", function (e) { if (e.key === "Escape" && !details.hidden) { close(); } });
          tagSelect.addEventListener("change", filter);
          query.addEventListener("input", filter);
          document.getElementById("zoom-in").addEventListener("click", function () { setZoom(zoom * 2); });
          document.getElementById("zoom-out").addEventListener("click", function () { setZoom(zoom / 2); });
          document.getElementById("zoom-fit").addEventListener("click", function () { setZoom(1); });
          picture.addEventListener("keydown", function (e) {
            if (e.target !== picture && !e.target.classList.contains("mark")) { return; }
            if (e.key === "+" || e.key === "=") { setZoom(zoom * 2); e.preventDefault(); }
            else if (e.key === "-" || e.key === "_") { setZoom(zoom / 2); e.preventDefault(); }
            else if (e.key === "0") { setZoom(1); e.preventDefault(); }
            else if (e.key === "ArrowLeft") { picture.scrollLeft -= picture.clientWidth / 4; e.preventDefault(); }
            else if (e.key === "ArrowRight") { picture.scrollLeft += picture.clientWidth / 4; e.preventDefault(); }
          });
          picture.addEventListener("wheel", function (e) {
            if (!e.ctrlKey) { return; }
            e.preventDefault();
            var box = picture.getBoundingClientRect();
            setZoom(zoom * (e.deltaY < 0 ? 1.25 : 0.8), picture.scrollLeft + e.clientX - box.left);
          }, { passive: false });
          var drag = null;
          picture.addEventListener("pointerdown", function (e) {
            if (e.target.closest && e.target.closest(".mark")) { return; }
            drag = { x: e.clientX, left: picture.scrollLeft };
            picture.classList.add("dragging");
          });
          window.addEventListener("pointermove", function (e) {
            if (drag) { picture.scrollLeft = drag.left - (e.clientX - drag.x); }
          });
          window.addEventListener("pointerup", function () { drag = null; picture.classList.remove("dragging"); });
          window.addEventListener("hashchange", restore);
          // Lane names stay at the left edge of what is seen; the position goes into the address.
          var laneNames = Array.prototype.slice.call(svg.querySelectorAll(".lane-name"));
          var pending = null;
          picture.addEventListener("scroll", function () {
            laneNames.forEach(function (t) { t.setAttribute("x", margin + picture.scrollLeft); });
            if (pending) { clearTimeout(pending); }
            pending = setTimeout(remember, 300);
          });
          // The data is inflated by the browser itself; until it is, the picture shows and scrolls already.
          var packed = document.getElementById("timeline-data").textContent;
          var binary = atob(packed);
          var bytes = new Uint8Array(binary.length);
          for (var i = 0; i < binary.length; i += 1) { bytes[i] = binary.charCodeAt(i); }
          new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"))).json()
            .then(function (d) {
              data = d;
              restore();
              document.documentElement.setAttribute("data-ready", "true");
            })
            .catch(function (e) {
              shown.textContent = "this browser cannot read the page's data (" + e + "): the picture is all it shows";
            });
        })();
        """#
}
