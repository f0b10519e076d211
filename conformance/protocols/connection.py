"""The captured connection: one socket of the suite's own protocol clients, and the one rule of who is at fault.

``CapturedConnection`` owns the socket. Every read has a deadline; every octet sent or received is counted
and recorded in the case transcript (credentials redacted, quoted commands too); TLS can be started on it and a
compression codec put under it. The protocol clients (``imap``, ``smtp``, ``http``, ``eventsource``,
``websocket``) hold one each with a sans-IO reader and never touch a socket themselves.

The rule (exception types in ``conformance/errors.py``):

- the peer stalls past a deadline (``ServerTimeout``), resets or closes early (``ServerClosed``), fails,
  refuses or stalls a TLS handshake (``TlsHandshakeFailed``), sends bytes that do not parse
  (``ProtocolViolation``) or more than a declared bound (``Flood``): a ``ConformanceFailure``, verdict fail,
  with the transcript as evidence. A connection through the suite's intermediary counts as one to the peer:
  what the far side does arrives through it.
- the suite's own side fails: its intermediary's listener refuses, its proxy breaks a CONNECT
  (``talking_to_own``), a local address clash, the local TLS library cannot offer what was asked, a trust
  setting rejects the certificate, a bug: ``HarnessError``, verdict error, never fail.
- the target itself refuses or never answers a connection attempt: ``TargetUnreachable`` (error, exit 2).

Bounds are per protocol (each reader declares its own); ``FloodGuard`` is the shared counter of what the peer
sent while the client waited for one answer.
"""

from __future__ import annotations

import errno
import functools
import socket
import ssl
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from ..errors import (
    ConformanceFailure,
    Flood,
    HarnessError,
    ProtocolViolation,
    ServerClosed,
    ServerTimeout,
    TargetUnreachable,
    TlsHandshakeFailed,
)
from ..transcript import Redactor, Transcript, printable

DEFAULT_TIMEOUT = 10.0  # seconds a read (or a whole command, as the protocol client decides) may take
READ_CHUNK = 65536  # octets asked of the socket per read
SHOWN = 2000  # characters of one chunk the transcript shows (the transcript's own bounds come on top)
# reasons OpenSSL gives when the suite's own TLS library cannot offer what was asked (not the peer's doing)
LOCAL_TLS_REASONS = frozenset({"NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE", "NO_CIPHER_MATCH"})
LOCAL_ADDRESS_ERRNOS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL})


@dataclass
class FloodGuard:
    """What the peer sent since the client last sent anything. Over ``max_items`` (responses, replies, events,
    messages) or ``max_octets``, it is a flood: ``Flood`` is raised instead of waiting out the deadline."""

    what: str  # e.g. "untagged responses"
    max_items: int
    max_octets: int
    items: int = 0
    octets: int = 0

    def reset(self) -> None:
        self.items = self.octets = 0

    def count(self, items: int, octets: int, label: str, waiting_for: str) -> None:
        self.items += items
        self.octets += octets
        if self.items > self.max_items or self.octets > self.max_octets:
            raise Flood(f"{label}: flood: {self.items} {self.what} ({self.octets} octets) {waiting_for}; the bound "
                        f"is {self.max_items} {self.what} or {self.max_octets} octets")


def scrub_faults(cls: type) -> type:
    """Class decorator for protocol clients: an exception leaving a public method (or ``__init__``) carries no
    secret the client's redactor knows, in any of its forms, whatever server text its message quotes."""
    for name, member in list(vars(cls).items()):
        if ((name.startswith("_") and name != "__init__") or isinstance(member, (type, classmethod, staticmethod))
                or not callable(member)):
            continue
        setattr(cls, name, _scrubbing(member))
    return cls


