#!/usr/bin/env python3
"""Fault and abuse scenarios against real timelined processes (run by Scripts/chaos.sh).

Each scenario prints what it did and what it checked, and raises on the first broken promise:
  crash      writers (PROPOSE and BATCH) while the server is killed with SIGKILL at random moments
  sigterm    SIGTERM under load: every request is answered or refused, nothing acknowledged is lost
  client     a `timeline` client killed mid-pull and mid-push
  replica    an office replica killed mid-catch-up
  diskfull   the data folder on a small tmpfs that fills up, then is freed
  flood      1,000 idle TLS connections plus slow-loris peers while a new client PINGs; limits close them
  watch      a WATCH client that never reads is cut off at the outbound limit; server memory stays bounded
  postgres   two nodes on one PostgreSQL: a node SIGKILLed under load, then PostgreSQL itself restarted under load
"""

import argparse
import json
import os
import random
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from timeline_peer import Conn, PeerError, Server, ok_json, pull_all  # noqa: E402

RESULTS = {}


def say(*args):
    print(*args, flush=True)


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def sample_events(conn):
    data, _ = conn.request("l", "LOG")
    return [json.loads(d[len("* EVENT "):])["id"] for d in data if d.startswith("* EVENT ")]


def verify(server):
    r = server.tool("verify", "--json", check=False)
    report = json.loads(r.stdout) if r.stdout.strip() else {}
    check(r.returncode == 0 and report.get("ok"), "timelined verify failed: %s %s" % (r.stdout, r.stderr))
    return report


# ---------------------------------------------------------------- writers


class Writer(threading.Thread):
    """Sends single PROPOSEs (batch=0) or BATCHes of `batch` annotations until the connection fails.
    Records every request with its outcome: ('ok', versions) / ('no', code) / (None) when no reply came."""

    def __init__(self, server, token, events, name, batch=0, text_size=16):
        super().__init__(daemon=True)
        self.server, self.token, self.events, self.name, self.batch = server, token, events, name, batch
        self.text_size = text_size
        self.requests = []  # (texts, outcome)
        self.stop = False
        self.bye = None
        self.longest_wait = 0.0  # seconds, the slowest reply

    def proposal(self, text):
        pad = "." * max(0, self.text_size - len(text))
        return json.dumps({"op": "annotation.add", "event": random.choice(self.events), "text": text + pad},
                          separators=(",", ":"))

    def run(self):
        try:
            conn = Conn(self.server.port, self.server.fingerprint, timeout=60).auth(self.token)
        except (PeerError, OSError):
            return
        n = 0
        while not self.stop:
            n += 1
            tag = "%s-%d" % (self.name, n)
            if self.batch:
                texts = ["%s/%d" % (tag, k) for k in range(self.batch)]
                wire = "%s BATCH %d\n" % (tag, self.batch) + "".join(self.proposal(t) + "\n" for t in texts)
            else:
                texts = [tag]
                wire = "%s PROPOSE %s\n" % (tag, self.proposal(tag))
            entry = [texts, None]
            self.requests.append(entry)
            try:
                sent = time.time()
                conn.send(wire)
                _, done = conn.reply(tag)
                self.longest_wait = max(self.longest_wait, time.time() - sent)
            except PeerError as e:
                self.bye = str(e)
                break
            except OSError:
                break
            reply = ok_json(done)
            if reply is not None:
                entry[1] = ("ok", reply)
            else:
                entry[1] = ("no", done.split()[2] if len(done.split()) > 2 else done)
        conn.close()


def annotation_texts(edits):
    """text prefix (before the padding) -> list of versions, for every annotation.add in the log."""
    seen = {}
    for e in edits:
        if e.get("op") == "annotation.add":
            seen.setdefault(e["text"].rstrip("."), []).append(e["version"])
    return seen


