#!/usr/bin/env python3
"""The state hash of PROTOCOL.md §6.7, recomputed from the log by an outside peer.

Written from the spec's words (§6.2-§6.7), not from the server's code: it PULLs every edit, applies each to an
in-memory state as §6.4 says, and hashes that state as §6.7 says. Only what replay needs is checked (versions
follow one another, an edit names something that exists); the hash chain can be checked too (`check_chain`),
which tests this file's canonical JSON against the server's on every edit.

    python3 state_hash.py --port 7447 --fingerprint HEX --token tl_...      # prints version and state hash
    python3 state_hash.py --edits log.jsonl                                 # the same for edits in a file
"""

import argparse
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timeline_peer import Conn, PeerError, pull_all  # noqa: E402


class StateError(Exception):
    """The log cannot be replayed as §6.4 says."""


# --- Canonical JSON (§6.6) -------------------------------------------------------------------------------------

_SHORT = {0x22: '\\"', 0x5C: "\\\\", 0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}


def _string(s):
    out = ['"']
    for ch in s:
        c = ord(ch)
        if c in _SHORT:
            out.append(_SHORT[c])
        elif c < 0x20:
            out.append("\\u%04x" % c)
        else:
            out.append(ch)  # raw: DEL, U+0080-U+009F, every other non-ASCII character, unnormalized
    out.append('"')
    return "".join(out)


def _write(v, out):
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, int):
        out.append(str(v))  # decimal, '-' for negatives; Python never writes "-0" or leading zeros
    elif isinstance(v, str):
        out.append(_string(v))
    elif isinstance(v, list):
        out.append("[")
        for i, item in enumerate(v):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    elif isinstance(v, dict):
        out.append("{")
        for i, key in enumerate(sorted(v, key=lambda k: k.encode("utf-8"))):
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _write(v[key], out)
        out.append("}")
    else:
        raise StateError("not a timeline JSON value (floats never occur): %r" % (v,))


def canonical(value):
    """The canonical JSON bytes of a value (§6.6)."""
    out = []
    _write(value, out)
    return "".join(out).encode("utf-8")


# --- The state (§6.4 applying edits, §6.7 what is hashed) ------------------------------------------------------


def tag_set(tags):
    """Tags as §6.2 keeps them: unique and sorted, both by UTF-8 bytes (no Unicode normalization)."""
    return sorted(set(tags), key=lambda t: t.encode("utf-8"))


def changed_tags(tags, delta):
    """(tags - remove) + add: a tag both added and removed stays."""
    delta = delta or {}
    kept = set(tags) - set(delta.get("remove") or [])
    return tag_set(kept | set(delta.get("add") or []))


class TimelineState:
    """What a log leaves behind: metadata, every event (deleted ones too), every annotation (retracted too)."""

    EVENT_FIELDS = ("date", "title", "summary", "references", "tags")

    def __init__(self):
        self.version = 0
        self.meta = {}
        self.events = {}  # id -> {"date","deleted","id","references","summary","tags","title"}
        self.annotations = {}  # id -> {"author","created","event","id","retracted","tags","text"}

    def _event(self, edit):
        e = self.events.get(edit.get("event"))
        if e is None:
            raise StateError("version %s: %s of an event that does not exist" % (edit["version"], edit["op"]))
        if e["deleted"]:
            raise StateError("version %s: %s of a deleted event" % (edit["version"], edit["op"]))
        return e

    def _annotation(self, edit):
        a = self.annotations.get(edit.get("annotation"))
        if a is None or a["event"] != edit["event"]:
            raise StateError("version %s: %s of an annotation not on that event" % (edit["version"], edit["op"]))
        if a["retracted"]:
            raise StateError("version %s: %s of a retracted annotation" % (edit["version"], edit["op"]))
        return a

    def apply(self, edit):
        """Applies one edit as a PULL gives it (a dict)."""
        if edit.get("version") != self.version + 1:
            raise StateError("version %s follows version %d" % (edit.get("version"), self.version))
        op = edit.get("op")
        if op == "timeline.meta":
            for key, value in edit["set"].items():
                if value is None:
                    self.meta.pop(key, None)
                else:
                    self.meta[key] = value  # the whole value; no deep merge
        elif op == "event.create":
            if edit["event"] in self.events:
                raise StateError("version %s creates event %s again" % (edit["version"], edit["event"]))
            e = {k: edit[k] for k in self.EVENT_FIELDS}
            e["tags"] = tag_set(e["tags"])
            e["id"] = edit["event"]
            e["deleted"] = False
            self.events[e["id"]] = e
        elif op == "event.update":
            e = self._event(edit)
            for key, value in (edit.get("set") or {}).items():
                if key not in ("date", "title", "summary", "references"):
                    raise StateError("version %s sets unknown field %r" % (edit["version"], key))
                e[key] = value
            e["tags"] = changed_tags(e["tags"], edit.get("tags"))
        elif op == "event.delete":
            self._event(edit)["deleted"] = True
        elif op == "annotation.add":
            self._event(edit)
            if edit["annotation"] in self.annotations:
                raise StateError("version %s adds annotation %s again" % (edit["version"], edit["annotation"]))
            self.annotations[edit["annotation"]] = {
                "id": edit["annotation"], "event": edit["event"], "author": edit["author"], "text": edit["text"],
                "tags": tag_set(edit.get("tags") or []), "created": edit["time"], "retracted": False,
            }
        elif op == "annotation.update":
            self._event(edit)
            a = self._annotation(edit)
            if "text" in (edit.get("set") or {}):
                a["text"] = edit["set"]["text"]
            a["tags"] = changed_tags(a["tags"], edit.get("tags"))
        elif op == "annotation.retract":
            self._event(edit)
            self._annotation(edit)["retracted"] = True
        else:
            raise StateError("version %s: unknown op %r" % (edit.get("version"), op))
        self.version = edit["version"]

    def hash_lines(self):
        """The hashed input as a list of lines (bytes, each without its LF)."""
        lines = [b"timeline/1 state", b"M " + canonical(self.meta)]
        by_event = {}
        for a in self.annotations.values():
            by_event.setdefault(a["event"], []).append(a)
        for eid in sorted(self.events, key=lambda i: i.encode()):
            lines.append(b"E " + canonical(self.events[eid]))
            for a in sorted(by_event.get(eid, []), key=lambda a: a["id"].encode()):
                lines.append(b"A " + canonical(a))
        return lines

    def hash_input(self):
        return b"".join(line + b"\n" for line in self.hash_lines())

    def state_hash(self):
        return hashlib.sha256(self.hash_input()).hexdigest()