def _scrubbing(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except Exception as e:
            conn = self.__dict__.get("conn")
            redactor = conn.redactor if conn is not None else self.__dict__.get("redactor")
            if redactor is not None:
                e.args = tuple(redactor.scrub(a) if isinstance(a, str) else a for a in e.args)
            raise
    return wrapper


def shown(data: bytes, redact: Callable[[str], str], limit: int = SHOWN) -> str:
    """Transcript text of ``data``: redacted first, then cut (a secret is never cut in half and left)."""
    text = redact(printable(data[: limit + 512], limit + 512))
    if len(data) > limit:
        text = text[:limit] + f"... [{len(data) - limit} more octets]"
    return text


class CapturedConnection:
    """One socket with deadlines, capture, counters, TLS and compression hooks. ``close()`` is idempotent."""

    def __init__(self, sock: socket.socket, *, transcript: Transcript, label: str, leg: str = "direct",
                 timeout: float = DEFAULT_TIMEOUT, redactor: Redactor | None = None) -> None:
        self.sock = sock
        self.transcript = transcript
        self.label = label
        self.leg = leg
        self.timeout = timeout
        self.redactor = redactor or transcript.redactor()
        self.bytes_sent = 0  # octets on the wire (compressed when a codec is on)
        self.bytes_received = 0
        self.tls_version: str | None = None
        self.closed = False
        self.last_received: float | None = None  # time.monotonic() of the last octet received
        self.guard: FloodGuard | None = None  # reset by every send
        self._encode: Callable[[bytes], bytes] | None = None
        self._decode: Callable[[bytes], bytes] | None = None

    # -- opening --------------------------------------------------------------------------------
    @classmethod
    def connect(cls, host: str, port: int, *, transcript: Transcript, label: str, leg: str = "direct",
                timeout: float = DEFAULT_TIMEOUT, what: str = "", via: str | None = None,
                source_address: tuple[str, int] | None = None, redactor: Redactor | None = None,
                note: str = "") -> "CapturedConnection":
        """Connect to ``host:port``. ``via`` names the suite's own listener when the address is one (an
        intermediary of the scenario path): a refusal there is the harness's, not the target's."""
        what = what or f"the target at {host}:{port}"
        try:
            sock = socket.create_connection((host, port), timeout=timeout, source_address=source_address)
        except ConnectionResetError as e:  # accepted, then reset before connect() looked: the peer was there
            transcript.add(leg, "N", f"connection to {host}:{port} reset by peer as it was accepted", conn=label)
            raise ServerClosed(f"{label}: the server reset the connection as it was accepted ({host}:{port}: {e})",
                               how="reset") from e
        except OSError as e:
            if e.errno in LOCAL_ADDRESS_ERRNOS:
                raise HarnessError(f"{label}: local address problem connecting to {host}:{port}"
                                   f"{f' from {source_address[0]}' if source_address else ''}: {e}") from e
            if via:
                raise HarnessError(f"{label}: cannot connect to the suite's own {via} at {host}:{port}: {e}") from e
            raise TargetUnreachable(f"cannot connect to {what}: {e}") from e
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # reset right after the handshake: the first read reports it, as the server's
            pass
        conn = cls(sock, transcript=transcript, label=label, leg=leg, timeout=timeout, redactor=redactor)
        conn.note(f"connected to {host}:{port}" + (f" through the {via}" if via else "") + note)
        return conn

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    def detach(self) -> socket.socket:
        """Hand the socket to a caller that speaks raw bytes from here on (counters and capture stop)."""
        self.closed = True
        return self.sock

    # -- evidence -------------------------------------------------------------------------------
    def note(self, text: str) -> None:
        self.transcript.add(self.leg, "N", self.redactor.scrub(text), conn=self.label)

    def record_server(self, data: bytes | str, nbytes: int | None = None) -> None:
        """Record what the server sent (bytes or already-rendered text), redacted."""
        if isinstance(data, bytes):
            text, n = shown(data, self.redactor.server), len(data)
        else:
            text, n = self.redactor.server(data), 0
        self.transcript.add(self.leg, "S", text, n if nbytes is None else nbytes, conn=self.label)

    def quote(self, command: str) -> str:
        """A command as a failure message may quote it: credentials redacted."""
        return self.redactor.quote(command)

    # -- wire -----------------------------------------------------------------------------------
    def send(self, data: bytes, *, text: str | None = None, timeout: float | None = None) -> None:
        """Send exact octets (through the codec, if one is on); recorded as one C entry (``text`` instead of the
        octets when given, e.g. '[text frame] ...'). A peer that takes nothing for ``timeout`` seconds stalls."""
        entry = self.redactor.scrub(text) if text is not None else shown(data, self.redactor.client)
        self.transcript.add(self.leg, "C", entry, len(data), conn=self.label)
        wire = self._encode(data) if self._encode is not None else data
        limit = self.timeout if timeout is None else timeout
        self.sock.settimeout(max(0.001, limit))
        try:
            self.sock.sendall(wire)
        except (socket.timeout, TimeoutError) as e:
            raise ServerTimeout(f"{self.label}: the server took none of {len(wire)} octets for {limit:.1f} s "
                                f"(its receive window stayed full)") from e
        except OSError as e:
            self.note(f"sending failed: {e}")
            raise ServerClosed(f"{self.label}: sending failed, connection gone: {e}", how="send") from e
        self.bytes_sent += len(wire)
        if self.guard is not None:
            self.guard.reset()

    def recv(self, deadline: float, waiting_for: str, *, limit: int = READ_CHUNK, pending: int = 0,
             since: float | None = None) -> bytes:
        """One read of at most ``limit`` octets before ``deadline`` (time.monotonic); the decoded octets.

        ``waiting_for`` completes the failure messages ('as greeting', "to 'A1 LOGIN ...'"; quote commands
        through ``quote``); ``pending`` says how many octets of an incomplete unit the reader holds; ``since`` is
        when the wait began (the messages tell silence from a trickle that never completes).
        """
        now = time.monotonic()
        left = deadline - now
        if left <= 0:
            raise self._timeout(waiting_for, pending, since, now)
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(limit)
        except (socket.timeout, TimeoutError) as e:
            raise self._timeout(waiting_for, pending, now - left if since is None else since, time.monotonic()) from e
        except ssl.SSLZeroReturnError:
            data = b""
        except ssl.SSLEOFError as e:
            self.note(f"TLS ended without close_notify: {e}")
            raise ServerClosed(f"{self.label}: connection ended without a TLS close_notify {waiting_for}",
                               how="tls-unclean") from e
        except ssl.SSLError as e:
            raise ProtocolViolation(f"{self.label}: TLS error while reading {waiting_for}: {e}") from e
        except OSError as e:
            how = "reset" if isinstance(e, ConnectionResetError) else "read-error"
            self.note(f"connection reset by peer ({e})" if how == "reset" else f"read failed: {e}")
            raise ServerClosed(f"{self.label}: connection reset {waiting_for}" if how == "reset"
                               else f"{self.label}: read failed {waiting_for}: {e}", how=how) from e
        if not data:
            self.note("connection closed by peer (EOF)")
            raise ServerClosed(f"{self.label}: server closed the connection {waiting_for}", how="eof")
        self.bytes_received += len(data)
        self.last_received = time.monotonic()
        if self._decode is not None:
            try:
                data = self._decode(data)
            except Exception as e:  # noqa: BLE001 - a codec's own error type (zlib.error, ...)
                raise ProtocolViolation(f"{self.label}: received data does not decode ({type(e).__name__}: {e})") from e
        return data

    def _timeout(self, waiting_for: str, pending: int, since: float | None, now: float) -> ServerTimeout:
        waited = f" for {now - since:.1f} s" if since is not None else ""
        if self.last_received is None or since is None or self.last_received < since:
            if not pending:
                return ServerTimeout(f"{self.label}: server sent nothing {waiting_for}{waited}")
        held = f"; {pending} octets of an incomplete response pending" if pending else ""
        last = f"; the last octet came {now - self.last_received:.1f} s ago" if self.last_received is not None else ""
        return ServerTimeout(f"{self.label}: no complete response {waiting_for}{waited}{held}{last}")

    # -- layers ---------------------------------------------------------------------------------
    def start_tls(self, context: ssl.SSLContext, server_hostname: str | None = "localhost", *,
                  timeout: float | None = None, suppress_ragged_eofs: bool = True) -> str:
        """TLS handshake on the connection; the negotiated version. See the rule in the module docstring."""
        limit = self.timeout if timeout is None else timeout
        self.sock.settimeout(limit)
        try:
            tls = context.wrap_socket(self.sock, server_hostname=server_hostname,
                                      suppress_ragged_eofs=suppress_ragged_eofs)
        except ssl.SSLCertVerificationError as e:
            self._handshake_failed(f"certificate not accepted: {e.verify_message or e}")
            raise HarnessError(f"{self.label}: TLS verification failed with the configured trust settings "
                               f"(the target's [tls] or the path's CA): {e.verify_message or e}") from e
        except ssl.SSLError as e:
            reason = e.reason or type(e).__name__
            self._handshake_failed(str(e))
            if reason in LOCAL_TLS_REASONS:
                raise HarnessError(f"{self.label}: the local TLS library cannot offer the handshake asked "
                                   f"for ({reason}): {e}") from e
            if isinstance(e, ssl.SSLEOFError):
                raise TlsHandshakeFailed(f"{self.label}: the server closed the connection during the TLS "
                                         f"handshake ({e})") from e
            raise TlsHandshakeFailed(f"{self.label}: TLS handshake failed: {reason} ({e})") from e
        except (socket.timeout, TimeoutError) as e:
            self._handshake_failed(f"no handshake answer within {limit:.1f} s")
            raise TlsHandshakeFailed(f"{self.label}: TLS handshake stalled: no answer within {limit:.1f} s") from e
        except ValueError as e:
            self._handshake_failed(str(e))
            raise HarnessError(f"{self.label}: TLS set-up error in the suite: {e}") from e
        except OSError as e:
            self._handshake_failed(str(e))
            raise TlsHandshakeFailed(f"{self.label}: connection lost during the TLS handshake: {e}") from e
        self.sock = tls
        self.tls_version = tls.version()
        cipher = tls.cipher()
        self.note(f"TLS established: {self.tls_version} {cipher[0] if cipher else ''}")
        return self.tls_version or ""

    def _handshake_failed(self, why: str) -> None:
        self.closed = True  # wrap_socket took the descriptor over and closed it
        self.note(f"TLS handshake failed: {why}")

    def set_codec(self, encode: Callable[[bytes], bytes], decode: Callable[[bytes], bytes]) -> None:
        """Put a codec (e.g. COMPRESS=DEFLATE) under the protocol: it sees plain octets, the wire coded ones."""
        self._encode, self._decode = encode, decode

    def decode(self, data: bytes) -> bytes:
        """Octets received before the codec was on, decoded now (they belong to the coded stream)."""
        if self._decode is None or not data:
            return data
        try:
            return self._decode(data)
        except Exception as e:  # noqa: BLE001
            raise ProtocolViolation(f"{self.label}: received data does not decode ({type(e).__name__}: {e})") from e

    @contextmanager
    def talking_to_own(self, who: str) -> Iterator[None]:
        """While the peer is the suite's own intermediary (e.g. answering CONNECT), its faults are the harness's."""
        try:
            yield
        except ConformanceFailure as e:
            raise HarnessError(f"{who}: {e}") from e
