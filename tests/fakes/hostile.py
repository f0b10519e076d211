"""Hostile peers for every protocol the suite speaks (issue 20), and the client flow each one is met with.

``BEHAVIOURS[protocol][name]`` is a ``ScriptedPeer`` script; ``drive(protocol, port)`` runs the suite's own client
against it the way a check would (greeting, login, a command, a wait) and returns the exception it ended with.
``python -m tests.fakes.hostile PROTOCOL PORT`` runs one flow in a process of its own and prints one JSON line
(outcome, seconds, maximum resident memory): the memory test and ``bench/hostile_peers.py`` use it.
"""

from __future__ import annotations

import json
import resource
import socket
import struct
import sys
import time
from pathlib import Path

from tests.fakes.scripted import PeerConn

PASSWORD = "hostile-peer-pw"


def _greet(greeting: bytes, then):
    def script(c: PeerConn) -> None:
        c.send(greeting)
        then(c)
    return script


def _after_line(greeting: bytes, then, lines: int = 1):
    def script(c: PeerConn) -> None:
        c.send(greeting)
        for _ in range(lines):
            if c.recv_until() is None:
                return
        then(c)
    return script


def after_head(then):
    """A peer that reads a request head, then runs ``then``."""
    def script(c: PeerConn) -> None:
        if c.recv_until(b"\r\n\r\n") is not None:
            then(c)
    return script


IMAP_OK = b"* OK hostile\r\n"


def _imap_until(verb: bytes, then):
    """Answers every command OK (CAPABILITY with IDLE) until ``verb``, then runs ``then``."""
    def script(c: PeerConn) -> None:
        c.send(b"* OK [CAPABILITY IMAP4rev1 IDLE LITERAL+ AUTH=PLAIN] hostile\r\n")
        while (line := c.recv_until()) is not None:
            tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
            if rest.split(b" ")[0].upper() == verb:
                return then(c)
            if rest.upper().startswith(b"CAPABILITY"):
                c.send(b"* CAPABILITY IMAP4rev1 IDLE LITERAL+ AUTH=PLAIN\r\n")
            c.send(tag + b" OK done\r\n")
    return script
SMTP_OK = b"220 hostile ESMTP\r\n"
SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def _ws_upgraded(then):
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request

    def script(c: PeerConn) -> None:
        head = c.recv_until(b"\r\n\r\n")
        if head is None:
            return
        ws = WSConnection(ConnectionType.SERVER)
        ws.receive_data(head)
        req = next(e for e in ws.events() if isinstance(e, Request))
        c.send(ws.send(AcceptConnection(subprotocol=req.subprotocols[0] if req.subprotocols else None)))
        then(c)
    return script


BEHAVIOURS = {
    "imap": {
        "stall-greeting": lambda c: c.stall(),
        "stall-login": _after_line(IMAP_OK, lambda c: c.stall()),
        "line-without-crlf": _greet(IMAP_OK, lambda c: c.flood(b"x" * 65536)),
        "byte-every-0.2s": _after_line(IMAP_OK, lambda c: c.trickle(b"* OK slow\r\n", 0.2)),
        "random-bytes": lambda c: c.flood(bytes(range(256)) * 64),
        "literal-10e11": _after_line(IMAP_OK, lambda c: (c.send(b"* 1 FETCH (BODY[] {100000000000}\r\n"),
                                                         c.flood(b"y" * 65536))),
        "capability-50MB": lambda c: (c.send(b"* OK [CAPABILITY IMAP4rev1 " + b"X" * (50 << 20) + b"]\r\n"), c.stall()),
        "rst": lambda c: c.reset(),
        "untagged-flood": _after_line(IMAP_OK, lambda c: c.flood(b"* OK flood flood flood\r\n" * 2000)),
        "idle-without-continuation": _imap_until(b"IDLE", lambda c: (c.send(b"* 1 EXISTS\r\n"), c.stall())),
    },
    "smtp": {
        "stall-after-ehlo": _after_line(SMTP_OK, lambda c: c.stall()),
        "endless-ehlo": _after_line(SMTP_OK, lambda c: c.flood(b"250-FLOOD keyword keyword\r\n" * 2000)),
        "random-bytes": lambda c: c.flood(bytes(range(256)) * 64),
        "rst": _after_line(SMTP_OK, lambda c: c.reset()),
    },
    "http": {
        "stall": after_head(lambda c: c.stall()),
        "endless-chunked": after_head(lambda c: (c.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
                                                  c.flood(b"ffff\r\n" + b"j" * 0xFFFF + b"\r\n"))),
        "huge-headers": after_head(lambda c: c.flood(b"HTTP/1.1 200 OK\r\n" + b"X-A: " + b"h" * 65000 + b"\r\n")),
        "random-bytes": after_head(lambda c: c.flood(bytes(range(256)) * 64)),
        "rst": after_head(lambda c: c.reset()),
    },
    "eventsource": {
        "endless-without-event-boundary": after_head(
            lambda c: (c.send(SSE_HEAD), c.flood(b"%x\r\n%s\r\n" % (8000, b"data: x\n" * 1000)))),
        "line-without-lf": after_head(lambda c: (c.send(SSE_HEAD), c.flood(b"%x\r\n%s\r\n" % (8000, b"d" * 8000)))),
    },
    "websocket": {
        "frame-2^63": _ws_upgraded(lambda c: (c.send(bytes([0x81, 127]) + struct.pack("!Q", (1 << 63) - 1)),
                                              c.flood(b"w" * 65536))),
        "endless-fragments": _ws_upgraded(lambda c: (c.send(b"\x01\x01x"), c.flood(b"\x00\x01x" * 20000))),
        "garbage": _ws_upgraded(lambda c: (c.send(b"\x83\x02ab"), c.stall())),
    },
}