def check_log(server, writers, allow_unanswered_in_log=True, unknown_outcome=()):
    """Every acknowledged edit is present exactly once at its version; no batch is partial; versions are
    contiguous; verify passes. Refusals with a code in `unknown_outcome` may be in the log (once): the server could
    not learn whether its commit landed. Returns (edits checked, acknowledged)."""
    conn = Conn(server.port, server.fingerprint).auth(server.admin_token)
    edits, head = pull_all(conn)
    conn.close()
    versions = [e["version"] for e in edits]
    check(versions == list(range(1, head + 1)), "versions are not contiguous 1..%d" % head)
    seen = annotation_texts(edits)
    dupes = {t: v for t, v in seen.items() if len(v) > 1}
    check(not dupes, "edits stored more than once: %s" % list(dupes.items())[:3])
    acked = 0
    for w in writers:
        for texts, outcome in w.requests:
            present = [t for t in texts if t in seen]
            check(len(present) in (0, len(texts)), "batch %s is partial: %d of %d" % (texts[0], len(present),
                                                                                      len(texts)))
            if outcome and outcome[0] == "ok":
                acked += len(texts)
                check(len(present) == len(texts), "acknowledged %s is missing" % texts[0])
                first = outcome[1].get("first", outcome[1].get("version"))
                check(seen[texts[0]][0] == first, "%s is at version %d, acknowledged as %d" % (
                    texts[0], seen[texts[0]][0], first))
            elif outcome and outcome[0] == "no" and outcome[1] not in unknown_outcome:
                check(not present, "refused %s (%s) was written" % (texts[0], outcome[1]))
            elif not allow_unanswered_in_log:
                check(not present, "%s was written but never answered" % texts[0])
    report = verify(server)
    check(report["version"] == head, "verify saw version %d, PULL %d" % (report["version"], head))
    return len(edits), acked


# ---------------------------------------------------------------- scenarios


def start_for_writers(bin_dir, work, name):
    """A fresh server with the sample timeline; returns (server, its event IDs, an annotator token)."""
    server = Server(os.path.join(bin_dir, "timelined"), os.path.join(work, name)).start()
    conn = Conn(server.port, server.fingerprint).auth(server.admin_token)
    events = sample_events(conn)
    conn.close()
    return server, events, server.add_token("writer", "annotator")


def scenario_crash(bin_dir, work, rounds):
    server, events, token = start_for_writers(bin_dir, work, "crash")
    writers_all = []
    total_acked = 0
    kills_mid_batch = 0
    for r in range(1, rounds + 1):
        if r > 1:
            server.start()
        writers = [Writer(server, token, events, "r%d-p%d" % (r, i)) for i in range(6)]
        writers += [Writer(server, token, events, "r%d-b%d" % (r, i), batch=random.choice([10, 50, 200]))
                    for i in range(2)]
        for w in writers:
            w.start()
        time.sleep(random.uniform(0.3, 1.5))
        server.kill9()
        for w in writers:
            w.stop = True
            w.join(30)
        kills_mid_batch += sum(1 for w in writers if w.batch and w.requests and w.requests[-1][1] is None)
        server.start()
        writers_all += writers
        checked, acked = check_log(server, writers_all)
        round_acked = sum(len(t) for w in writers for t, o in w.requests if o and o[0] == "ok")
        total_acked += round_acked
        server.kill9() if r < rounds else server.terminate()
        say("  round %2d: %5d acknowledged this round, log %6d edits, all %d acknowledged present once, verify ok"
            % (r, round_acked, checked, acked))
    RESULTS["crash"] = {"rounds": rounds, "acknowledged": total_acked, "log_edits": checked,
                        "batches_cut_by_kill": kills_mid_batch}
    say("crash: %d SIGKILL rounds, %d acknowledged edits all present exactly once, %d batches in flight at a kill "
        "left no partial batch, versions contiguous, verify ok" % (rounds, total_acked, kills_mid_batch))
    return server


