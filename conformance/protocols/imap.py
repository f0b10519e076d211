"""IMAP client with wire capture and deadlines: raw lines for exact checks, an IMAPClient for convenience.

``ImapConnection`` owns one socket. Every byte it sends or receives lands in the case transcript
(credentials redacted) and in its byte counters. Every read has a deadline: a stalling server raises
``ServerTimeout`` (a fail with evidence), a refused connect raises ``TargetUnreachable`` (an error).
"""

from __future__ import annotations

import socket
import ssl
import time
import zlib
from dataclasses import dataclass, field
from typing import Callable

from ..errors import ProtocolViolation, ServerClosed, ServerTimeout, TargetUnreachable
from ..transcript import Transcript, printable
from .imapwire import Response, ResponseReader, parse_capabilities, quote

DEFAULT_TIMEOUT = 10.0


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
    ) -> None:
        ImapConnection._counter += 1
        self.label = label or f"imap#{ImapConnection._counter}"
        self.transcript = transcript
        self.redactor = transcript.redactor()
        self.timeout = timeout
        self.leg = leg
        self.host, self.port = host, port
        self.server_hostname = server_hostname
        self.ssl_context = ssl_context
        self.reader = ResponseReader()
        self.queue: list[Response] = []
        self.bytes_sent = 0
        self.bytes_received = 0  # octets on the wire (compressed if COMPRESS is on)
        self.tagn = 0
        self.closed = False
        self._inflate: zlib._Decompress | None = None  # type: ignore[name-defined]
        self._deflate: zlib._Compress | None = None  # type: ignore[name-defined]
        self.greeting: Response | None = None
        self.tls_version: str | None = None
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout, source_address=source_address)
        except OSError as e:
            raise TargetUnreachable(f"cannot connect to IMAP at {host}:{port}: {e}") from e
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transcript.add(self.leg, "N", f"connected to {host}:{port}" + (" (TLS)" if tls == "implicit" else ""),
                       conn=self.label)
        if tls == "implicit":
            self._wrap_tls()

    # -- context manager -------------------------------------------------------------------------
    def __enter__(self) -> "ImapConnection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    # -- wire ----------------------------------------------------------------------------------
    def _wrap_tls(self, context: ssl.SSLContext | None = None) -> None:
        ctx = context or self.ssl_context or insecure_context()
        self.sock.settimeout(self.timeout)
        try:
            self.sock = ctx.wrap_socket(self.sock, server_hostname=self.server_hostname)
        except (ssl.SSLError, OSError) as e:
            self.transcript.add(self.leg, "N", f"TLS handshake failed: {e}", conn=self.label)
            raise
        self.tls_version = self.sock.version()
        self.transcript.add(self.leg, "N", f"TLS established: {self.tls_version} {self.sock.cipher()[0]}", conn=self.label)

    def send_raw(self, data: bytes, *, note: str | None = None) -> None:
        """Send exact octets (after compression if active). Recorded as one C entry."""
        text = self.redactor.client(printable(data))
        self.transcript.add(self.leg, "C", note or text, len(data), conn=self.label)
        wire = data
        if self._deflate is not None:
            wire = self._deflate.compress(data) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        try:
            self.sock.sendall(wire)
        except OSError as e:
            raise ServerClosed(f"{self.label}: sending failed, connection gone: {e}") from e
        self.bytes_sent += len(wire)

    def _recv(self, deadline: float, waiting_for: str) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ServerTimeout(f"{self.label}: no complete response {waiting_for} within the deadline")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError) as e:
            raise ServerTimeout(
                f"{self.label}: server sent nothing {waiting_for} for {left:.1f} s"
                + (f" ({self.reader.pending} octets of an incomplete response pending)" if self.reader.pending else "")
            ) from e
        except ssl.SSLError as e:
            raise ProtocolViolation(f"{self.label}: TLS error while reading: {e}") from e
        except ConnectionResetError as e:
            self.transcript.add(self.leg, "N", "connection reset by peer", conn=self.label)
            raise ServerClosed(f"{self.label}: connection reset {waiting_for}") from e
        except OSError as e:
            raise ServerClosed(f"{self.label}: read failed {waiting_for}: {e}") from e
        if not data:
            self.transcript.add(self.leg, "N", "connection closed by peer (EOF)", conn=self.label)
            raise ServerClosed(f"{self.label}: server closed the connection {waiting_for}")
        self.bytes_received += len(data)
        if self._inflate is not None:
            try:
                data = self._inflate.decompress(data)
            except zlib.error as e:
                raise ProtocolViolation(f"{self.label}: compressed stream does not inflate: {e}") from e
        for resp in self.reader.feed(data):
            self.transcript.add(self.leg, "S", self.redactor.server(printable(resp.raw)), len(resp.raw), conn=self.label)
            self.queue.append(resp)

    def read_response(self, timeout: float | None = None, waiting_for: str = "") -> Response:
        """The next response; raises ServerTimeout after ``timeout`` seconds."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.queue:
            self._recv(deadline, waiting_for or "for the next response")
        return self.queue.pop(0)

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
                resp = self._next(deadline, f"to '{tag} {text.split(' ')[0]}' (awaiting continuation)")
                if resp.is_continuation:
                    break
                if resp.tag == tag:
                    return CommandResult(tag, text, resp, untagged, time.monotonic() - start)
                untagged.append(resp)
            self.send_raw(literal + b"\r\n")
        else:
            self.send_raw(f"{tag} {text}\r\n".encode())
        while True:
            resp = self._next(deadline, f"to '{tag} {text[:60]}'")
            if resp.tag == tag:
                return CommandResult(tag, text, resp, untagged, time.monotonic() - start)
            if on_untagged:
                on_untagged(resp)
            untagged.append(resp)

    def _next(self, deadline: float, waiting_for: str) -> Response:
        while not self.queue:
            self._recv(deadline, waiting_for)
        return self.queue.pop(0)

    def wait_tagged(self, tag: str, timeout: float | None = None) -> CommandResult:
        """Read until the tagged response for ``tag`` (for commands sent with send_raw)."""
        start = time.monotonic()
        deadline = start + (self.timeout if timeout is None else timeout)
        untagged: list[Response] = []
        while True:
            resp = self._next(deadline, f"to tag {tag}")
            if resp.tag == tag:
                return CommandResult(tag, "", resp, untagged, time.monotonic() - start)
            untagged.append(resp)

    # -- common commands ----------------------------------------------------------------------
    def capability(self) -> list[str]:
        res = self.command("CAPABILITY")
        return parse_capabilities("\n".join(r.first_line for r in res.untagged))

    def login(self, username: str, password: str) -> CommandResult:
        self.redactor.secrets.add(password)
        self.transcript.secrets.add(password)
        res = self.command(f"LOGIN {quote(username)} {quote(password)}")
        return res

    def starttls(self, context: ssl.SSLContext | None = None) -> CommandResult:
        res = self.command("STARTTLS")
        if res.ok:
            if self.reader.pending or self.queue:
                raise ProtocolViolation(f"{self.label}: server sent data after STARTTLS OK before the handshake")
            self._wrap_tls(context)
        return res

    def compress(self) -> CommandResult:
        res = self.command("COMPRESS DEFLATE")
        if res.ok:
            self._deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
            self._inflate = zlib.decompressobj(-15)
            if self.reader.pending:
                # octets after the OK line were already read uncompressed: re-feed them inflated
                pending = bytes(self.reader._buf)
                self.reader._buf.clear()
                for resp in self.reader.feed(self._inflate.decompress(pending)):
                    self.queue.append(resp)
        return res

    def idle(self, timeout: float | None = None) -> str:
        """Send IDLE and wait for the continuation; returns the tag (finish with ``done``)."""
        tag = self.next_tag()
        self.send_raw(f"{tag} IDLE\r\n".encode())
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            resp = self._next(deadline, f"to '{tag} IDLE' (awaiting '+')")
            if resp.is_continuation:
                return tag
            if resp.tag == tag:
                raise ProtocolViolation(f"{self.label}: IDLE refused: {resp.first_line}")
            self.queue.append(resp)  # keep untagged data for the caller
            if len(self.queue) > 10000:
                raise ProtocolViolation(f"{self.label}: flood of untagged data before IDLE continuation")

    def done(self, tag: str, timeout: float | None = None) -> CommandResult:
        self.send_raw(b"DONE\r\n")
        return self.wait_tagged(tag, timeout)


def insecure_context(minimum: ssl.TLSVersion | None = None, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A client context that does not verify (test servers are self-signed), optionally pinned to versions."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx
