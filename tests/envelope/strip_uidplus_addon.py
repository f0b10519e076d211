"""Test-only intermediary: a server without UIDPLUS, made from one that has it.

``strip-uidplus`` removes UIDPLUS from every capability announcement and the [APPENDUID ...] and [COPYUID ...]
response codes from tagged answers on the server->client leg; STARTTLS is hidden as well so the session stays
readable to the intermediary (the embedded Dovecot trusts its own address and still accepts the login).
``strip-copyuid`` removes only the [COPYUID ...] codes (UIDPLUS still advertised: a server that forgets them).
``strip-literal-plus`` removes LITERAL+ (and LITERAL-) from every capability announcement instead: a server whose
clients must wait for '+' before each literal. Importing this module registers both intermediaries; they are
never part of the product.
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
_LITERAL_PLUS = re.compile(rb" LITERAL[+-](?=[ \]\r\n]|$)", re.I)


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


class StripFromServer:
    """The server->client leg with STARTTLS hidden (so the session stays readable) and one thing removed; subclasses
    name it (``name``) and remove it (``strip(content) -> (content, how many removed)``)."""

    name = ""
    what = ""

    def strip(self, content: bytes) -> tuple[bytes, int]:
        raise NotImplementedError

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        m = flow.messages[-1]
        if m.from_client or not m.content:
            return
        s = shared()
        content, hidden = strip_capabilities(m.content)
        content, removed = self.strip(content)
        if hidden or removed:
            s.record(self.name, f"server->client leg: removed {removed} {self.what}"
                     + (f", hid {' '.join(sorted(set(hidden)))}" if hidden else ""), s.label(flow))
        m.content = content


class StripUidplus(StripFromServer):
    name, what = "strip-uidplus", "UIDPLUS mention(s)"

    def strip(self, content: bytes) -> tuple[bytes, int]:
        return strip_uidplus(content)


_COPYUID = re.compile(rb"\[COPYUID [^\]\r\n]*\] ?", re.I)


class StripCopyuid(StripFromServer):
    name, what = "strip-copyuid", "[COPYUID] code(s)"

    def strip(self, content: bytes) -> tuple[bytes, int]:
        return _COPYUID.subn(b"", content)


class StripLiteralPlus(StripFromServer):
    name, what = "strip-literal-plus", "LITERAL+ mention(s)"

    def strip(self, content: bytes) -> tuple[bytes, int]:
        count = 0

        def caps(c: re.Match) -> bytes:
            nonlocal count
            new, n = _LITERAL_PLUS.subn(b"", c.group(0))
            count += n
            return new

        return _CAPS.sub(caps, content), count


for _name, _cls, _summary in (
        ("strip-uidplus", StripUidplus, "TEST ONLY: hides UIDPLUS, APPENDUID and COPYUID from the client."),
        ("strip-copyuid", StripCopyuid, "TEST ONLY: removes [COPYUID] from COPY and MOVE answers."),
        ("strip-literal-plus", StripLiteralPlus, "TEST ONLY: hides LITERAL+ from the client.")):
    if _name not in REGISTRY:
        register(Emulator(name=_name, path="tcp", addon=_cls, endpoints=("imap",), summary=_summary))
