#!/usr/bin/env python3
"""Checks PROTOCOL.md §6.7 (state hash) from the outside: the hash recomputed in Python from the spec's words must
equal `timelined verify --json`'s "state" and the spec's own worked examples.

    python3 Scripts/lib/state_hash_check.py --timelined .build/debug/timelined /tmp/shc [--seed N] [--edits 400]

1. The spec's examples: the empty state, the six-edit example (its edits replayed must give its input, byte for
   byte, and its hash).
2. A new server with the sample: the replayed hash, `verify`'s and the spec's (and the spec's partial figures).
3. Random edits of every kind (event.create/update/delete, annotation.add/update/retract, timeline.meta) by three
   roles, through PROPOSE and BATCH, with a seeded RNG: tags, unicode, quotes, backslashes, the control characters
   text may hold, emoji, empty summaries and reference texts, stale bases, deleted events, retracted annotations, refused batches.
   Replayed and compared every --every edits and at the end; at the end also against LOG, a replay from scratch,
   and an export imported into a new store.

Exits 1 with the reason on the first mismatch. Tags include strings of different bytes that Unicode deems
equivalent (é and e + U+0301), which §6.2 says are different tags; `--nfc-only` keeps to NFC text instead.
"""

import argparse
import copy
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from state_hash import Replica, StateError, TimelineState, canonical, replay  # noqa: E402
from timeline_peer import Conn, PeerError, Server, ok_json  # noqa: E402


class Mismatch(Exception):
    pass


def log(msg):
    print(msg, flush=True)


# --- The spec's examples -------------------------------------------------------------------------------------


