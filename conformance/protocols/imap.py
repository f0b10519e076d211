"""IMAP client on the captured connection: raw lines for exact checks, with deadlines, capture and bounds.

``ImapConnection`` holds one ``CapturedConnection`` (socket, deadlines, transcript, the fail-vs-error rule) and
a sans-IO ``ResponseReader``. A stalling server raises ``ServerTimeout``, a reset or early close
``ServerClosed``, garbage ``ProtocolViolation`` (all fail, with the transcript); a refused connect raises
``TargetUnreachable`` (or ``HarnessError`` when the address is the suite's own intermediary).

Bounds: FLOOD_RESPONSES responses or FLOOD_OCTETS octets from the server while the client waits without
sending (for one tagged response, the IDLE continuation, or over polls) are a ``Flood``; COMPRESS output is
capped at INFLATE_PER_READ octets per read; one response at ``imapwire.MAX_RESPONSE``.
"""

from __future__ import annotations

import socket
import ssl
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from ..errors import Flood, ProtocolViolation, ServerTimeout
from ..transcript import Transcript
from .connection import DEFAULT_TIMEOUT, CapturedConnection, FloodGuard, scrub_faults
from .imapwire import Response, ResponseReader, parse_capabilities, quote
from .tls import insecure_context

FLOOD_RESPONSES = 50_000  # responses while the client waits without sending
FLOOD_OCTETS = 48 << 20  # octets while the client waits without sending
INFLATE_PER_READ = 16 << 20  # octets one read may inflate to under COMPRESS=DEFLATE


@dataclass
class CommandResult:
    tag: str
    command: str
    tagged: Response
    untagged: list[Response] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def status(self) -> str:
        return self.tagged.status or "?"

    @property
    def ok(self) -> bool:
        return self.status == "OK"

    @property
    def code(self) -> str | None:
        return self.tagged.code

    def lines(self) -> list[str]:
        return [r.first_line for r in self.untagged] + [self.tagged.first_line]

    def find(self, prefix: str) -> list[Response]:
        """Untagged responses whose first line starts with '* ' + prefix (case-insensitive)."""
        p = ("* " + prefix).upper()
        return [r for r in self.untagged if r.first_line.upper().startswith(p)]

    def __str__(self) -> str:
        return "\n".join(self.lines())