def scenario_sigterm(bin_dir, work, rounds):
    server, events, token = start_for_writers(bin_dir, work, "sigterm")
    writers_all = []
    refused = answered = unanswered = 0
    for r in range(1, rounds + 1):
        if r > 1:
            server.start()
        writers = [Writer(server, token, events, "t%d-p%d" % (r, i)) for i in range(6)]
        writers += [Writer(server, token, events, "t%d-b%d" % (r, i), batch=100) for i in range(2)]
        for w in writers:
            w.start()
        time.sleep(random.uniform(0.3, 1.0))
        status = server.terminate()
        check(status == 0, "timelined exited %s after SIGTERM" % status)
        for w in writers:
            w.stop = True
            w.join(30)
            for texts, outcome in w.requests:
                if outcome is None:
                    unanswered += 1
                elif outcome[0] == "no":
                    check(outcome[1] == "SHUTTING_DOWN", "unexpected refusal %s" % (outcome,))
                    refused += 1
                else:
                    answered += 1
            check(w.bye is None or "SHUTDOWN" in w.bye, "writer saw %s" % w.bye)
        writers_all += writers
        server.start()
        check_log(server, writers_all, allow_unanswered_in_log=False)
        server.terminate()
    RESULTS["sigterm"] = {"rounds": rounds, "acknowledged_requests": answered, "refused_shutting_down": refused,
                          "unanswered_not_written": unanswered}
    say("sigterm: %d rounds under load: %d requests acknowledged and present, %d refused SHUTTING_DOWN and absent, "
        "%d sent after the BYE and absent; exit status 0" % (rounds, answered, refused, unanswered))


def timeline_cli(bin_dir, home, *args, check_status=True, timeout=300):
    r = subprocess.run([os.path.join(bin_dir, "timeline"), args[0], "--home", home, *args[1:]], capture_output=True,
                       text=True,
                       timeout=timeout)
    if check_status and r.returncode != 0:
        raise PeerError("timeline %s: %s %s" % (" ".join(args), r.stdout, r.stderr))
    return r


