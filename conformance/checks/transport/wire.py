"""What the transport checks share: the raw SMTP client from a remote-looking address, TLS version probes.

The transport checks need exact segments (``STARTTLS\\r\\nNOOP\\r\\n`` in one write), pinned TLS versions and
handshakes whose failures are evidence; the clients for that live in ``conformance/protocols`` (``smtp``,
``tls``), re-exported here under the names the checks use.
"""

from __future__ import annotations

import re
import socket
import ssl
import tempfile
from pathlib import Path

from conformance.intermediaries.addons.strip_starttls import distinct_loopback
from conformance.protocols.smtp import SmtpConnection
from conformance.protocols.smtpwire import SmtpReply
from conformance.protocols.tls import GOOD_VERSIONS, OLD_VERSIONS, VERSIONS, pinned_context
from conformance.transcript import Transcript

__all__ = ["GOOD_VERSIONS", "OLD_VERSIONS", "VERSIONS", "SmtpLine", "SmtpReply", "client_can_offer", "ehlo_keywords",
           "pinned_context", "received_tls_clause", "remote_source"]


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


class SmtpLine(SmtpConnection):
    """The raw SMTP client of the transport checks: connects from a distinct loopback address (``remote_source``)."""

    def __init__(self, host: str, port: int, transcript: Transcript, leg: str, label: str, timeout: float = 10.0,
                 *, via: str | None = None) -> None:
        super().__init__(host, port, transcript, leg, label, timeout, source_address=remote_source(host), via=via)


def ehlo_keywords(reply: SmtpReply) -> set[str]:
    return reply.keywords()


def received_tls_clause(message: bytes) -> tuple[str, str | None]:
    """(the first Received field unfolded, its 'tls <cipher suite>' clause or None)."""
    header = message.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    m = re.search(r"(?ims)^Received:(.*?)(?=^\S|\Z)", header + "\r\n")
    if not m:
        return "", None
    field = re.sub(r"\s+", " ", m.group(1)).strip()
    clause = re.search(r"\btls\s+([A-Z0-9_-]+)", field, re.I)
    return field, clause.group(1) if clause else None