class Deflate:
    """COMPRESS=DEFLATE (RFC 4978) as a codec for the captured connection, with a bound on what one read inflates."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        self._inflate = zlib.decompressobj(-15)

    def encode(self, data: bytes) -> bytes:
        return self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def decode(self, data: bytes) -> bytes:
        out = self._inflate.decompress(data, INFLATE_PER_READ)
        if self._inflate.unconsumed_tail:
            raise Flood(f"flood: {len(data)} compressed octets inflate past {INFLATE_PER_READ} octets")
        return out


@scrub_faults
class ImapConnection:
    """One IMAP connection. Use as a context manager; ``close()`` is idempotent."""

    _counter = 0

    def __init__(
        self,
        host: str,
        port: int,
        *,
        transcript: Transcript,
        tls: str = "none",  # none | implicit
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        label: str | None = None,
        leg: str = "direct",
        server_hostname: str = "localhost",
        source_address: tuple[str, int] | None = None,
        via: str | None = None,
    ) -> None:
        """Connect to ``host:port``; ``via`` names the suite's own intermediary when the address is its listener."""
        label = self._label(label)
        conn = CapturedConnection.connect(host, port, transcript=transcript, label=label, leg=leg, timeout=timeout,
                                          what=f"IMAP at {host}:{port}", via=via, source_address=source_address,
                                          note=" (TLS)" if tls == "implicit" else "")
        self._start(conn, host, port, ssl_context, server_hostname, implicit_tls=tls == "implicit")

    @classmethod
    def over(cls, sock: socket.socket, *, transcript: Transcript, label: str | None = None, leg: str = "direct",
             timeout: float = DEFAULT_TIMEOUT, implicit_tls: bool = False, ssl_context: ssl.SSLContext | None = None,
             server_hostname: str = "localhost") -> "ImapConnection":
        """An ImapConnection on a socket opened elsewhere (a CONNECT tunnel from ``path.open``)."""
        self = cls.__new__(cls)
        label = cls._label(label)
        conn = CapturedConnection(sock, transcript=transcript, label=label, leg=leg, timeout=timeout)
        conn.note("connected through the path" + (" (TLS)" if implicit_tls else ""))
        try:
            host, port = sock.getpeername()[:2]
        except OSError:
            host, port = "?", 0
        self._start(conn, host, port, ssl_context, server_hostname, implicit_tls=implicit_tls)
        return self

    @classmethod
    def _label(cls, label: str | None) -> str:
        cls._counter += 1
        return label or f"imap#{cls._counter}"

    def _start(self, conn: CapturedConnection, host: str, port: int, ssl_context: ssl.SSLContext | None,
               server_hostname: str, *, implicit_tls: bool) -> None:
        self.conn = conn
        conn.guard = FloodGuard("responses", FLOOD_RESPONSES, FLOOD_OCTETS)
        self.host, self.port = host, port
        self.server_hostname = server_hostname
        self.ssl_context = ssl_context
        self.reader = ResponseReader()
        self.queue: deque[Response] = deque()
        self.tagn = 0
        self.greeting: Response | None = None
        self.username: str | None = None  # the account LOGIN succeeded for (whose mailboxes this connection sees)
        if implicit_tls:
            self.start_tls()

    # -- what the connection holds ---------------------------------------------------------------
    label = property(lambda self: self.conn.label)
    transcript = property(lambda self: self.conn.transcript)
    redactor = property(lambda self: self.conn.redactor)
    leg = property(lambda self: self.conn.leg)
    timeout = property(lambda self: self.conn.timeout)
    sock = property(lambda self: self.conn.sock)
    closed = property(lambda self: self.conn.closed)
    tls_version = property(lambda self: self.conn.tls_version)
    bytes_sent = property(lambda self: self.conn.bytes_sent, doc="octets on the wire (compressed if COMPRESS is on)")
    bytes_received = property(lambda self: self.conn.bytes_received)

    # -- context manager -------------------------------------------------------------------------
    def __enter__(self) -> "ImapConnection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection and let go of what was received and not read (the case may keep this object)."""
        self.conn.close()
        self.queue.clear()
        self.reader = ResponseReader()

    # -- wire ----------------------------------------------------------------------------------
    def start_tls(self, context: ssl.SSLContext | None = None) -> str:
        """The TLS handshake now (implicit TLS, or after a STARTTLS the caller sent itself); the version.

        A failed, refused or stalled handshake raises ``TlsHandshakeFailed`` (fail)."""
        return self.conn.start_tls(context or self.ssl_context or insecure_context(), self.server_hostname)

    def send_raw(self, data: bytes, *, note: str | None = None) -> None:
        """Send exact octets (after compression if active). Recorded as one C entry (``note`` instead if given)."""
        self.conn.send(data, text=note)

    def _recv(self, deadline: float, waiting_for: str, since: float | None = None) -> None:
        try:
            data = self.conn.recv(deadline, waiting_for, pending=self.reader.pending, since=since)
        except ServerTimeout:
            if self.reader.pending:
                self.conn.note(f"incomplete response pending when the deadline passed: {self.reader.pending} octets")
            raise
        try:
            responses = self.reader.feed(data)
        except ProtocolViolation as e:
            self.conn.record_server(data)  # the evidence: what did not parse (as much as the transcript shows)
            raise type(e)(f"{self.label}: {e} {waiting_for}") from e
        for resp in responses:
            self.conn.record_server(resp.raw)
            self.queue.append(resp)
        if self.conn.guard is not None:
            try:
                self.conn.guard.count(len(responses), len(data), self.label, waiting_for)
            except Flood:
                self.queue.clear()  # the case fails on the flood; what it brought is not kept
                raise

    def read_response(self, timeout: float | None = None, waiting_for: str = "") -> Response:
        """The next response; raises ServerTimeout after ``timeout`` seconds."""
        start = time.monotonic()
        return self._next(start + (self.timeout if timeout is None else timeout),
                          waiting_for or "for the next response", start)

    def poll(self, timeout: float) -> Response | None:
        """The next response if one arrives within ``timeout`` seconds, else None (no failure)."""
        try:
            return self.read_response(timeout, "while polling")
        except ServerTimeout:
            return None

    def read_greeting(self, timeout: float | None = None) -> Response:
        self.greeting = self.read_response(timeout, "as greeting")
        if not self.greeting.is_untagged or self.greeting.status not in ("OK", "PREAUTH", "BYE"):
            raise ProtocolViolation(f"{self.label}: greeting is not '* OK/PREAUTH/BYE': {self.greeting.first_line!r}")
        return self.greeting

    def next_tag(self) -> str:
        self.tagn += 1
        return f"L{self.tagn:03d}"

    def _quoted(self, tag: str, text: str, limit: int = 80) -> str:
        """'to 'L003 LOGIN "alice" <redacted>'': the command as a failure message may show it."""
        shown = self.conn.quote(f"{tag} {text}")
        return shown if len(shown) <= limit else shown[:limit] + "..."

    def command(self, text: str, *, timeout: float | None = None, literal: bytes | None = None,
                on_untagged: Callable[[Response], None] | None = None) -> CommandResult:
        """Send ``tag text`` and read until the tagged response. A ``{n}`` literal is sent after '+'.

        Use ``literal`` for a synchronizing literal: text must end with '{n}' (it is added if absent).
        """
        tag = self.next_tag()
        start = time.monotonic()
        deadline = start + (self.timeout if timeout is None else timeout)
        untagged: list[Response] = []
        if literal is not None:
            if not text.rstrip().endswith("}"):
                text = f"{text} {{{len(literal)}}}"
            self.send_raw(f"{tag} {text}\r\n".encode())
            while True:
                resp = self._next(deadline, f"to '{self._quoted(tag, text.split(' ')[0])}' (awaiting continuation)",
                                  start)
                if resp.is_continuation:
                    break
                if resp.tag == tag:
                    return CommandResult(tag, text, resp, untagged, time.monotonic() - start)
                untagged.append(resp)
            self.send_raw(literal + b"\r\n")
        else:
            self.send_raw(f"{tag} {text}\r\n".encode())
        waiting_for = f"to '{self._quoted(tag, text)}'"
        try:
            while True:
                resp = self._next(deadline, waiting_for, start)
                if resp.tag == tag:
                    return CommandResult(tag, text, resp, untagged, time.monotonic() - start)
                if on_untagged:
                    on_untagged(resp)
                untagged.append(resp)
        except BaseException:
            untagged.clear()  # a failure's traceback keeps this frame: not what a flood filled it with
            raise

    def _next(self, deadline: float, waiting_for: str, since: float | None = None) -> Response:
        """The next response: a queued one, or read from the socket until ``deadline`` (the wait began ``since``)."""
        while not self.queue:
            self._recv(deadline, waiting_for, since)
        return self.queue.popleft()

    def wait_tagged(self, tag: str, timeout: float | None = None) -> CommandResult:
        """Read until the tagged response for ``tag`` (for commands sent with send_raw)."""
        start = time.monotonic()
        deadline = start + (self.timeout if timeout is None else timeout)
        untagged: list[Response] = []
        try:
            while True:
                resp = self._next(deadline, f"to tag {tag}", start)
                if resp.tag == tag:
                    return CommandResult(tag, "", resp, untagged, time.monotonic() - start)
                untagged.append(resp)
        except BaseException:
            untagged.clear()  # see command()
            raise

    def take_pending(self) -> tuple[list[Response], bytes]:
        """What arrived but was not read yet, removed: the queued responses and the octets of no complete one."""
        queued = list(self.queue)
        self.queue.clear()
        return queued, self.reader.take_unparsed()

    # -- common commands ----------------------------------------------------------------------
    def capability(self) -> list[str]:
        res = self.command("CAPABILITY")
        return parse_capabilities("\n".join(r.first_line for r in res.untagged))

    def login(self, username: str, password: str) -> CommandResult:
        self.redactor.secrets.add(password)
        self.transcript.secrets.add(password)
        res = self.command(f"LOGIN {quote(username)} {quote(password)}")
        if res.ok:
            self.username = username
        return res

    def starttls(self, context: ssl.SSLContext | None = None) -> CommandResult:
        res = self.command("STARTTLS")
        if res.ok:
            if self.reader.pending or self.queue:
                raise ProtocolViolation(f"{self.label}: server sent data after STARTTLS OK before the handshake")
            self.start_tls(context)
        return res

    def compress(self) -> CommandResult:
        res = self.command("COMPRESS DEFLATE")
        if res.ok:
            codec = Deflate()
            self.conn.set_codec(codec.encode, codec.decode)
            pending = self.reader.take_unparsed()  # octets after the OK line were already compressed
            if pending:
                for resp in self.reader.feed(self.conn.decode(pending)):
                    self.conn.record_server(resp.raw)
                    self.queue.append(resp)
        return res

    def idle(self, timeout: float | None = None) -> str:
        """Send IDLE and wait for the continuation; returns the tag (finish with ``done``).

        Untagged responses that come before the '+' stay queued, in order, for the caller; the wait reads the
        socket and honours its deadline however many of them arrive (a flood ends as ``Flood``).
        """
        tag = self.next_tag()
        self.send_raw(f"{tag} IDLE\r\n".encode())
        start = time.monotonic()
        deadline = start + (self.timeout if timeout is None else timeout)
        held: list[Response] = []
        try:
            while True:
                resp = self._next(deadline, f"to '{tag} IDLE' (awaiting '+')", start)
                if resp.is_continuation:
                    return tag
                if resp.tag == tag:
                    raise ProtocolViolation(f"{self.label}: IDLE refused: {resp.first_line}")
                held.append(resp)
        except Flood:
            held.clear()
            raise
        finally:
            self.queue.extendleft(reversed(held))  # the caller sees them before anything that came later

    def done(self, tag: str, timeout: float | None = None) -> CommandResult:
        self.send_raw(b"DONE\r\n")
        return self.wait_tagged(tag, timeout)


__all__ = ["CommandResult", "ImapConnection", "ResponseReader", "insecure_context"]
