"""Submission clients on the captured connection: a raw reply-by-reply client and a session client with
the smtplib methods checks use, both with deadlines, capture (credentials redacted) and bounds.

``SmtpConnection`` sends exact octets and reads replies through the sans-IO ``smtpwire.ReplyReader``; the
transport checks use it where the segments matter (``STARTTLS\\r\\nNOOP\\r\\n`` in one write).
``CapturingSMTP`` adds EHLO keywords, STARTTLS, AUTH, MAIL/RCPT/DATA, BDAT through ``docmd``/``send``, sendmail
and quit, with smtplib's names and return values ``(code, message bytes)``. Unlike smtplib it keeps no
unbounded reply (an endless multi-line EHLO reply is a ``Flood`` after ``smtpwire.MAX_REPLY_LINES`` lines),
and a stalling server is ``ServerTimeout`` (fail), not ``SMTPServerDisconnected``.

Bounds: FLOOD_REPLIES replies or FLOOD_OCTETS octets while the client waits without sending are a ``Flood``.
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
import time
from collections import deque

from ..errors import HarnessError, ProtocolViolation, ServerTimeout
from ..transcript import Transcript
from .connection import DEFAULT_TIMEOUT, CapturedConnection, FloodGuard, scrub_faults
from .smtpwire import ReplyReader, SmtpReply
from .tls import insecure_context

FLOOD_REPLIES = 1000  # replies while the client waits without sending (pipelining sends a few at once)
FLOOD_OCTETS = 1 << 20
CLIENT_NAME = "client.test"


class SmtpRefused(HarnessError):
    """The server refused a step the check needed to work (greeting, AUTH, MAIL, RCPT, DATA): verdict error.

    ``smtp_code`` and ``smtp_error`` as in smtplib's SMTPResponseException."""

    def __init__(self, what: str, code: int, message: bytes) -> None:
        self.smtp_code, self.smtp_error = code, message
        super().__init__(f"{what}: {code} {message.decode('utf-8', 'replace')[:200]}")


@scrub_faults
class SmtpConnection:
    """One SMTP connection speaking raw octets and whole replies; every octet goes into the case transcript."""

    def __init__(self, host: str, port: int, transcript: Transcript, leg: str = "direct", label: str = "smtp",
                 timeout: float = DEFAULT_TIMEOUT, *, source_address: tuple[str, int] | None = None,
                 via: str | None = None) -> None:
        """Connect to ``host:port``; ``via`` names the suite's own intermediary when the address is its listener."""
        conn = CapturedConnection.connect(host, port, transcript=transcript, label=label, leg=leg, timeout=timeout,
                                          what=f"submission at {host}:{port}", via=via, source_address=source_address)
        self._start(conn)

    @classmethod
    def over(cls, sock: socket.socket, *, transcript: Transcript, label: str = "smtp", leg: str = "direct",
             timeout: float = DEFAULT_TIMEOUT) -> "SmtpConnection":
        """An SmtpConnection on a socket opened elsewhere (``path.open``, a CONNECT tunnel)."""
        self = cls.__new__(cls)
        conn = CapturedConnection(sock, transcript=transcript, label=label, leg=leg, timeout=timeout)
        conn.note("connected through the path")
        self._start(conn)
        return self

    def _start(self, conn: CapturedConnection) -> None:
        self.conn = conn
        conn.guard = FloodGuard("replies", FLOOD_REPLIES, FLOOD_OCTETS)
        self.reader = ReplyReader()
        self.replies: deque[SmtpReply] = deque()
        self._waiting = "for the greeting"

    label = property(lambda self: self.conn.label)
    transcript = property(lambda self: self.conn.transcript)
    redactor = property(lambda self: self.conn.redactor)
    leg = property(lambda self: self.conn.leg)
    sock = property(lambda self: self.conn.sock)
    tls_version = property(lambda self: self.conn.tls_version)
    bytes_sent = property(lambda self: self.conn.bytes_sent)
    bytes_received = property(lambda self: self.conn.bytes_received)

    @property
    def timeout(self) -> float:
        return self.conn.timeout

    @property
    def buf(self) -> bytes:
        """What arrived and was not read yet: queued replies and the octets of no complete reply."""
        return b"".join(r.raw for r in self.replies) + self.reader.unparsed()

    def send(self, data: bytes, *, what: str | None = None) -> None:
        """Send exact octets; the next failure message names the first line sent (redacted) or ``what``."""
        self.conn.send(data)
        first = data.split(b"\r\n", 1)[0][:80].decode("utf-8", "replace")
        self._waiting = f"to {what}" if what else f"to '{self.conn.quote(first)}'"

    def reply(self, timeout: float | None = None) -> SmtpReply:
        """The next complete reply within ``timeout`` seconds (ServerTimeout after it)."""
        start = time.monotonic()
        deadline = start + (self.timeout if timeout is None else timeout)
        while not self.replies:
            data = self.conn.recv(deadline, self._waiting, pending=self.reader.pending, since=start)
            try:
                replies = self.reader.feed(data)
            except ProtocolViolation as e:
                self.conn.record_server(self.reader.unparsed()[-2000:] or data[-2000:])
                raise type(e)(f"{self.label}: {e} {self._waiting}") from e
            for r in replies:
                self.conn.record_server(r.raw)
                self.replies.append(r)
            if self.conn.guard is not None:
                self.conn.guard.count(len(replies), len(data), self.label, self._waiting)
        return self.replies.popleft()

    def poll(self, timeout: float) -> SmtpReply | None:
        """The next reply if one arrives within ``timeout`` seconds, else None (no failure)."""
        try:
            return self.reply(timeout)
        except ServerTimeout:
            return None

    def command(self, text: str, timeout: float | None = None) -> SmtpReply:
        self.send(text.encode() + b"\r\n")
        return self.reply(timeout)

    def start_tls(self, context: ssl.SSLContext | None = None) -> str:
        """The TLS handshake now (after a 220 to STARTTLS); a failed or stalled one is ``TlsHandshakeFailed``."""
        return self.conn.start_tls(context or insecure_context(), "localhost")

    starttls_handshake = start_tls

    def close(self) -> None:
        self.conn.close()


