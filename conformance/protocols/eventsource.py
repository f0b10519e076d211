"""EventSource streams (JMAP push, RFC 8620 7.3): GET eventSourceUrl on a captured connection, events as they arrive.

``EventStream`` sends the request with h11 (``http.HttpReader``) and parses the body with the sans-IO
``sse.SseParser``; every event gets its time on the transcript clock, for latency figures and timelines.
Reads have deadlines; a stream that ends is data (``eof``), one that ends without TLS close_notify is recorded
in ``unclean_close`` for the checks that judge it.

Bounds: FLOOD_EVENTS events and comments, or FLOOD_OCTETS octets, on one stream are a ``Flood``; a line or an
event past the SSE parser's bounds too.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import urlsplit

import h11

from ..errors import ProtocolViolation, ServerClosed, ServerTimeout
from ..transcript import Transcript
from .connection import DEFAULT_TIMEOUT, CapturedConnection, FloodGuard, scrub_faults
from .http import HttpReader
from .sse import SseEvent, SseParser
from .tls import client_context

FLOOD_EVENTS = 10_000  # events and comments on one stream (a ping a second for ten minutes is 600)
FLOOD_OCTETS = 16 << 20


def split_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path?query) of an absolute URL."""
    u = urlsplit(url)
    port = u.port or (443 if u.scheme in ("https", "wss") else 80)
    target = u.path or "/"
    if u.query:
        target += "?" + u.query
    return u.scheme, u.hostname or "", port, target


def stream_connection(sock: socket.socket, scheme: str, host: str, ctx: ssl.SSLContext | None, *,
                      transcript: Transcript, label: str, leg: str = "direct",
                      timeout: float = DEFAULT_TIMEOUT) -> CapturedConnection:
    """A captured connection for a raw stream on ``sock`` (from ``path.open``), with TLS for https/wss.

    Ragged EOFs are reported, not hidden: a close-delimited body needs close_notify (RFC 9112 9.8)."""
    conn = CapturedConnection(sock, transcript=transcript, label=label, leg=leg, timeout=timeout)
    if scheme in ("https", "wss"):
        context = ctx or client_context()
        context.set_alpn_protocols(["http/1.1"])
        conn.start_tls(context, host, suppress_ragged_eofs=False)
    return conn


def wrap_tls(sock: socket.socket, scheme: str, host: str, ctx: ssl.SSLContext | None) -> socket.socket:
    """TLS on a raw socket for https/wss (``stream_connection`` without capture); a failed handshake is
    ``TlsHandshakeFailed``."""
    if scheme not in ("https", "wss"):
        return sock
    return stream_connection(sock, scheme, host, ctx, transcript=Transcript(), label="stream").detach()


@dataclass
class Timed:
    t: float  # transcript clock
    kind: str  # "event", "comment", "eof"
    event: SseEvent | None = None
    nbytes: int = 0


@scrub_faults
class EventStream:
    """GET eventSourceUrl over one HTTP/1.1 connection; events as they arrive, each with its time."""

    def __init__(self, sock: socket.socket | CapturedConnection, host: str, target: str, auth: str | None,
                 transcript: Transcript, *, label: str = "eventsource", leg: str = "direct",
                 headers: dict[str, str] | None = None) -> None:
        self.conn = sock if isinstance(sock, CapturedConnection) else CapturedConnection(
            sock, transcript=transcript, label=label, leg=leg)
        self.conn.guard = FloodGuard("events and comments", FLOOD_EVENTS, FLOOD_OCTETS)
        self.transcript = transcript
        self.label = self.conn.label
        self.reader = HttpReader(max_body=FLOOD_OCTETS)
        self.parser = SseParser()
        self.response: h11.Response | None = None
        self.ended = False
        self.eof_at: float | None = None
        self.unclean_close: str | None = None  # how the connection ended, when it was not an orderly close
        self.log: list[Timed] = []
        self._taken = 0  # log items ``next`` has handed out
        self.opened_at = transcript.now()
        hdrs = [("Host", host), ("Accept", "text/event-stream"), ("Cache-Control", "no-cache")]
        if auth:
            hdrs.append(("Authorization", auth))
        hdrs += list((headers or {}).items())
        self.conn.send(self.reader.request("GET", target, hdrs))

    @property
    def sock(self) -> socket.socket:
        return self.conn.sock

    def _pump(self, deadline: float) -> bool:
        """Read once (until ``deadline``) and take in what it completes; False when nothing came in time."""
        try:
            data = self.conn.recv(deadline, "on the EventSource stream")
        except ServerTimeout:
            return False
        except ServerClosed as e:
            data = b""
            if e.how != "eof":
                self.unclean_close = str(e)
        if data:
            self.conn.record_server(data)
        try:
            events = self.reader.feed(data)
        except ServerClosed as e:
            raise ServerClosed(f"{self.label}: {e}", how=e.how) from e
        except ProtocolViolation as e:
            raise type(e)(f"{self.label}: EventSource response: {e}") from e
        now = self.transcript.now()
        before = len(self.log)
        for ev in events:
            if isinstance(ev, h11.Response):
                self.response = ev
            elif isinstance(ev, h11.Data):
                try:
                    parsed = self.parser.feed(bytes(ev.data))
                except ProtocolViolation as e:
                    raise type(e)(f"{self.label}: {e}") from e
                for sse in parsed:
                    self.log.append(Timed(now, "comment" if sse.type == "comment" else "event", sse, len(sse.raw)))
            elif isinstance(ev, (h11.EndOfMessage, h11.ConnectionClosed)) and self.response is not None:
                self.ended = True
                self.eof_at = now
                self.log.append(Timed(now, "eof"))
        if not data and self.response is None:
            raise ServerClosed(f"{self.label}: connection closed before the EventSource response head", how="eof")
        if self.conn.guard is not None:
            self.conn.guard.count(len(self.log) - before, len(data), self.label, "on the EventSource stream")
        return True

    def read_head(self, timeout: float = 10.0) -> h11.Response:
        deadline = time.monotonic() + timeout
        while self.response is None:
            if not self._pump(deadline):
                raise ServerTimeout(f"{self.label}: no EventSource response head within {timeout:.1f} s")
        return self.response

    @property
    def status(self) -> int:
        return self.response.status_code if self.response else 0

    def header(self, name: str) -> str:
        if not self.response:
            return ""
        for k, v in self.response.headers:
            if k.decode().lower() == name.lower():
                return v.decode("latin-1")
        return ""

    def next(self, timeout: float) -> Timed | None:
        """The next event, comment or end of stream within ``timeout`` seconds; None when nothing came."""
        if self.response is None:
            self.read_head(timeout)
        deadline = time.monotonic() + timeout
        while True:
            if self._taken < len(self.log):
                self._taken += 1
                return self.log[self._taken - 1]
            if self.ended or not self._pump(deadline):
                return None

    def events(self, until: float) -> Iterator[Timed]:
        """Everything that arrives until ``until`` (a monotonic deadline) or the end of the stream."""
        while time.monotonic() < until:
            item = self.next(until - time.monotonic())
            if item is None:
                return
            yield item
            if item.kind == "eof":
                return

    def close(self) -> None:
        self.conn.close()