def replica_log(path):
    out = subprocess.run(["sqlite3", path, "SELECT version || ' ' || hex(hash) FROM edits ORDER BY version"],
                         capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def scenario_client(bin_dir, work, server, rounds):
    """`timeline pull` and `timeline push` killed at random moments; the replica ends equal to the server's log
    and every queued edit is on the server exactly once."""
    server.start()
    home = os.path.join(work, "client-home")
    token = server.add_token("ana", "annotator")
    timeline_cli(bin_dir, home, "init", "--server", "127.0.0.1:%d" % server.port, "--token", token,
                 "--fingerprint", server.fingerprint)
    # `init` pulled the log; what the kills interrupt is the pull of what is written next.
    conn = Conn(server.port, server.fingerprint).auth(server.admin_token)
    events = sample_events(conn)
    more = [Writer(server, server.admin_token, events, "more%d" % i, batch=500) for i in range(2)]
    for w in more:
        w.start()
    time.sleep(3)
    for w in more:
        w.stop = True
        w.join(30)
    edits, head = pull_all(conn)
    conn.close()
    kills = []
    replica = os.path.join(home, "replica.sqlite")
    delay = 0.15
    for r in range(rounds * 4):
        p = subprocess.Popen([os.path.join(bin_dir, "timeline"), "pull", "--home", home], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(random.uniform(delay / 2, delay))
        if p.poll() is None:
            p.kill()
            p.wait()
            have = len(replica_log(replica))
            if have < head:
                kills.append(have)
                if len(kills) >= rounds:
                    break
            else:
                break
        else:
            break
        delay += 0.05
    check(kills, "no pull was killed midway")
    timeline_cli(bin_dir, home, "pull")
    mine = replica_log(os.path.join(home, "replica.sqlite"))
    check(len(mine) == head, "replica has %d edits, server %d" % (len(mine), head))
    check(mine == ["%d %s" % (e["version"], e["hash"].upper()) for e in edits], "replica differs from the server")
    say("client: `timeline pull` killed %d times mid-pull (with %s edits stored); the replica resumed to the same %d "
        "edits and hashes" % (len(kills), kills, head))
    # Offline edits, then a push killed at random moments.
    port = server.port
    server.terminate()
    events = [e["event"] for e in edits if e.get("op") == "event.create"][:20]
    queued = []
    for i in range(60):
        text = "queued-%d" % i
        r = timeline_cli(bin_dir, home, "annotate", events[i % len(events)], text, check_status=False)
        check("queued" in (r.stdout + r.stderr).lower(), "annotate offline did not queue: %s %s" % (r.stdout,
                                                                                                   r.stderr))
        queued.append(text)
    server.args = ["--listen", "127.0.0.1:%d" % port]  # the client knows this port
    server.start()
    push_kills = 0
    for r in range(rounds * 3):
        p = subprocess.Popen([os.path.join(bin_dir, "timeline"), "push", "--home", home], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(random.uniform(0.0, 0.15))
        if p.poll() is None:
            p.kill()
            push_kills += 1
        p.wait()
    timeline_cli(bin_dir, home, "sync")
    status = json.loads(timeline_cli(bin_dir, home, "status", "--json").stdout)
    check(status["pending"] == 0 and status["conflicts"] == 0, "after sync: %s" % status)
    conn = Conn(server.port, server.fingerprint).auth(server.admin_token)
    edits, head = pull_all(conn)
    conn.close()
    seen = annotation_texts(edits)
    for text in queued:
        check(len(seen.get(text, [])) == 1, "queued %s is on the server %d times" % (text, len(seen.get(text, []))))
    mine = replica_log(os.path.join(home, "replica.sqlite"))
    check(mine == ["%d %s" % (e["version"], e["hash"].upper()) for e in edits], "replica differs after push")
    verify(server)
    server.terminate()
    server.args = []
    RESULTS["client"] = {"pull_kills": len(kills), "push_kills": push_kills, "queued_edits": len(queued)}
    say("client: `timeline push` killed %d times; all %d queued edits on the server exactly once; replica equal"
        % (push_kills, len(queued)))


def scenario_replica(bin_dir, work, server, rounds):
    """An empty office replica killed with SIGKILL during catch-up, several times; it ends equal to the primary."""
    server.start()
    link = server.add_token("office-link-%d" % random.randrange(1 << 30), "replicator")
    office = Server(os.path.join(bin_dir, "timelined"), os.path.join(work, "office"), args=[
        "--empty", "--office", "office-b", "--replicate-from", "127.0.0.1:%d" % server.port, "--upstream-token", link,
        "--upstream-fingerprint", server.fingerprint])
    primary = server.tool("verify", "--json")
    head = json.loads(primary.stdout)["version"]
    kills = 0
    seen_versions = []
    for r in range(rounds):
        office.start()
        time.sleep(random.uniform(0.2, 1.0))
        office.kill9()
        kills += 1
        v = json.loads(office.tool("verify", "--json").stdout)
        check(v["ok"], "office store failed verify after SIGKILL: %s" % v)
        seen_versions.append(v["version"])
    office.start()
    deadline = time.time() + 300
    while time.time() < deadline:
        v = json.loads(office.tool("verify", "--json").stdout)
        if v["version"] >= head:
            break
        time.sleep(0.5)
    office.terminate()
    mine = json.loads(office.tool("verify", "--json").stdout)
    theirs = json.loads(server.tool("verify", "--json").stdout)
    server.terminate()
    check(mine["ok"] and mine["version"] == theirs["version"] and mine["head"] == theirs["head"]
          and mine["state"] == theirs["state"], "office %s != primary %s" % (mine, theirs))
    RESULTS["replica"] = {"kills": kills, "versions_at_kills": seen_versions, "edits": head}
    say("replica: office killed %d times mid-catch-up (at versions %s); caught up to %d edits with the primary's "
        "head and state hashes, verify ok" % (kills, seen_versions, head))


def scenario_diskfull(bin_dir, work):
    mount = os.path.join(work, "small-fs")
    os.makedirs(mount, exist_ok=True)
    size_mb = 48
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % size_mb, "tmpfs", mount], check=True)
    try:
        # Ballast that the operator deletes once the disk is full.
        ballast = os.path.join(mount, "ballast")
        with open(ballast, "wb") as f:
            f.write(b"\0" * (16 << 20))
        server = Server(os.path.join(bin_dir, "timelined"), os.path.join(mount, "data")).start()
        conn = Conn(server.port, server.fingerprint).auth(server.admin_token)
        events = sample_events(conn)
        token = server.add_token("writer", "annotator")
        writers = [Writer(server, token, events, "f%d" % i, text_size=60000) for i in range(3)]
        writers.append(Writer(server, token, events, "fb", batch=20, text_size=30000))
        for w in writers:
            w.start()
        deadline = time.time() + 120
        while time.time() < deadline and not any(o and o[0] == "no" for w in writers for _, o in w.requests):
            time.sleep(0.1)
        time.sleep(0.5)
        for w in writers:
            w.stop = True
            w.join(60)
        codes = sorted({o[1] for w in writers for _, o in w.requests if o and o[0] == "no"})
        check(codes == ["STORE_FAILED"], "writes on a full disk were answered %s" % codes)
        full = shutil.disk_usage(mount)
        # Reads keep working on the same connection and new ones.
        data_lines, done = conn.request("g", "GET %s" % events[0])
        check(done == "g OK" and data_lines, "GET on a full disk: %s" % done)
        edits, head = pull_all(conn)
        conn2 = Conn(server.port, server.fingerprint).auth(server.admin_token)
        _, done = conn2.request("l", "LOG {\"limit\":5}")
        check(done.startswith("l OK"), "LOG on a full disk: %s" % done)
        _, done = conn2.request("w", "PROPOSE " + json.dumps({"op": "annotation.add", "event": events[0],
                                                                 "text": "x" * 60000}))
        check(" NO STORE_FAILED " in done, "a write on a full disk: %s" % done)
        refused_line = done
        acked = sum(len(t) for w in writers for t, o in w.requests if o and o[0] == "ok")
        os.remove(ballast)  # space is freed: writes resume

        _, done = conn2.request("w2", "PROPOSE " + json.dumps({"op": "annotation.add", "event": events[0],
                                                                  "text": "after space was freed"}))
        check(done.startswith("w2 OK"), "write after freeing space: %s" % done)
        conn.close()
        conn2.close()
        checked, _ = check_log(server, writers)
        server.terminate()
        verify(server)
        RESULTS["diskfull"] = {"filesystem_mb": size_mb, "acknowledged_before_full": acked,
                               "free_bytes_when_full": full.free, "refusal": refused_line.split(" ", 1)[1]}
        say("diskfull: %d MiB tmpfs filled after %d acknowledged edits; writes answered `%s`; GET, PULL and LOG "
            "kept working; once 16 MiB were freed writes resumed; %d edits checked, verify ok"
            % (size_mb, acked, refused_line.split(" ", 1)[1][:60], checked))
    finally:
        subprocess.run(["umount", "-l", mount])


def tls_connect(port):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30))


def read_bye(sock, timeout):
    sock.settimeout(timeout)
    buf = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            buf += chunk
    except (socket.timeout, OSError, ssl.SSLError):
        pass
    return [line for line in buf.decode(errors="replace").split("\n") if line.startswith("* BYE")]


def scenario_flood(bin_dir, work, idle_count):
    auth_timeout, idle_timeout = 6, 10
    server = Server(os.path.join(bin_dir, "timelined"), os.path.join(work, "flood"), args=[
        "--auth-timeout", str(auth_timeout), "--idle-timeout", str(idle_timeout),
        "--max-connections", str(idle_count + 64)]).start()
    token = server.admin_token
    start = time.time()
    idle = []
    for i in range(idle_count):
        c = Conn(server.port, server.fingerprint)
        if i % 2 == 0:
            c.auth(token)
        idle.append(c)
    opened = time.time() - start
    # Slow loris: a byte every 2 s, never a full line (some before authenticating, some after), and some that
    # never finish the TLS handshake.
    loris = [Conn(server.port, server.fingerprint) for _ in range(10)]
    for c in loris[:5]:
        c.auth(token)
    half_open = []
    for _ in range(10):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.send(b"\x16\x03\x01")
        half_open.append(s)
    stop = threading.Event()

    def drip():
        while not stop.is_set():
            for c in loris:
                try:
                    c.send("x")
                except OSError:
                    pass
            for s in half_open:
                try:
                    s.send(b"\x00")
                except OSError:
                    pass
            stop.wait(2)

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    rss_held = server.rss_kib()
    latencies = []
    for i in range(20):
        t0 = time.time()
        c = Conn(server.port, server.fingerprint).auth(token)
        _, done = c.request("p", "PING")
        latencies.append((time.time() - t0) * 1000)
        check(done.startswith("p OK"), "PING while flooded: %s" % done)
        c.close()
    latencies.sort()
    # Over the connection limit: refused with a reason, not hung.
    extra = [Conn(server.port, server.fingerprint, greeting=False) for _ in range(64 + 10 - 20)]
    refused = sum(1 for c in extra if read_bye(c.sock, 2) and True)
    for c in extra:
        c.close()
    # The limits close the idle ones with their reasons.
    time.sleep(idle_timeout + 3)
    reasons = {}
    for c in idle + loris:
        for line in read_bye(c.sock, 0.2):
            code = line.split()[2]
            reasons[code] = reasons.get(code, 0) + 1
    stop.set()
    handshake_closed = 0
    for s in half_open:
        s.settimeout(5)
        try:
            if s.recv(1) == b"":
                handshake_closed += 1
        except (socket.timeout, OSError):
            pass
    expected_auth = idle_count - (idle_count + 1) // 2 + 5
    expected_idle = (idle_count + 1) // 2 + 5
    check(reasons.get("AUTH_TIMEOUT", 0) == expected_auth, "AUTH_TIMEOUT %s of %d" % (reasons, expected_auth))
    check(reasons.get("IDLE_TIMEOUT", 0) == expected_idle, "IDLE_TIMEOUT %s of %d" % (reasons, expected_idle))
    check(handshake_closed == len(half_open), "%d of %d half-open handshakes closed" % (handshake_closed,
                                                                                       len(half_open)))
    check(refused >= 1, "no connection over the limit was refused")
    c = Conn(server.port, server.fingerprint).auth(token)
    _, done = c.request("p", "PING")
    check(done.startswith("p OK"), "PING after the flood: %s" % done)
    c.close()
    server.terminate()
    RESULTS["flood"] = {"idle_connections": idle_count, "opened_in_s": round(opened, 2), "slow_loris": 20,
                        "ping_ms_p50": round(latencies[len(latencies) // 2], 1),
                        "ping_ms_max": round(latencies[-1], 1), "server_rss_mib_held": round(rss_held / 1024, 1),
                        "closed": reasons, "handshake_timeouts": handshake_closed,
                        "refused_over_limit": refused}
    say("flood: %d idle TLS connections (opened in %.1f s) + 10 slow-loris + 10 half-open handshakes held, server "
        "RSS %.0f MiB; a new client's connect+AUTH+PING p50 %.1f ms, max %.1f ms; then closed: %s, %d handshake "
        "timeouts, %d over the limit refused TOO_MANY_CONNECTIONS"
        % (idle_count, opened, rss_held / 1024, latencies[len(latencies) // 2], latencies[-1], reasons,
           handshake_closed, refused))


def scenario_watch(bin_dir, work):
    limit = 1 << 20
    server = Server(os.path.join(bin_dir, "timelined"), os.path.join(work, "watch"),
                    args=["--max-outbound", str(limit)]).start()
    token = server.admin_token
    conn = Conn(server.port, server.fingerprint).auth(token)
    events = sample_events(conn)
    stalled = Conn(server.port, server.fingerprint).auth(token)
    stalled.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    stalled.send("w WATCH 0\n")
    healthy = Conn(server.port, server.fingerprint).auth(token)
    healthy.send("h WATCH 0\n")
    rss_before = server.rss_kib()
    writer = Writer(server, token, events, "wb", batch=200, text_size=2000)
    writer.start()
    t_start = time.time()
    received = 0
    deadline = time.time() + 120
    cut = None
    while time.time() < deadline:
        healthy.sock.settimeout(1)
        try:
            line = healthy.line()
            received += 1
        except (socket.timeout, TimeoutError):
            pass
        if received > 20000:
            break
    writer.stop = True
    writer.join(60)
    rss_after = server.rss_kib()
    say("   writer phase %.1f s" % (time.time() - t_start))
    # Now read what the stalled watcher was sent: its backlog, then the reason.
    stalled.sock.settimeout(10)
    backlog = 0
    try:
        while True:
            line = stalled.line()
            backlog += 1
            if line.startswith("* BYE"):
                cut = line
                break
    except (PeerError, OSError) as e:
        cut = cut or "%s after %d lines" % (e, backlog)
    check(cut is not None and "SLOW_CONSUMER" in cut, "the stalled watcher was not cut off: %s" % cut)
    healthy.send("DONE\n")
    while True:
        line = healthy.line()
        if line.startswith("h OK"):
            break
        received += 1
    check(received > 10000, "the healthy watcher received only %d edits" % received)
    server.terminate()
    growth = (rss_after - rss_before) / 1024
    RESULTS["watch"] = {"outbound_limit_bytes": limit, "cut": cut, "healthy_watcher_edits": received,
                        "server_rss_growth_mib": round(growth, 1)}
    say("watch: a WATCH that never read was sent `%s` past the %d-byte limit; a reading watcher got all %d edits; "
        "server RSS grew %.1f MiB meanwhile" % (cut, limit, received, growth))


def postgres_database():
    """A new database in the private cluster chaos.sh started; returns its store URL."""
    admin = os.environ["TIMELINE_TEST_POSTGRES"]
    base = admin.split("?")[0]
    name = "chaos_%d_%d" % (os.getpid(), random.randrange(1 << 30))
    subprocess.run(["/usr/lib/postgresql/15/bin/psql", base, "-q", "-c", "CREATE DATABASE %s" % name], check=True)
    return base.rsplit("/", 1)[0] + "/" + name + "?sslmode=disable"


def store_reachable(server):
    conn = Conn(server.port, server.fingerprint)
    hello = json.loads(conn.greeting.split(" ", 3)[3])
    conn.close()
    return hello["store"]["reachable"]


def scenario_postgres(bin_dir, work, rounds):
    pg_ctl = os.environ["TIMELINE_PG_CTL"].split()
    url = postgres_database()
    binary = os.path.join(bin_dir, "timelined")
    nodes = [Server(binary, os.path.join(work, "pg-%s" % n), args=["--store", url]).start() for n in "ab"]
    a = nodes[0]
    # The first node created the timeline and its admin token, which is every node's (tokens live in the database).
    shutil.copy(os.path.join(a.data, "admin.token"), os.path.join(nodes[1].data, "admin.token"))
    conn = Conn(a.port, a.fingerprint).auth(a.admin_token)
    events = sample_events(conn)
    conn.close()
    token = a.add_token("writer", "annotator")

    def load(r, label):
        writers = []
        for i, node in enumerate(nodes + nodes):
            writers.append(Writer(node, token, events, "%s%d-p%d" % (label, r, i)))
        writers.append(Writer(nodes[r % 2], token, events, "%s%d-b" % (label, r), batch=random.choice([10, 50])))
        for w in writers:
            w.start()
        return writers

    def finish(writers):
        for w in writers:
            w.stop = True
            w.join(60)

    # A node killed under load: what it acknowledged is in the log, once; the other node kept serving.
    writers_all = []
    for r in range(1, rounds + 1):
        writers = load(r, "k")
        time.sleep(random.uniform(0.3, 1.2))
        victim = nodes[r % 2]
        victim.kill9()
        time.sleep(0.3)
        finish(writers)
        victim.start()
        writers_all += writers
        checked, acked = check_log(nodes[(r + 1) % 2], writers_all)
        say("  node %s SIGKILLed, round %d: log %d edits, all %d acknowledged present once, verify ok"
            % ("ab"[r % 2], r, checked, acked))

    # PostgreSQL restarted under load: requests are answered (STORE_UNAVAILABLE) while it is away, quickly; the
    # nodes reconnect by themselves; nothing acknowledged is lost.
    restarts = []
    for r in range(1, rounds + 1):
        writers = load(r, "r")
        time.sleep(random.uniform(0.3, 1.0))
        subprocess.run(pg_ctl + ["stop", "-m", "fast", "-w", "-s"], check=True)
        stopped = time.time()
        time.sleep(1.5)
        check(not any(store_reachable(n) for n in nodes), "a node's greeting says the stopped database is reachable")
        subprocess.run(pg_ctl + ["start", "-w", "-s", "-l", os.environ["TIMELINE_PG_DIR"] + "/postgres.log"],
                       check=True, stdout=subprocess.DEVNULL)
        back = time.time()
        deadline = back + 30
        while not all(store_reachable(n) for n in nodes):
            check(time.time() < deadline, "the nodes did not reconnect within 30 s of PostgreSQL's return")
            time.sleep(0.05)
        recovered = time.time() - back
        time.sleep(0.5)
        finish(writers)
        writers_all += writers
        refused = sum(1 for w in writers for _, o in w.requests if o and o[0] == "no")
        acked_now = sum(len(t) for w in writers for t, o in w.requests if o and o[0] == "ok")
        longest = max(w.longest_wait for w in writers)
        check(longest < 15, "a request waited %.1f s for its answer while PostgreSQL was away" % longest)
        checked, acked = check_log(a, writers_all, unknown_outcome=("STORE_UNAVAILABLE",))
        restarts.append({"down_s": round(back - stopped, 1), "recovered_s": round(recovered, 2),
                         "refused": refused, "acknowledged": acked_now, "longest_wait_s": round(longest, 2)})
        say("  PostgreSQL restarted, round %d: down %.1f s, nodes back %.2f s after it, %d refused meanwhile, "
            "%d acknowledged, slowest answer %.2f s; log %d edits, all %d acknowledged present once"
            % (r, back - stopped, recovered, refused, acked_now, longest, checked, acked))
    reports = [n.tool("verify", "--json").stdout for n in nodes]
    states = {json.loads(rep)["state"] for rep in reports}
    check(len(states) == 1, "the nodes' verify disagree: %s" % reports)
    for n in nodes:
        n.terminate()
    RESULTS["postgres"] = {"node_kills": rounds, "restarts": restarts}
    say("postgres: %d node SIGKILLs and %d PostgreSQL restarts under load; every acknowledged edit present once, "
        "versions contiguous, both nodes verify to the same state" % (rounds, rounds))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("scenarios", nargs="*",
                        default=["crash", "sigterm", "client", "replica", "diskfull", "flood", "watch", "postgres"])
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="timeline-chaos.")
    random.seed(int(os.environ.get("CHAOS_SEED", str(int(time.time())))))
    try:
        crashed = None
        for name in args.scenarios:
            t0 = time.time()
            say("== %s" % name)
            if name == "crash":
                crashed = scenario_crash(args.bin, work, 6 if args.quick else 25)
            elif name in ("client", "replica"):
                if crashed is None:
                    crashed = scenario_crash(args.bin, work, 2)
                if name == "client":
                    scenario_client(args.bin, work, crashed, 3 if args.quick else 10)
                else:
                    scenario_replica(args.bin, work, crashed, 3 if args.quick else 8)
            elif name == "sigterm":
                scenario_sigterm(args.bin, work, 3 if args.quick else 10)
            elif name == "diskfull":
                scenario_diskfull(args.bin, work)
            elif name == "flood":
                scenario_flood(args.bin, work, 1000)
            elif name == "watch":
                scenario_watch(args.bin, work)
            elif name == "postgres":
                scenario_postgres(args.bin, work, 2 if args.quick else 6)
            else:
                raise SystemExit("unknown scenario %s" % name)
            say("   (%.0f s)" % (time.time() - t0))
    finally:
        if args.json:
            with open(args.json, "w") as f:
                json.dump(RESULTS, f, indent=1)
        subprocess.run(["pkill", "-f", work], stderr=subprocess.DEVNULL)
        if os.environ.get("CHAOS_KEEP"):
            say("kept %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
