"""A tiny IMAP client of the suite's tests that misbehaves on purpose, one way per mode (the adapter folder's name).

Each mode breaks exactly one client rule, to prove that the client check judging that rule can fail:
  fake-skip-last     fetch-once delivers every message but the last          (client.fetch.complete)
  fake-deaf          push: one IDLE, blocking reads without a timeout, never re-IDLEs or reconnects
                                                               (client.push.delivery, silent-drop-recovery)
  fake-duplicates    sync keeps no state: every play delivers everything again (client.sync.no-loss-no-duplicate)
  fake-redownload    sync downloads the whole mailbox each play, delivers only new ones (client.sync.resync-cost)
  fake-opportunistic STARTTLS only when advertised, else LOGIN in cleartext    (client.tls.no-cleartext-credentials)
  fake-trust-all     trusts any certificate and sends Basic credentials through an HTTP proxy
                                                               (client.tls.verify-before-credentials)
Standard library only; run by the system python3 as the client user.
"""

import json
import os
import re
import socket
import ssl
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "..", "clients", "_lib"))
from lemonade_adapter import deliver, env, log, not_supported  # noqa: E402

MODE = sys.argv[1]
e = env()


class Imap:
    def __init__(self, starttls: str = "required") -> None:
        self.sock = socket.create_connection((e.host, e.port), timeout=None if MODE == "fake-deaf" else 30)
        ctx = ssl.create_default_context(cafile=e.ca_file)
        if e.scheme == "imaps":
            self.sock = ctx.wrap_socket(self.sock, server_hostname=e.host)
        self.buf = b""
        self.n = 0
        self.line()  # greeting
        caps = " ".join(self.cmd("CAPABILITY")[0]).upper()
        if e.scheme == "imap":
            if "STARTTLS" in caps:
                self.cmd("STARTTLS")
                self.sock = ctx.wrap_socket(self.sock, server_hostname=e.host)
            elif starttls == "required":
                log("STARTTLS not offered: giving up")
                sys.exit(3)
        pw = e.password.replace("\\", "\\\\").replace('"', '\\"')
        untagged, tagged = self.cmd(f'LOGIN "{e.user}" "{pw}"')
        if " OK" not in tagged:
            log(f"login refused: {tagged}")
            sys.exit(4)

    def recv(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def line(self) -> bytes:
        """One response line with its literals inlined."""
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                self.recv()
            ln, self.buf = self.buf.split(b"\r\n", 1)
            out += ln
            m = re.search(rb"\{(\d+)\}$", ln)
            if not m:
                return out
            n = int(m.group(1))
            while len(self.buf) < n:
                self.recv()
            out += b"\r\n" + self.buf[:n]
            self.buf = self.buf[n:]

    def cmd(self, text: str):
        self.n += 1
        tag = f"F{self.n}"
        self.sock.sendall(f"{tag} {text}\r\n".encode())
        untagged = []
        while True:
            ln = self.line()
            if ln.startswith(tag.encode() + b" "):
                return [u.decode("latin-1") for u in untagged], ln.decode("latin-1")
            untagged.append(ln)

    def messages(self, uids: str = "1:*") -> dict[int, bytes]:
        self.cmd(f'SELECT "{e.mailbox}"')
        untagged, _ = self.cmd(f"UID FETCH {uids} (UID BODY.PEEK[])")
        out = {}
        for u in untagged:
            m = re.match(r"\* \d+ FETCH \(.*?UID (\d+)", u.split("\r\n", 1)[0])
            if m and "\r\n" in u:
                body = u.split("\r\n", 1)[1].encode("latin-1")
                out[int(m.group(1))] = body[: body.rfind(b")")] if body.endswith(b")") else body
        return out


def state() -> dict:
    try:
        with open(e.path("fake-state.json")) as f:
            return json.load(f)
    except OSError:
        return {"delivered": []}


def save(st: dict) -> None:
    with open(e.path("fake-state.json"), "w") as f:
        json.dump(st, f)


if MODE == "fake-trust-all":
    if not e.proxy or e.case != "fetch-once":
        not_supported("only fetch-once through an HTTP proxy")
    import base64
    import http.client

    conn = http.client.HTTPSConnection(e.proxy.split("//", 1)[1].split(":")[0], int(e.proxy.rsplit(":", 1)[1]),
                                       context=ssl._create_unverified_context(), timeout=20)
    conn.set_tunnel(e.host, e.port)
    auth = base64.b64encode(f"{e.user}:{e.password}".encode()).decode()
    try:
        conn.request("GET", "/.well-known/jmap", headers={"Authorization": f"Basic {auth}"})
        log(f"answer {conn.getresponse().status}")
    except (OSError, http.client.HTTPException) as ex:
        log(f"request failed: {ex}")
    sys.exit(1)
if e.proxy:
    not_supported("no HTTP proxy support")
if e.scheme not in ("imap", "imaps"):
    not_supported(f"IMAP only, not {e.scheme}")

if MODE == "fake-skip-last":
    if e.case != "fetch-once":
        not_supported(e.case)
    msgs = Imap().messages()
    for uid in sorted(msgs)[:-1]:
        deliver(e.output, msgs[uid])
elif MODE == "fake-opportunistic":
    if e.case != "fetch-once":
        not_supported(e.case)
    for _uid, body in sorted(Imap(starttls="opportunistic").messages().items()):
        deliver(e.output, body)
elif MODE == "fake-duplicates":
    if e.case != "sync":
        not_supported(e.case)
    for _uid, body in sorted(Imap().messages().items()):
        deliver(e.output, body)
elif MODE == "fake-redownload":
    if e.case != "sync":
        not_supported(e.case)
    st = state()
    for uid, body in sorted(Imap().messages().items()):
        if uid not in st["delivered"]:
            deliver(e.output, body)
            st["delivered"].append(uid)
            save(st)
elif MODE == "fake-deaf":
    if e.case != "push":
        not_supported(e.case)
    imap = Imap()
    seen = set()
    while True:
        for uid, body in sorted(imap.messages().items()):
            if uid not in seen:
                deliver(e.output, body)
                seen.add(uid)
        imap.n += 1
        imap.sock.sendall(f"F{imap.n} IDLE\r\n".encode())
        while True:  # no timeout, no DONE after 29 min, no reconnect: waits for EXISTS forever
            ln = imap.line()
            if re.match(rb"\* \d+ EXISTS", ln):
                break
        imap.sock.sendall(b"DONE\r\n")
        while not imap.line().startswith(f"F{imap.n} ".encode()):
            pass
else:
    not_supported(f"unknown fake mode {MODE}")
