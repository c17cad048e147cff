"""A small outside peer for timeline/1 (Protocol/PROTOCOL.md), written from the spec, for the chaos scripts.

It speaks TLS with the system's OpenSSL through Python's ssl module and pins the server's certificate by its
SHA-256 fingerprint, as `timeline init --fingerprint` does. It is deliberately independent of our Swift code.
"""

import hashlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time


class PeerError(Exception):
    pass


class Server:
    """A real `timelined serve` process on a port the OS chooses, with its data folder."""

    def __init__(self, binary, data, args=(), env=None):
        self.binary = binary
        self.data = data
        self.args = list(args)
        self.env = env
        self.proc = None
        self.port = None
        self.fingerprint = None

    def start(self, timeout=60):
        cmd = [self.binary, "serve", "--data", self.data, "--listen", "127.0.0.1:0", "--log-level", "warning"]
        self.proc = subprocess.Popen(cmd + self.args, stdout=subprocess.PIPE, stderr=open(self.data + ".log", "ab"),
                                     env=self.env, preexec_fn=os.setsid)
        deadline = time.time() + timeout
        while time.time() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                raise PeerError("timelined exited during start-up (see %s.log)" % self.data)
            if line.startswith("certificate SHA-256 fingerprint "):
                self.fingerprint = line.split()[-1]
            if line.startswith("listening on "):
                self.port = int(line.strip().rsplit(":", 1)[1])
                return self
        raise PeerError("timelined did not start in %d s" % timeout)

    @property
    def admin_token(self):
        with open(os.path.join(self.data, "admin.token")) as f:
            return f.read().strip()

    def tool(self, *args, check=True):
        r = subprocess.run([self.binary, *args, "--data", self.data], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise PeerError("timelined %s failed: %s" % (" ".join(args), r.stderr.strip()))
        return r

    def add_token(self, name, role):
        return self.tool("token", "add", name, "--role", role).stdout.strip()

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            self.proc.wait()

    def terminate(self, timeout=60):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def rss_kib(self):
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


class Conn:
    """One TLS connection: line in, line out, with tags."""

    def __init__(self, port, fingerprint, timeout=30, greeting=True):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # pinned below, by fingerprint
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = ctx.wrap_socket(raw)
        der = self.sock.getpeercert(binary_form=True)
        if hashlib.sha256(der).hexdigest() != fingerprint:
            self.sock.close()
            raise PeerError("server certificate does not match the pinned fingerprint")
        self.buf = b""
        self.greeting = self.line() if greeting else None

    def send(self, text):
        self.sock.sendall(text.encode() if isinstance(text, str) else text)

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise PeerError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def reply(self, tag):
        """Lines until the tagged completion; returns (data lines, completion line)."""
        data = []
        while True:
            line = self.line()
            if line.startswith(tag + " "):
                return data, line
            if line.startswith("* BYE"):
                raise PeerError(line)
            data.append(line)

    def request(self, tag, rest):
        self.send("%s %s\n" % (tag, rest))
        return self.reply(tag)

    def auth(self, token):
        _, done = self.request("a", "AUTH " + token)
        if not done.startswith("a OK"):
            raise PeerError(done)
        return self

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def ok_json(line):
    """The JSON after `TAG OK`, or None."""
    m = re.match(r"^\S+ OK ?(.*)$", line)
    if not m:
        return None
    return json.loads(m.group(1)) if m.group(1) else {}


def pull_all(conn, since=0):
    """Every edit after `since`, paging with PULL."""
    edits = []
    n = 0
    while True:
        n += 1
        data, done = conn.request("p%d" % n, "PULL %d 10000" % since)
        reply = ok_json(done)
        if reply is None:
            raise PeerError(done)
        edits += [json.loads(d[len("* EDIT "):]) for d in data if d.startswith("* EDIT ")]
        since = reply["last"]
        if not reply["more"]:
            return edits, reply["version"]
