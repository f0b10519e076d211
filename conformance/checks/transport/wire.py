"""Raw helpers the transport checks share: an SMTP line connection with deadlines and capture, TLS probes.

The transport checks need exact segments (``STARTTLS\\r\\nNOOP\\r\\n`` in one write), pinned TLS versions and
handshakes whose failures are evidence, so they talk to the wire themselves instead of through smtplib.
"""

from __future__ import annotations

import re
import socket
import ssl
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from conformance.errors import HarnessError, ServerClosed, ServerTimeout
from conformance.intermediaries.addons.strip_starttls import distinct_loopback
from conformance.transcript import Transcript, printable

VERSIONS = {
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
OLD_VERSIONS = ("TLSv1", "TLSv1.1")
GOOD_VERSIONS = ("TLSv1.2", "TLSv1.3")


def pinned_context(version: str) -> ssl.SSLContext:
    """A non-verifying client context that offers exactly one TLS version.

    OpenSSL 3 refuses TLS 1.0/1.1 at security level 1 and above (their handshake signatures use SHA-1/MD5),
    so for those the cipher string lowers the level to 0: the client really offers the old version, and
    a refusal is the server's.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    v = VERSIONS[version]
    if version in OLD_VERSIONS:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    ctx.minimum_version = v
    ctx.maximum_version = v
    return ctx


def client_can_offer(version: str) -> str | None:
    """None if this machine's TLS library completes a handshake at ``version`` with itself, else why not.

    Proves that a refused old-version handshake is the server's doing, not the client's library's.
    """
    from conformance.providers.base import make_certificate

    with tempfile.TemporaryDirectory(prefix="lemonade-tlsprobe-") as d:
        make_certificate(Path(d))
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(Path(d) / "cert.pem", Path(d) / "key.pem")
        if version in OLD_VERSIONS:
            server.set_ciphers("ALL:@SECLEVEL=0")
        server.minimum_version = server.maximum_version = VERSIONS[version]
        a, b = socket.socketpair()
        a.settimeout(5)
        b.settimeout(5)
        try:
            import threading

            errors: list[str] = []

            def serve() -> None:
                try:
                    s = server.wrap_socket(b, server_side=True)
                    s.close()
                except (ssl.SSLError, OSError) as e:
                    errors.append(str(e))

            t = threading.Thread(target=serve, daemon=True)
            t.start()
            try:
                c = pinned_context(version).wrap_socket(a, server_hostname="localhost")
                got = c.version()
                c.close()
            except (ssl.SSLError, OSError) as e:
                return f"the local TLS library cannot complete a {version} handshake even with itself: {e}"
            t.join(5)
            if got != version:
                return f"the local TLS library negotiated {got} when pinned to {version}"
            return None
        finally:
            a.close()
            b.close()


def remote_source(host: str) -> tuple[str, int] | None:
    """Bind address that makes a loopback server see a peer other than itself (see ``distinct_loopback``).

    Dovecot treats a connection whose remote address equals its local address as secured: on 127.0.0.1 it
    offers AUTH=PLAIN without LOGINDISABLED and accepts cleartext LOGIN. A remote client never gets that, so
    the cleartext checks connect from another loopback address to see what a remote client sees.
    """
    source = distinct_loopback(host)
    return (source, 0) if source else None


@dataclass
class SmtpReply:
    code: int
    lines: list[str]

    @property
    def text(self) -> str:
        return " | ".join(self.lines)


class SmtpLine:
    """One SMTP connection speaking raw lines; every octet goes into the case transcript."""

    def __init__(self, host: str, port: int, transcript: Transcript, leg: str, label: str, timeout: float = 10.0):
        self.transcript, self.leg, self.label, self.timeout = transcript, leg, label, timeout
        self.redactor = transcript.redactor()
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout, source_address=remote_source(host))
        except OSError as e:
            raise HarnessError(f"cannot connect to submission at {host}:{port}: {e}") from e
        self.buf = b""
        self.tls_version: str | None = None
        transcript.add(leg, "N", f"connected to {host}:{port}", conn=label)

    def send(self, data: bytes) -> None:
        self.transcript.add(self.leg, "C", self.redactor.client(printable(data)), len(data), conn=self.label)
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise ServerClosed(f"{self.label}: sending failed: {e}") from e

    def _fill(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ServerTimeout(f"{self.label}: no complete SMTP reply within the deadline")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError) as e:
            raise ServerTimeout(f"{self.label}: no complete SMTP reply within {left:.1f} s") from e
        except OSError as e:
            raise ServerClosed(f"{self.label}: read failed: {e}") from e
        if not data:
            self.transcript.add(self.leg, "N", "connection closed by peer (EOF)", conn=self.label)
            raise ServerClosed(f"{self.label}: server closed the connection")
        self.transcript.add(self.leg, "S", self.redactor.server(printable(data)), len(data), conn=self.label)
        self.buf += data

    def reply(self, timeout: float | None = None) -> SmtpReply:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        lines: list[str] = []
        while True:
            while b"\r\n" not in self.buf:
                self._fill(deadline)
            raw, _, self.buf = self.buf.partition(b"\r\n")
            line = raw.decode("utf-8", "replace")
            lines.append(line)
            if not re.match(r"^\d{3}[ -]", line + " "):
                return SmtpReply(0, lines)
            if len(line) < 4 or line[3] == " ":
                return SmtpReply(int(line[:3]), lines)

    def poll(self, timeout: float) -> SmtpReply | None:
        try:
            return self.reply(timeout)
        except ServerTimeout:
            return None

    def command(self, text: str) -> SmtpReply:
        self.send(text.encode() + b"\r\n")
        return self.reply()

    def starttls_handshake(self, context: ssl.SSLContext) -> None:
        self.sock.settimeout(self.timeout)
        try:
            self.sock = context.wrap_socket(self.sock, server_hostname="localhost")
        except (ssl.SSLError, OSError) as e:
            self.transcript.add(self.leg, "N", f"TLS handshake failed: {e}", conn=self.label)
            raise
        self.tls_version = self.sock.version()
        self.transcript.add(self.leg, "N", f"TLS established: {self.tls_version} {self.sock.cipher()[0]}",
                            conn=self.label)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def ehlo_keywords(reply: SmtpReply) -> set[str]:
    return {line[4:].split(" ")[0].upper() for line in reply.lines[1:] if len(line) > 4}


def received_tls_clause(message: bytes) -> tuple[str, str | None]:
    """(the first Received field unfolded, its 'tls <cipher suite>' clause or None)."""
    header = message.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    m = re.search(r"(?ims)^Received:(.*?)(?=^\S|\Z)", header + "\r\n")
    if not m:
        return "", None
    field = re.sub(r"\s+", " ", m.group(1)).strip()
    clause = re.search(r"\btls\s+([A-Z0-9_-]+)", field, re.I)
    return field, clause.group(1) if clause else None