def replay(edits, state=None):
    """Applies edits (in version order) to `state` (a new one by default) and returns it."""
    state = state or TimelineState()
    for edit in edits:
        state.apply(edit)
    return state


def state_hash(edits):
    return replay(edits).state_hash()


# --- The hash chain (§6.6), to check this file's canonical JSON against the server's --------------------------


def genesis(dataset):
    return hashlib.sha256(("timeline/1 genesis " + dataset).encode()).digest()


def check_chain(edits, previous):
    """Checks each edit's `hash` follows `previous` (32 bytes: the genesis or the hash before the first edit);
    returns the last hash."""
    for edit in edits:
        body = {k: v for k, v in edit.items() if k != "hash"}
        h = hashlib.sha256(previous + canonical(body)).digest()
        if h.hex() != edit["hash"]:
            raise StateError("version %s: the hash chain breaks (canonical JSON differs from the server's?)"
                             % edit["version"])
        previous = h
    return previous


# --- From a server -------------------------------------------------------------------------------------------


class Replica:
    """A state kept up to date from one connection by PULLing what is new; `chain` also checks the hash chain."""

    def __init__(self, conn, chain=False):
        self.conn = conn
        self.state = TimelineState()
        self.chain = chain
        self.head = genesis(json.loads(conn.greeting.split(" ", 3)[3])["dataset"]) if chain else None

    def catch_up(self):
        edits, _ = pull_all(self.conn, self.state.version)
        if self.chain:
            self.head = check_chain(edits, self.head)
        replay(edits, self.state)
        return self.state.state_hash()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int)
    ap.add_argument("--fingerprint")
    ap.add_argument("--token")
    ap.add_argument("--edits", help="a file of edits, one JSON object per line, as PULL gives them")
    ap.add_argument("--dump", action="store_true", help="print the hashed input instead")
    ap.add_argument("--chain", action="store_true", help="also check the hash chain (§6.6)")
    args = ap.parse_args()
    if args.edits:
        with open(args.edits, encoding="utf-8") as f:
            state = replay(json.loads(line) for line in f if line.strip())
    else:
        if not (args.port and args.fingerprint and args.token):
            ap.error("give --edits, or --port, --fingerprint and --token")
        conn = Conn(args.port, args.fingerprint).auth(args.token)
        replica = Replica(conn, chain=args.chain)
        replica.catch_up()
        conn.close()
        state = replica.state
    if args.dump:
        sys.stdout.buffer.write(state.hash_input())
    else:
        print(json.dumps({"version": state.version, "state": state.state_hash()}))


if __name__ == "__main__":
    try:
        main()
    except (StateError, PeerError) as e:
        sys.exit("state_hash: %s" % e)