def drive(protocol: str, port: int, timeout: float = 5.0) -> BaseException | None:
    """The suite's client against the peer on ``port``; the exception the flow ended with (None: it completed)."""
    from conformance.transcript import Transcript

    transcript = Transcript(secrets={PASSWORD})
    try:
        if protocol == "imap":
            from conformance.protocols.imap import ImapConnection

            conn = ImapConnection("127.0.0.1", port, transcript=transcript, timeout=timeout)
            conn.read_greeting()
            conn.login("alice", PASSWORD)
            conn.command("SELECT INBOX")
            conn.done(conn.idle())
        elif protocol == "smtp":
            from conformance.protocols.smtp import CapturingSMTP

            smtp = CapturingSMTP("127.0.0.1", port, transcript=transcript, timeout=timeout)
            smtp.ehlo()
            smtp.login("alice", PASSWORD)
        elif protocol == "http":
            from conformance.protocols.jmap import JmapClient

            JmapClient(f"http://127.0.0.1:{port}", "alice", PASSWORD, transcript, timeout=timeout).discover()
        elif protocol == "eventsource":
            from conformance.protocols.eventsource import EventStream

            es = EventStream(socket.create_connection(("127.0.0.1", port)), "x", "/es", None, transcript)
            es.read_head(timeout)
            for _ in es.events(time.monotonic() + timeout):
                pass
        elif protocol == "websocket":
            from conformance.protocols.websocket import JmapWebSocket

            ws = JmapWebSocket(socket.create_connection(("127.0.0.1", port)), "x", "/ws", None, transcript)
            ws.handshake(timeout)
            ws.recv_json(timeout, lambda o: False)
        else:
            raise ValueError(f"unknown protocol {protocol}")
    except Exception as e:  # noqa: BLE001 - the outcome is what the caller judges
        e.transcript_text = transcript.text()  # type: ignore[attr-defined]
        return e
    return None


def peak_rss_kib() -> int:
    """This process's own peak resident memory (VmHWM; ru_maxrss would count the parent's from before exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    protocol, port = sys.argv[1], int(sys.argv[2])
    t0 = time.monotonic()
    outcome = drive(protocol, port)
    from conformance.errors import ConformanceFailure, HarnessError

    kind = ("fail" if isinstance(outcome, ConformanceFailure) else "error" if isinstance(outcome, HarnessError)
            else "pass" if outcome is None else "crash")
    text = getattr(outcome, "transcript_text", "")
    print(json.dumps({
        "verdict": kind, "exception": type(outcome).__name__ if outcome else "", "message": str(outcome)[:200],
        "seconds": round(time.monotonic() - t0, 2),
        "max_rss_mb": round(peak_rss_kib() / 1024, 1),
        "password_leaked": PASSWORD in str(outcome) or PASSWORD in text,
    }))


def target_file(directory: Path, imap_port: int, submission_port: int | None = None) -> Path:
    """A target file naming the hostile peers (for a whole ``lemonade run`` against them)."""
    lines = ['name = "hostile"', "[endpoints]", f'imap = "imap://127.0.0.1:{imap_port}"']
    if submission_port:
        lines.append(f'submission = "submission://127.0.0.1:{submission_port}"')
    lines += ["[tls]", "verify = false", "[[accounts]]", 'username = "alice"', f'password = "{PASSWORD}"',
              "[[accounts]]", 'username = "bob"', f'password = "{PASSWORD}-b"']
    path = Path(directory) / "hostile.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


if __name__ == "__main__":
    main()