@scrub_faults
class CapturingSMTP(SmtpConnection):
    """A submission session with smtplib's method names and return values, on the captured connection."""

    def __init__(self, host: str, port: int, *, transcript: Transcript, timeout: float = DEFAULT_TIMEOUT,
                 label: str = "smtp", leg: str = "direct", via: str | None = None) -> None:
        super().__init__(host, port, transcript, leg, label, timeout, via=via)
        self._session()

    @classmethod
    def over(cls, sock: socket.socket, *, transcript: Transcript, label: str = "smtp", leg: str = "direct",
             timeout: float = DEFAULT_TIMEOUT) -> "CapturingSMTP":
        self = super().over(sock, transcript=transcript, label=label, leg=leg, timeout=timeout)
        self._session()
        return self  # type: ignore[return-value]

    def _session(self) -> None:
        self.esmtp_features: dict[str, str] = {}
        self.does_esmtp = False
        self.ehlo_resp: bytes | None = None
        greeting = self.reply()
        self.greeting_code, self.greeting_msg = greeting.code, greeting.message
        if greeting.code != 220:
            raise SmtpRefused(f"{self.label}: submission greeting is not 220", greeting.code, greeting.message)

    # -- smtplib's interface --------------------------------------------------------------------
    def putcmd(self, cmd: str, args: str = "") -> None:
        line = f"{cmd} {args}" if args else cmd
        if "\r" in line or "\n" in line:
            raise HarnessError(f"{self.label}: a command with a line break inside: {self.conn.quote(line)!r}")
        self.send(f"{line}\r\n".encode())

    def getreply(self) -> tuple[int, bytes]:
        r = self.reply()
        return r.code, r.message

    def docmd(self, cmd: str, args: str = "") -> tuple[int, bytes]:
        self.putcmd(cmd, args)
        return self.getreply()

    def ehlo(self, name: str = CLIENT_NAME) -> tuple[int, bytes]:
        self.putcmd("EHLO", name)
        r = self.reply()
        self.ehlo_resp = r.message
        self.esmtp_features = {}
        self.does_esmtp = r.code == 250
        if r.code == 250:
            for text in r.texts[1:]:
                m = re.match(r"(?P<feature>[A-Za-z0-9][A-Za-z0-9\-]*) ?(?P<params>.*)", text)
                if m:
                    feature, params = m.group("feature").lower(), m.group("params").strip()
                    if feature == "auth" and feature in self.esmtp_features:
                        params = f"{self.esmtp_features[feature]} {params}".strip()
                    self.esmtp_features[feature] = params
        return r.code, r.message

    def helo(self, name: str = CLIENT_NAME) -> tuple[int, bytes]:
        return self.docmd("HELO", name)

    def ehlo_or_helo_if_needed(self) -> None:
        if self.ehlo_resp is None:
            code, msg = self.ehlo()
            if not 200 <= code < 300:
                raise SmtpRefused(f"{self.label}: EHLO refused", code, msg)

    def has_extn(self, name: str) -> bool:
        return name.lower() in self.esmtp_features

    def ehlo_keywords(self) -> dict[str, str]:
        """EHLO keywords, upper-cased, mapped to their arguments (from the last EHLO)."""
        return {k.upper(): v for k, v in self.esmtp_features.items()}

    def starttls(self, context: ssl.SSLContext | None = None) -> tuple[int, bytes]:  # type: ignore[override]
        """STARTTLS and the handshake on 220 (a failed or stalled handshake is ``TlsHandshakeFailed``)."""
        self.ehlo_or_helo_if_needed()
        if not self.has_extn("starttls"):
            raise SmtpRefused(f"{self.label}: STARTTLS is not advertised", 0, b"")
        code, msg = self.docmd("STARTTLS")
        if code == 220:
            if self.replies or self.reader.pending:
                raise ProtocolViolation(f"{self.label}: server sent data after 220 to STARTTLS before the handshake")
            self.start_tls(context)
            self.ehlo_resp, self.esmtp_features, self.does_esmtp = None, {}, False
        return code, msg

    def starttls_with(self, context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
        return self.starttls(context=context or insecure_context())

    def login(self, user: str, password: str, *, initial_response_ok: bool = True) -> tuple[int, bytes]:
        """AUTH PLAIN (or LOGIN when PLAIN is not offered); a refusal is ``SmtpRefused``."""
        self.redactor.secrets.add(password)
        self.transcript.secrets.add(password)
        self.ehlo_or_helo_if_needed()
        if not self.has_extn("auth"):
            raise SmtpRefused(f"{self.label}: AUTH is not advertised", 0, b"")
        mechanisms = self.esmtp_features["auth"].upper().split()
        if "PLAIN" in mechanisms or "LOGIN" not in mechanisms:
            blob = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
            if initial_response_ok:
                self.send(f"AUTH PLAIN {blob}\r\n".encode(), what="AUTH PLAIN")
                r = self.reply()
            else:
                self.send(b"AUTH PLAIN\r\n")
                r = self.reply()
                if r.code == 334:
                    self.send(blob.encode() + b"\r\n", what="the AUTH PLAIN response")
                    r = self.reply()
        else:
            self.send(b"AUTH LOGIN\r\n")
            r = self.reply()
            for value, what in ((user, "the AUTH LOGIN user name"), (password, "the AUTH LOGIN password")):
                if r.code != 334:
                    break
                self.send(base64.b64encode(value.encode()) + b"\r\n", what=what)
                r = self.reply()
        if r.code not in (235, 503):
            raise SmtpRefused(f"{self.label}: AUTH as {user} refused", r.code, r.message)
        return r.code, r.message

    def mail(self, sender: str, options: list[str] | tuple[str, ...] = ()) -> tuple[int, bytes]:
        extra = " " + " ".join(options) if options and self.does_esmtp else ""
        return self.docmd("MAIL", f"FROM:<{sender}>{extra}")

    def rcpt(self, recip: str, options: list[str] | tuple[str, ...] = ()) -> tuple[int, bytes]:
        extra = " " + " ".join(options) if options and self.does_esmtp else ""
        return self.docmd("RCPT", f"TO:<{recip}>{extra}")

    def data(self, msg: bytes | str) -> tuple[int, bytes]:
        """DATA, the message with leading dots doubled and the final '.', the reply (smtplib's quoting)."""
        code, repl = self.docmd("DATA")
        if code != 354:
            raise SmtpRefused(f"{self.label}: DATA refused", code, repl)
        if isinstance(msg, str):
            msg = re.sub(r"(?:\r\n|\n|\r(?!\n))", "\r\n", msg).encode("ascii")
        q = re.sub(rb"(?m)^\.", b"..", msg)
        if q[-2:] != b"\r\n":
            q += b"\r\n"
        self.send(q + b".\r\n", what="the message after DATA")
        return self.getreply()

    def sendmail(self, from_addr: str, to_addrs: str | list[str], msg: bytes | str,
                 mail_options: tuple[str, ...] = (), rcpt_options: tuple[str, ...] = ()) -> dict:
        """smtplib's sendmail: refusals of MAIL, of every RCPT, or of the message are ``SmtpRefused``."""
        self.ehlo_or_helo_if_needed()
        if isinstance(msg, str):
            msg = re.sub(r"(?:\r\n|\n|\r(?!\n))", "\r\n", msg).encode("ascii")
        options = list(mail_options)
        if self.does_esmtp and self.has_extn("size"):
            options.insert(0, f"size={len(msg)}")
        code, resp = self.mail(from_addr, options)
        if code != 250:
            self.rset_quietly()
            raise SmtpRefused(f"{self.label}: MAIL FROM:<{from_addr}> refused", code, resp)
        recipients = [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)
        refused = {}
        for rcpt in recipients:
            code, resp = self.rcpt(rcpt, rcpt_options)
            if code not in (250, 251):
                refused[rcpt] = (code, resp)
        if len(refused) == len(recipients):
            self.rset_quietly()
            code, resp = next(iter(refused.values()), (0, b""))
            raise SmtpRefused(f"{self.label}: every recipient refused", code, resp)
        code, resp = self.data(msg)
        if code != 250:
            raise SmtpRefused(f"{self.label}: message refused after DATA", code, resp)
        return refused

    def rset_quietly(self) -> None:
        try:
            self.docmd("RSET")
        except Exception:  # noqa: BLE001 - a courtesy before reporting the refusal
            pass

    def noop(self) -> tuple[int, bytes]:
        return self.docmd("NOOP")

    def rset(self) -> tuple[int, bytes]:
        return self.docmd("RSET")

    def quit(self) -> tuple[int, bytes]:
        try:
            return self.docmd("QUIT")
        finally:
            self.close()