def spec_examples(path):
    """The figures §6.7 states, read from the spec itself."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^### 6\.7 State hash\n(.*?)^## ", text, re.S | re.M)
    if not m:
        raise Mismatch("%s has no section '### 6.7 State hash'" % path)
    sec = m.group(1)
    blocks = re.findall(r"^```\n(.*?)^```", sec, re.S | re.M)
    if len(blocks) != 3:
        raise Mismatch("§6.7 should hold 3 code blocks (formula, example edits, example input), has %d" % len(blocks))

    def grab(pattern, what):
        found = re.search(pattern, sec, re.S)
        if not found:
            raise Mismatch("§6.7: cannot find %s" % what)
        return found.groups()

    ex = {}
    ex["empty_bytes"], ex["empty_hash"] = grab(r"empty timeline hashes the (\d+) bytes .*?`([0-9a-f]{64})`", "empty")
    ex["tiny_edits"] = [json.loads(line) for line in blocks[1].splitlines() if line.strip()]
    ex["tiny_input"] = blocks[2].encode("utf-8")
    ex["tiny_bytes"], ex["tiny_hash"] = grab(r"leave this input, (\d+) bytes.*?`([0-9a-f]{64})`", "the example's hash")
    (ex["sample_version"], ex["sample_hash"], ex["sample_lines"], ex["sample_bytes"], ex["two_bytes"],
     ex["two_hash"], ex["third_prefix"]) = grab(
        r"sample timeline .*?\(version (\d+);.*?`([0-9a-f]{64})`: (\d+) lines, ([\d,]+) bytes.*?first two lines "
        r"\(([\d,]+) bytes.*?`([0-9a-f]{64})`; the third begins\s+`([^`]+)`", "the sample's figures")
    return ex


def check_spec_examples(ex):
    empty = TimelineState().hash_input()
    if len(empty) != int(ex["empty_bytes"]) or hashlib.sha256(empty).hexdigest() != ex["empty_hash"]:
        raise Mismatch("§6.7 empty example: replay gives %d bytes, hash %s; the spec says %s bytes, %s"
                       % (len(empty), hashlib.sha256(empty).hexdigest(), ex["empty_bytes"], ex["empty_hash"]))
    edits = [dict(e, version=i + 1) for i, e in enumerate(ex["tiny_edits"])]
    state = replay(edits)
    got = state.hash_input()
    if got != ex["tiny_input"]:
        raise Mismatch("§6.7 six-edit example: replay gives\n%s\nthe spec shows\n%s"
                       % (got.decode(), ex["tiny_input"].decode()))
    if len(got) != int(ex["tiny_bytes"]) or state.state_hash() != ex["tiny_hash"]:
        raise Mismatch("§6.7 six-edit example: %d bytes, hash %s; the spec says %s bytes, %s"
                       % (len(got), state.state_hash(), ex["tiny_bytes"], ex["tiny_hash"]))
    log("spec examples: empty %s…, six edits %s… (%d bytes): as stated"
        % (ex["empty_hash"][:12], ex["tiny_hash"][:12], len(got)))


def check_sample(state, ex):
    lines = state.hash_lines()
    data = state.hash_input()
    two = b"".join(line + b"\n" for line in lines[:2])
    facts = [
        ("version", state.version, int(ex["sample_version"])),
        ("state hash", state.state_hash(), ex["sample_hash"]),
        ("lines", len(lines), int(ex["sample_lines"])),
        ("bytes", len(data), int(ex["sample_bytes"].replace(",", ""))),
        ("first two lines' bytes", len(two), int(ex["two_bytes"].replace(",", ""))),
        ("first two lines' hash", hashlib.sha256(two).hexdigest(), ex["two_hash"]),
        ("third line begins as stated", lines[2].startswith(ex["third_prefix"].encode()), True),
        ("no A line", any(line.startswith(b"A ") for line in lines), False),
    ]
    for name, got, want in facts:
        if got != want:
            raise Mismatch("sample: %s is %r, the spec says %r" % (name, got, want))


# --- The server's side ---------------------------------------------------------------------------------------


def verify(binary, data):
    r = subprocess.run([binary, "verify", "--data", data, "--json"], capture_output=True, text=True)
    try:
        report = json.loads(r.stdout)
    except ValueError:
        raise Mismatch("timelined verify printed no JSON (exit %d): %s" % (r.returncode, r.stderr.strip()))
    return report


def compare(replica, binary, data, label):
    mine = replica.catch_up()
    report = verify(binary, data)
    if report.get("problems"):
        raise Mismatch("%s: timelined verify reports problems: %s" % (label, report["problems"]))
    if report["version"] != replica.state.version:
        raise Mismatch("%s: verify is at version %s, the replay at %s" % (label, report["version"],
                                                                          replica.state.version))
    if report["state"] != mine:
        dump = os.path.join(os.path.dirname(data), "replayed-state-input.txt")
        with open(dump, "wb") as f:
            f.write(replica.state.hash_input())
        raise Mismatch("%s, version %d: the server's state hash is %s, the replay's (§6.7) %s; the replayed input "
                       "is in %s%s" % (label, replica.state.version, report["state"], mine, dump,
                                       diagnose(replica)))
    return mine


def served_events(conn):
    data, done = conn.request("lg", 'LOG {"deleted":true,"limit":100000}')
    if ok_json(done) is None:
        raise PeerError(done)
    return [json.loads(d[len("* EVENT "):]) for d in data if d.startswith("* EVENT ")]


def diagnose(replica):
    """The first event or annotation where the replay and what the server serves (LOG) differ."""
    try:
        state = replica.state
        for ev in served_events(replica.conn):
            anns = ev.pop("annotations", [])
            ev.pop("revision", None)
            mine = state.events.get(ev["id"])
            if canonical(mine) != canonical(ev):
                return "\n  first difference: event %s\n  served:   %s\n  replayed: %s" % (
                    ev["id"], canonical(ev).decode(), canonical(mine).decode() if mine else None)
            for a in anns:
                if canonical(state.annotations.get(a["id"])) != canonical(a):
                    return "\n  first difference: annotation %s\n  served:   %s\n  replayed: %s" % (
                        a["id"], canonical(a).decode(), canonical(state.annotations.get(a["id"])).decode())
        return "\n  the events and annotations LOG serves equal the replay's: the metadata, or how they are hashed, differs"
    except Exception as e:  # diagnosis is best effort
        return "\n  (no diagnosis: %s)" % e


# --- Random edits ------------------------------------------------------------------------------------------------

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

TEXT_BITS = [
    "cyber", "dialogue", " ", "  ", "Tokyo", "U.S.-Japan", '"', '\\', '\\"', "\t", "\n", "\r\n", "/", "</script>",
    "\x7f", "\u0085", "\u00a0", "\u2028", "\u2029", "\ufeff", "é", "e\u0301", "Å", "日本語", "最終更新日",
    "ページ", "👩\u200d💻", "🇯🇵", "😀", "\U0001f9ea", "ß", "İ", "ﬁ", "{", "}", "[1]", ":", ",", "null", "0",
    "\u200b", "'", "`", "\\u0041", "%s", "&amp;", "—", "“quoted”",
]
TAGS = ["cyber", "todo", "policy", "a", "Z", "0", "us-japan", "ü", "日本", "👍", "🇯🇵", 'q"uote', "back\\slash",
        "a/b", "{}", "x" * 64, "é", "Å", "ﬁ", "ελ", "mixedCase", "MIXEDCASE"]
EQUIVALENT_TAGS = ["e\u0301", "A\u030a", "\u212b"]  # é, Å, Ångström sign: NFC-equal to tags above
# Keys of objects inside metadata values: anything. The metadata's own keys (§6.5): 1-64 of A-Z a-z 0-9 . _ - : /.
META_KEYS = ["source", "updated", "format", "notes", "k", "", " ", "ключ", "🔑", 'a"b', "x\\y", "\u0001ctl",
             "\x7f", "ab", "a", "b", "B", "é", "日本"]
TOP_META_KEYS = ["source", "updated", "format", "notes", "k", "ab", "a", "b", "B", "doc:1", "x/y", "a.b_c-d",
                 "K" * 64]
BAD_META_KEYS = ["", " ", "ключ", "é", "e\u0301", 'a"b', "\x7f", "K" * 65]
EQUIVALENT_KEYS = ["e\u0301"]
DATE_TEXTS = ["June 2010", "2014-06-09", "2014-06", "2014-06-09/2014-06-12", "2015年02月18日", "2015年2月",
              "spring 2013", "winter 2013", "Q3 2014", "third quarter 2014", "mid-2013", "sometime", "2009",
              "December 5 to 12, 2013", "October 18 to 10, 2012", "September 16 and 17, 2014", "around 1999",
              "about 4,500", "日付なし", "x"]


class Model:
    """What the generator needs to know to make mostly valid edits."""

    def __init__(self):
        self.events = {}  # id -> {"rev", "deleted"}
        self.annotations = {}  # id -> {"event", "author", "retracted"}
        self.meta_keys = set()


class Gen:
    def __init__(self, rng, equivalence):
        self.rng = rng
        self.ids = 0
        self.tags = TAGS + (EQUIVALENT_TAGS if equivalence else [])
        self.keys = META_KEYS + (EQUIVALENT_KEYS if equivalence else [])
        if not equivalence:
            # §6.2: strings are bytes; NFC text has no two different strings that are equivalent.
            self.tags = [unicodedata.normalize("NFC", t) for t in self.tags]
            self.keys = [unicodedata.normalize("NFC", k) for k in self.keys]

    def ulid(self):
        self.ids += 1
        ms = 1_700_000_000_000 + self.ids
        n = (ms << 80) | self.rng.getrandbits(80)
        return "".join(CROCKFORD[(n >> (5 * (25 - i))) & 31] for i in range(26))

    def text(self, empty=True, limit=12):
        r = self.rng
        if empty and r.random() < 0.1:
            return ""
        s = "".join(r.choice(TEXT_BITS) for _ in range(r.randint(1, limit)))
        return s if s.strip() else s + "x"

    def tag_list(self, n=4):
        r = self.rng
        tags = [r.choice(self.tags) for _ in range(r.randint(0, n))]
        return tags + tags[:r.randint(0, 1)]  # a duplicate now and then

    def date(self):
        r = self.rng
        if r.random() < 0.7:
            return r.choice(DATE_TEXTS)
        if r.random() < 0.2:
            return {"text": self.text(False, 3), "start": None, "end": None, "precision": "unknown"}
        y = r.randint(1900, 2030)
        m1, m2 = sorted((r.randint(1, 12), r.randint(1, 12)))
        return {"text": self.text(False, 3), "start": "%04d-%02d-01" % (y, m1), "end": "%04d-%02d-28" % (y, m2),
                "precision": r.choice(["day", "month", "quarter", "season", "year"])}

    def references(self):
        r = self.rng
        out = []
        for _ in range(r.randint(0, 3)):
            ref = {"number": r.randint(0, 1_000_000)}
            if r.random() < 0.7:
                ref["text"] = self.text(True, 6)
            if r.random() < 0.6:
                ref["urls"] = ["http://example.org/%d?q=%s" % (r.randint(0, 99), r.choice(["a", "é", "%20", "\\"]))
                               for _ in range(r.randint(0, 2))]
            out.append(ref)
        return out

    def json_value(self, depth=0):
        r = self.rng
        kind = r.randint(0, 7 if depth < 3 else 4)
        if kind == 0:
            return r.choice([0, 1, -1, 42, 2**63 - 1, -2**63, 10**12, -7])
        if kind == 1:
            return r.random() < 0.5
        if kind in (2, 3, 4):
            # Metadata strings are not checked for control characters: every one of U+0000-U+001F may occur.
            return self.text(True, 6) + "".join(chr(r.randint(0, 0x1f)) for _ in range(r.randint(0, 2)))
        if kind == 5:
            return None if depth else "null"
        if kind == 6:
            return [self.json_value(depth + 1) for _ in range(r.randint(0, 4))] + ([None] if r.random() < .2 else [])
        # §6.5: two keys of one object that Unicode deems equivalent are refused as duplicates; keep one of each.
        out, seen = {}, set()
        for _ in range(r.randint(0, 4)):
            key = r.choice(self.keys + ["z", "Z", "aa", "a\u0000"])
            if unicodedata.normalize("NFC", key) in seen:
                continue
            seen.add(unicodedata.normalize("NFC", key))
            out[key] = self.json_value(depth + 1)
        return out


def encode(obj, rng):
    """A JSON text for a request line: ASCII-escaped or raw UTF-8 (DEL escaped: §3 refuses it raw), any spacing."""
    seps = rng.choice([(",", ":"), (", ", ": ")])
    if rng.random() < 0.5:
        return json.dumps(obj, ensure_ascii=True, separators=seps)
    return json.dumps(obj, ensure_ascii=False, separators=seps).replace("\x7f", "\\u007f")


class Driver:
    USERS = {"admin": "admin", "ed": "editor", "ana": "annotator"}

    def __init__(self, rng, gen, conns):
        self.rng = rng
        self.gen = gen
        self.conns = conns  # user -> Conn
        self.model = Model()
        self.accepted = 0
        self.refused = 0
        self.counts = {}
        self.n = 0

    def pick(self, items):
        return self.rng.choice(sorted(items)) if items else None

    def proposal(self, m, user):
        """One proposal made against model `m`; returns (proposal, expectation, apply) where expectation is "ok",
        "maybe" (a stale base may conflict) or "no", and apply(m, reply) updates the model when accepted."""
        r, g = self.rng, self.gen
        live = [e for e, v in m.events.items() if not v["deleted"]]
        dead = [e for e, v in m.events.items() if v["deleted"]]
        anns = [a for a, v in m.annotations.items() if not v["retracted"] and not m.events[v["event"]]["deleted"]]
        editor = self.USERS[user] in ("admin", "editor")
        ops = ["annotation.add", "annotation.update", "annotation.retract", "invalid"]
        weights = [20, 14, 6, 5]
        if editor:
            ops += ["event.create", "event.update", "event.delete", "timeline.meta"]
            weights += [14, 26, 4, 8]
        op = r.choices(ops, weights)[0]
        if op in ("event.update", "event.delete", "annotation.add") and not live:
            op = "event.create" if editor else "invalid"
        if op in ("annotation.update", "annotation.retract") and not anns:
            op = "annotation.add" if live else "invalid"

        def bump(eid):
            def apply(m, reply):
                m.events[eid]["rev"] += 1
            return apply

        if op == "event.create":
            eid = g.ulid()
            p = {"op": op, "event": eid, "date": g.date(), "title": g.text(False, 8)}
            if r.random() < 0.7:
                p["summary"] = g.text(True, 20)
            if r.random() < 0.5:
                p["references"] = g.references()
            if r.random() < 0.7:
                p["tags"] = g.tag_list()
            mint = r.random() < 0.15
            if mint:
                del p["event"]

            def apply(m, reply):
                m.events[reply["event"] if mint else eid] = {"rev": 1, "deleted": False}
            return p, "ok", apply, mint
        if op == "event.update":
            eid = self.pick(live)
            rev = m.events[eid]["rev"]
            stale = r.random() < 0.15 and rev > 1
            p = {"op": op, "event": eid, "base": r.randint(1, rev - 1) if stale else rev}
            fields = {}
            for name, make in (("title", lambda: g.text(False, 8)), ("summary", lambda: g.text(True, 20)),
                               ("date", g.date), ("references", g.references)):
                if r.random() < 0.35:
                    fields[name] = make()
            if fields or r.random() < 0.5:
                p["set"] = fields
            if not fields or r.random() < 0.5:
                p["tags"] = {"add": g.tag_list(3), "remove": g.tag_list(3)}
                if not p["tags"]["add"] and not p["tags"]["remove"]:
                    p["tags"]["add"] = [r.choice(g.tags)]
            return p, "maybe" if stale else "ok", bump(eid), False
        if op == "event.delete":
            eid = self.pick(live)

            def apply(m, reply):
                m.events[eid]["rev"] += 1
                m.events[eid]["deleted"] = True
            return {"op": op, "event": eid, "base": m.events[eid]["rev"]}, "ok", apply, False
        if op == "annotation.add":
            eid = self.pick(live)
            aid = g.ulid()
            p = {"op": op, "event": eid, "annotation": aid, "text": g.text(False, 10)}
            if r.random() < 0.7:
                p["tags"] = g.tag_list()
            if r.random() < 0.3:
                p["base"] = m.events[eid]["rev"]
            mint = r.random() < 0.15
            if mint:
                del p["annotation"]

            def apply(m, reply):
                m.events[eid]["rev"] += 1
                m.annotations[reply["annotation"] if mint else aid] = {
                    "event": eid, "author": user, "retracted": False}
            return p, "ok", apply, mint
        if op in ("annotation.update", "annotation.retract"):
            aid = self.pick(anns)
            a = m.annotations[aid]
            eid = a["event"]
            p = {"op": op, "event": eid, "annotation": aid}
            expect = "ok" if editor or a["author"] == user else "no"
            if op == "annotation.update":
                p["base"] = m.events[eid]["rev"]
                if r.random() < 0.7:
                    p["set"] = {"text": g.text(False, 10)}
                if "set" not in p or r.random() < 0.5:
                    p["tags"] = {"add": g.tag_list(2) or [r.choice(g.tags)], "remove": g.tag_list(2)}

                return p, expect, bump(eid), False

            def apply(m, reply):
                m.events[eid]["rev"] += 1
                m.annotations[aid]["retracted"] = True
            return p, expect, apply, False
        if op == "timeline.meta":
            s = {}
            for _ in range(r.randint(1, 4)):
                if m.meta_keys and r.random() < 0.25:
                    s[self.pick(m.meta_keys)] = None
                else:
                    s[r.choice(TOP_META_KEYS)] = g.json_value(1)

            def apply(m, reply):
                for k, v in s.items():
                    if v is None:
                        m.meta_keys.discard(k)
                    else:
                        m.meta_keys.add(k)
            return {"op": op, "set": s}, "ok", apply, False
        # Deliberately refused: the state must not change.
        retracted = [a for a, v in m.annotations.items() if v["retracted"]]
        choices = []
        if dead:
            e = self.pick(dead)
            choices += [{"op": "event.update", "event": e, "base": m.events[e]["rev"], "set": {"title": "x"}},
                        {"op": "annotation.add", "event": e, "text": "on a deleted event"},
                        {"op": "event.delete", "event": e, "base": m.events[e]["rev"]}]
        if retracted:
            a = self.pick(retracted)
            e = m.annotations[a]["event"]
            choices += [{"op": "annotation.update", "event": e, "annotation": a, "base": m.events[e]["rev"],
                         "set": {"text": "again"}},
                        {"op": "annotation.retract", "event": e, "annotation": a, "base": m.events[e]["rev"]}]
        if live:
            e = self.pick(live)
            choices += [{"op": "event.create", "event": e, "date": "2014", "title": "a duplicate"},
                        {"op": "event.update", "event": e, "base": m.events[e]["rev"] + 1, "set": {"title": "x"}},
                        {"op": "event.update", "event": e, "base": m.events[e]["rev"], "set": {"title": "\x01"}}]
        choices.append({"op": "annotation.retract", "event": g.ulid(), "annotation": g.ulid()})
        if editor:
            choices.append({"op": "timeline.meta", "set": {r.choice(BAD_META_KEYS): "a key no program reads"}})
            choices.append({"op": "event.update", "event": self.pick(live) or g.ulid(), "base": 0,
                            "set": {"title": r.choice(["", " ", "\n"])}})
        return r.choice(choices), "no", None, False

    def check_reply(self, p, expect, done, where):
        reply = ok_json(done)
        if reply is not None:
            if expect == "no":
                raise Mismatch("%s: the server accepted an edit that must be refused: %s -> %s" % (where, p, done))
            self.accepted += 1
            self.counts[p["op"]] = self.counts.get(p["op"], 0) + 1
            return reply
        self.refused += 1
        if expect == "ok":
            raise Mismatch("%s: the server refused a valid edit: %s -> %s" % (where, json.dumps(p), done))
        if expect == "maybe" and " NO CONFLICT " not in done:
            raise Mismatch("%s: a stale edit was refused but not as a CONFLICT: %s -> %s" % (where, p, done))
        return None

    def propose(self):
        user = self.rng.choice(["admin", "admin", "ed", "ana"])
        p, expect, apply, _ = self.proposal(self.model, user)
        self.n += 1
        tag = "p%d" % self.n
        _, done = self.conns[user].request(tag, "PROPOSE " + encode(p, self.rng))
        reply = self.check_reply(p, expect, done, "PROPOSE as %s" % user)
        if reply is not None:
            apply(self.model, reply)
            if "event" in p or "event" in reply:
                eid = reply["event"]
                if self.model.events[eid]["rev"] != reply["revision"]:
                    raise Mismatch("PROPOSE %s: revision %s, §6.4 gives %s" % (p, reply["revision"],
                                                                              self.model.events[eid]["rev"]))
        return 1 if reply is not None else 0

    def batch(self):
        user = self.rng.choice(["admin", "ed"])
        m = copy.deepcopy(self.model)
        lines, doomed = [], False
        for _ in range(self.rng.randint(2, 12)):
            p, expect, apply, mint = self.proposal(m, user)
            if mint or expect == "maybe":
                continue  # the batch's reply names no minted IDs; a stale base may refuse the whole batch
            if expect == "no":
                if self.rng.random() > 0.3:
                    continue
                doomed = True
            lines.append(encode(p, self.rng))
            if apply:
                apply(m, {})
        if not lines:
            return 0
        self.n += 1
        tag = "b%d" % self.n
        self.conns[user].send("%s BATCH %d\n%s\n" % (tag, len(lines), "\n".join(lines)))
        _, done = self.conns[user].reply(tag)
        reply = ok_json(done)
        if (reply is not None) == doomed:
            raise Mismatch("BATCH of %d as %s (%s): %s\n%s" % (len(lines), user,
                           "one edit must be refused" if doomed else "all valid", done, "\n".join(lines)))
        if reply is None:
            self.refused += 1
            return 0
        if reply["count"] != len(lines):
            raise Mismatch("BATCH: count %s for %d edits" % (reply["count"], len(lines)))
        self.model = m
        self.accepted += len(lines)
        for line in lines:
            op = json.loads(line)["op"]
            self.counts[op] = self.counts.get(op, 0) + 1
        return len(lines)


# --- Main --------------------------------------------------------------------------------------------------------


def run(args):
    started = time.time()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    log("seed %d (rerun with --seed %d)" % (seed, seed))
    rng = random.Random(seed)
    ex = spec_examples(args.spec)
    check_spec_examples(ex)

    if os.path.exists(args.work):
        shutil.rmtree(args.work)
    os.makedirs(args.work)
    data = os.path.join(args.work, "data")
    server = Server(args.timelined, data).start()
    conns = []
    try:
        admin = Conn(server.port, server.fingerprint).auth(server.admin_token)
        conns.append(admin)
        replica = Replica(admin, chain=True)  # the chain tests canonical JSON on every edit's bytes
        h = compare(replica, args.timelined, data, "the sample")
        check_sample(replica.state, ex)
        log("sample: version %d, state %s = timelined verify = §6.7" % (replica.state.version, h))

        users = {"admin": admin}
        for name, role in (("ed", "editor"), ("ana", "annotator")):
            users[name] = Conn(server.port, server.fingerprint).auth(server.add_token(name, role))
            conns.append(users[name])
        driver = Driver(rng, Gen(rng, args.unicode_equivalence), users)
        since_check, checks = 0, 0
        while driver.accepted < args.edits:
            since_check += driver.batch() if rng.random() < 0.25 else driver.propose()
            if since_check >= args.every:
                compare(replica, args.timelined, data, "after %d edits" % driver.accepted)
                since_check = 0
                checks += 1
        h = compare(replica, args.timelined, data, "at the end")
        checks += 1
        st = replica.state
        log("random edits: %d accepted (%s), %d refused as expected; %d comparisons, all equal"
            % (driver.accepted, ", ".join("%s %d" % kv for kv in sorted(driver.counts.items())), driver.refused,
               checks))
        log("  final state: version %d, %d events (%d deleted), %d annotations (%d retracted), %d metadata keys"
            % (st.version, len(st.events), sum(e["deleted"] for e in st.events.values()), len(st.annotations),
               sum(a["retracted"] for a in st.annotations.values()), len(st.meta)))

        # The same content served (LOG), replayed from scratch, and imported elsewhere from an export.
        served = served_events(admin)
        if len(served) != len(st.events):
            raise Mismatch("LOG lists %d events, the replay has %d" % (len(served), len(st.events)))
        diff = diagnose(replica)
        if "first difference" in diff:
            raise Mismatch("LOG differs from the replay:" + diff)
        fresh = Replica(Conn(server.port, server.fingerprint).auth(server.admin_token), chain=True)
        conns.append(fresh.conn)
        if fresh.catch_up() != h:
            raise Mismatch("a replay from version 0 gives %s, the incremental one %s" % (fresh.state.state_hash(), h))
        export = subprocess.run([args.timelined, "export", "--data", data], capture_output=True, check=True)
        jsonl = os.path.join(args.work, "export.jsonl")
        with open(jsonl, "wb") as f:
            f.write(export.stdout)
        copy_data = os.path.join(args.work, "imported")
        subprocess.run([args.timelined, "import", jsonl, "--data", copy_data, "--format", "jsonl"],
                       capture_output=True, check=True)
        imported = verify(args.timelined, copy_data)
        if imported["state"] != h:
            raise Mismatch("the export imported elsewhere has state %s, the original %s" % (imported["state"], h))
        log("LOG, a replay from scratch and the export imported anew (version %d) agree: %s"
            % (imported["version"], h))
    finally:
        for c in conns:
            c.close()
        server.terminate()
    log("ok in %.1f s" % (time.time() - started))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--timelined", required=True, help="the timelined binary")
    ap.add_argument("work", help="a work folder (emptied first)")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--edits", type=int, default=400, help="accepted edits to make (default 400)")
    ap.add_argument("--every", type=int, default=40, help="compare after this many edits (default 40)")
    ap.add_argument("--spec", default=os.path.join(HERE, "..", "..", "Protocol", "PROTOCOL.md"))
    ap.add_argument("--nfc-only", action="store_true",
                    help="leave out tags and keys that are canonically equivalent to others (é vs e+U+0301)")
    args = ap.parse_args()
    args.unicode_equivalence = not args.nfc_only
    try:
        run(args)
    except (Mismatch, PeerError, StateError) as e:
        print("MISMATCH: %s" % e, file=sys.stderr, flush=True)
        sys.exit(1)
    except subprocess.CalledProcessError as e:
        print("FAILED: %s: %s" % (" ".join(e.cmd), (e.stderr or b"").decode().strip()), file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
