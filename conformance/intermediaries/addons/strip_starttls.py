"""strip-starttls: an active attacker on the path that hides STARTTLS (and LOGINDISABLED) from the client.

It rewrites the server's cleartext capability announcements: IMAP ``* CAPABILITY`` lines and ``[CAPABILITY ...]``
response codes lose STARTTLS and LOGINDISABLED, and SMTP EHLO replies lose their ``250-STARTTLS`` line. A
client that trusts them sends credentials in cleartext; a server that knows the connection is cleartext must
still refuse them. Once a connection carries TLS (implicit, or a STARTTLS the client sent anyway) it is left
alone. Its upstream connections leave from a loopback address other than the server's when the server is on
loopback (``distinct_loopback``): servers such as Dovecot treat a peer with their own address as a secured
local client and would otherwise accept cleartext logins no remote client ever could.
Alone: ``mitmdump --mode reverse:tcp://127.0.0.1:143@10143 -s strip_starttls.py``.
"""

from __future__ import annotations

import ipaddress
import re

from mitmproxy import tcp
from mitmproxy.proxy import server_hooks

from conformance.intermediaries.addons.common import RawTcp, shared
from conformance.intermediaries.scenario import Emulator

_IMAP_CAPS = re.compile(rb"(\* CAPABILITY [^\r\n]*|\[CAPABILITY [^\]\r\n]*\])", re.I)
_IMAP_STRIP = re.compile(rb" (STARTTLS|LOGINDISABLED)(?=[ \]\r\n]|$)", re.I)
_SMTP_STRIP = re.compile(rb"^250[- ]STARTTLS\r\n", re.I | re.M)
TLS_HANDSHAKE = 0x16


def distinct_loopback(host: str) -> str | None:
    """A local source address on loopback that differs from ``host``; None when ``host`` is not IPv4 loopback."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version != 4 or not ip.is_loopback:
        return None
    return "127.0.0.3" if host == "127.0.0.2" else "127.0.0.2"


def strip_capabilities(data: bytes) -> tuple[bytes, list[str]]:
    """Remove STARTTLS/LOGINDISABLED from IMAP capability data and STARTTLS from an EHLO reply (sans-IO)."""
    removed: list[str] = []

    def imap(m: re.Match) -> bytes:
        words = [w.decode().upper() for w in _IMAP_STRIP.findall(m.group(0))]
        removed.extend(words)
        return _IMAP_STRIP.sub(b"", m.group(0))

    out = _IMAP_CAPS.sub(imap, data)
    if _SMTP_STRIP.search(out):
        removed.append("STARTTLS")
        out = _SMTP_STRIP.sub(b"", out)
        # the last line of a multi-line reply must stay '250 ': fix it if STARTTLS was the last line
        if out.endswith(b"\r\n") and not re.search(rb"^250 ", out, re.M) and re.search(rb"^250-", out, re.M):
            lines = out.split(b"\r\n")
            last = max(i for i, line in enumerate(lines) if line.startswith(b"250-"))
            lines[last] = b"250 " + lines[last][4:]
            out = b"\r\n".join(lines)
    return out, removed


class StripStarttls:
    def __init__(self) -> None:
        self.tls: set[str] = set()  # client connection ids that carry TLS: never touched

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        if data.server.sockname is None and data.server.address:
            source = distinct_loopback(data.server.address[0])
            if source:
                data.server.sockname = (source, 0)

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        m = flow.messages[-1]
        cid = flow.client_conn.id
        if cid in self.tls or not m.content:
            return
        if m.from_client:
            if m.content[0] == TLS_HANDSHAKE or re.search(rb"(^|\s)STARTTLS\r\n", m.content, re.I):
                self.tls.add(cid)
            return
        new, removed = strip_capabilities(m.content)
        if removed:
            m.content = new
            s = shared()
            s.record("strip-starttls", f"removed {' '.join(sorted(set(removed)))} from the server's capability "
                                       "announcement before it reached the client", s.label(flow))

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        self.tls.discard(flow.client_conn.id)

    tcp_error = tcp_end


SCENARIO = Emulator(
    name="strip-starttls", path="tcp", addon=StripStarttls, endpoints=("imap", "submission"),
    summary="Active attacker that removes STARTTLS and LOGINDISABLED from cleartext capability lists and EHLO replies.")
addons = [RawTcp(), StripStarttls()]
