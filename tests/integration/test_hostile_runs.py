"""Whole `lemonade run`s against hostile peers of every protocol (issue 20): the run ends, its memory stays under
300 MB, nothing passes, and no password (nor its base64, SASL PLAIN or Basic form) is in any file it wrote.

One run judges every peer at once: each hostile behaviour is a target of its own (IMAP, submission, JMAP over
HTTP, EventSource and WebSocket), so the run's memory figure covers all of them and the whole proof costs one run.
The IMAP, submission and HTTP peers are the scripted ones of ``tests/fakes/hostile.py``; the EventSource and
WebSocket peers answer the Session and the API as the scripted JMAP server does (a check gets as far as the push
channel) and misbehave only on the stream. The run is measured from outside (``tests.runscan.measured``: wall
time, the largest resident size of any of its processes) and its processes are checked gone afterwards.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import json
import re
import struct
import sys
import threading

import pytest

from tests.conftest import ROOT
from tests.fakes.hostile import BEHAVIOURS, PASSWORD, SSE_HEAD
from tests.fakes.jmap import FakeJmapServer
from tests.fakes.scripted import PeerConn, ScriptedPeer
from tests.runscan import measured, run_processes

pytestmark = pytest.mark.slow

MEMORY_BOUND_MB = 300
DEADLINE_S = 2.0  # --deadline: every stall costs a deadline per case (and a probe); the default 10 s only lengthens it
PASSWORDS = {"alice": PASSWORD, "bob": f"{PASSWORD}-b"}
# one or two checks per protocol that log in, then wait for something (the hostile peer is met where checks meet
# servers: greeting, login, a command, IDLE, EHLO, the Session, an event stream, a WebSocket)
SELECTION = ("store_capabilities or idle_continuation_and_done or submission_ehlo_keywords "
             "or ws_discovery_and_handshake or (ping_interval and direct)")


def _ws_then(then):
    """A JMAP server whose WebSocket, once upgraded, runs ``then(PeerConn)``."""
    def websocket(server: FakeJmapServer, conn, req) -> None:
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import AcceptConnection, Request

        ws = WSConnection(ConnectionType.SERVER)
        ws.receive_data(f"{req.method.decode()} {req.target.decode()} HTTP/1.1\r\n".encode()
                        + b"".join(k + b": " + v + b"\r\n" for k, v in req.headers) + b"\r\n")
        r = next(e for e in ws.events() if isinstance(e, Request))
        conn.sendall(ws.send(AcceptConnection(subprotocol="jmap" if "jmap" in r.subprotocols else None)))
        then(PeerConn(conn, server.hostile_stop))
    return websocket


def _es_then(then):
    """A JMAP server whose event stream, after its head, runs ``then(PeerConn)``."""
    def eventsource(server: FakeJmapServer, conn, h, target, headers) -> None:
        c = PeerConn(conn, server.hostile_stop)
        c.send(SSE_HEAD)
        then(c)
    return eventsource


_WS = {
    "frame-2^63": _ws_then(lambda c: (c.send(bytes([0x81, 127]) + struct.pack("!Q", (1 << 63) - 1)),
                                      c.flood(b"w" * 65536))),
    "endless-fragments": _ws_then(lambda c: (c.send(b"\x01\x01x"), c.flood(b"\x00\x01x" * 20000))),
    "garbage": _ws_then(lambda c: (c.send(b"\x83\x02ab"), c.stall())),
    "stall": _ws_then(lambda c: c.stall()),
    "rst": _ws_then(lambda c: c.reset()),
}
_ES = {
    "endless-without-event-boundary": _es_then(lambda c: c.flood(b"%x\r\n%s\r\n" % (8000, b"data: x\n" * 1000))),
    "line-without-lf": _es_then(lambda c: c.flood(b"%x\r\n%s\r\n" % (8000, b"d" * 8000))),
    "random-bytes": _es_then(lambda c: c.flood(bytes(range(256)) * 64)),
    "stall": _es_then(lambda c: c.stall()),
    "rst": _es_then(lambda c: c.reset()),
}
# JMAP push targets: (WebSocket behaviour, EventSource behaviour); the Session and the API answer as they should,
# so the checks reach the channel that misbehaves
PUSH_BEHAVIOURS = {
    "stall": ("stall", "stall"),
    "rst": ("rst", "rst"),
    "garbage": ("garbage", "random-bytes"),
    "endless-frame-and-event": ("frame-2^63", "endless-without-event-boundary"),
    "endless-fragments-and-line": ("endless-fragments", "line-without-lf"),
}


class HostileJmap(FakeJmapServer):
    """The scripted JMAP server (Session, API, uploads) whose WebSocket and event stream misbehave."""

    def __init__(self, behaviour: str) -> None:
        super().__init__("conformant")
        self.hostile_stop = threading.Event()
        ws, es = PUSH_BEHAVIOURS[behaviour]
        self.ws, self.es = _WS[ws], _ES[es]

    def __exit__(self, *exc) -> None:
        self.hostile_stop.set()
        super().__exit__(*exc)

    def _websocket(self, conn, req) -> None:
        self.ws(self, conn, req)

    def _eventsource(self, conn, h, target, headers) -> None:
        self.es(self, conn, h, target, headers)


def target_name(protocol: str, behaviour: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", f"{protocol}-{behaviour}")


def write_target(directory, name: str, endpoints: dict[str, str]):
    lines = [f'name = "{name}"', "[endpoints]", *(f'{k} = "{v}"' for k, v in endpoints.items()),
             "[tls]", "verify = false"]
    for user, pw in PASSWORDS.items():
        lines += ["[[accounts]]", f'username = "{user}"', f'password = "{pw}"']
    path = directory / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def password_forms() -> list[str]:
    forms = []
    for user, pw in PASSWORDS.items():
        forms += [pw, base64.b64encode(pw.encode()).decode(), base64.b64encode(f"\0{user}\0{pw}".encode()).decode(),
                  base64.b64encode(f"{user}\0{user}\0{pw}".encode()).decode(),
                  base64.b64encode(f"{user}:{pw}".encode()).decode()]
    return forms


def hostile_run(d):
    """One run against every hostile peer; the peers live until it has ended."""
    targets = {}
    with contextlib.ExitStack() as peers:
        for protocol in ("imap", "smtp", "http"):
            endpoint, scheme = {"imap": ("imap", "imap"), "smtp": ("submission", "submission"),
                                "http": ("jmap", "http")}[protocol]
            for behaviour, script in BEHAVIOURS[protocol].items():
                peer = peers.enter_context(ScriptedPeer(script))
                name = target_name(protocol, behaviour)
                targets[name] = write_target(d, name, {endpoint: f"{scheme}://127.0.0.1:{peer.port}"})
        for behaviour in PUSH_BEHAVIOURS:
            server = peers.enter_context(HostileJmap(behaviour))
            name = target_name("jmap-push", behaviour)
            targets[name] = write_target(d, name, {"jmap": f"http://127.0.0.1:{server.port}"})
        out = d / "run"
        cmd = [sys.executable, "-m", "conformance.cli", "run", *(a for t in targets.values() for a in ("--target", str(t))),
               "-k", SELECTION, "--deadline", str(DEADLINE_S), "--output", str(out), "-n", "2"]
        m = measured(cmd, d, cwd=ROOT, timeout=600)
        left = run_processes(out)
    doc = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    return m, out, doc, targets, left


def test_every_hostile_peer_ends_in_one_bounded_run_with_no_pass_and_no_password_in_any_output(tmp_path, capsys):
    m, out, doc, targets, left = hostile_run(tmp_path)
    assert m.rc in (1, 2), f"exit {m.rc}: {m.stdout[-2000:]}{m.stderr[-2000:]}"
    assert "Traceback" not in m.stderr, m.stderr[-3000:]
    assert doc, f"no results.json: {m.stderr[-3000:]}"
    results = doc["results"]
    with capsys.disabled():
        print(f"\nhostile run: {len(targets)} hostile peers, {len(results)} cases in {m.wall_s:.1f} s, largest process "
              f"{m.max_rss_mb:.0f} MB, exit {m.rc}, verdicts "
              f"{dict(collections.Counter(r['verdict'] for r in results))}")
        for r in sorted(results, key=lambda r: r["target"]):
            if r["verdict"] != "not-applicable":
                print(f"  {r['target']:<40} {r['check'].rsplit('/', 1)[-1]:<28} {r['verdict']:<8} "
                      f"{r['duration_s']:5.1f} s  {r['message'][:110]}")
    by_target = collections.defaultdict(list)
    for r in results:
        by_target[r["target"]].append(r)
    assert set(by_target) == set(targets), set(targets) ^ set(by_target)
    passed = [(r["target"], r["check"], r["message"]) for r in results if r["verdict"] in ("pass", "xpass")]
    assert not passed, passed
    for name, rs in by_target.items():
        judged = [r for r in rs if r["verdict"] != "not-applicable"]
        assert judged, f"{name}: no case met the peer: {[(r['check'], r['message']) for r in rs]}"
    assert m.max_rss_mb < MEMORY_BOUND_MB, f"the run's largest process reached {m.max_rss_mb:.0f} MB"
    assert not left, f"processes of the run still alive after it ended: {left}"

    # no password, nor an encoding of one, in any file the run wrote
    files = [f for f in out.rglob("*") if f.is_file()]
    assert {"results.json", "junit.xml", "index.html"} <= {f.name for f in files}
    forms = password_forms()
    found = [(f.relative_to(out).as_posix(), form) for f in files for form in forms if form.encode() in f.read_bytes()]
    assert not found, found

    # the server's fault is named: a flood is a fail, a stall after the greeting a fail, never a harness error
    judged = collections.defaultdict(list)
    for r in results:
        if r["verdict"] != "not-applicable":
            judged[r["target"]].append(r)
    for target in ("imap-untagged-flood", "imap-capability-50MB", "smtp-endless-ehlo", "http-endless-chunked",
                   "imap-stall-login", "smtp-stall-after-ehlo"):
        rs = judged[target]
        assert rs and any(r["verdict"] == "fail" for r in rs), [(r["check"], r["verdict"], r["message"]) for r in rs]
