"""Test-only intermediary: a server without UIDPLUS, made from one that has it.

``strip-uidplus`` removes UIDPLUS from every capability announcement and the [APPENDUID ...] and [COPYUID ...]
response codes from tagged answers on the server->client leg; STARTTLS is hidden as well so the session stays
readable to the intermediary (the embedded Dovecot trusts its own address and still accepts the login).
Importing this module registers the intermediary; it is never part of the product.
"""

from __future__ import annotations

import re

from mitmproxy import tcp

from conformance.intermediaries.addons.common import shared
from conformance.intermediaries.addons.strip_starttls import strip_capabilities
from conformance.intermediaries.scenario import REGISTRY, Emulator, register

_CAPS = re.compile(rb"(\* CAPABILITY [^\r\n]*|\[CAPABILITY [^\]\r\n]*\])", re.I)
_UIDPLUS = re.compile(rb" UIDPLUS(?=[ \]\r\n]|$)", re.I)
_CODES = re.compile(rb"\[(?:APPENDUID|COPYUID) [^\]\r\n]*\] ?", re.I)


def strip_uidplus(data: bytes) -> tuple[bytes, int]:
    """``data`` without UIDPLUS in capabilities and without APPENDUID/COPYUID codes; how many were removed."""
    count = 0

    def caps(m: re.Match) -> bytes:
        nonlocal count
        new, n = _UIDPLUS.subn(b"", m.group(0))
        count += n
        return new

    out = _CAPS.sub(caps, data)
    out, n = _CODES.subn(b"", out)
    return out, count + n


class StripUidplus:
    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        m = flow.messages[-1]
        if m.from_client or not m.content:
            return
        s = shared()
        content, hidden = strip_capabilities(m.content)
        content, removed = strip_uidplus(content)
        if hidden or removed:
            s.record("strip-uidplus", f"server->client leg: removed {removed} UIDPLUS mention(s)"
                     + (f", hid {' '.join(sorted(set(hidden)))}" if hidden else ""), s.label(flow))
        m.content = content


if "strip-uidplus" not in REGISTRY:
    register(Emulator(
        name="strip-uidplus", path="tcp", addon=StripUidplus, endpoints=("imap",),
        summary="TEST ONLY: hides UIDPLUS, APPENDUID and COPYUID from the client."))
