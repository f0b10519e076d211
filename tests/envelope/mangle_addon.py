"""Test-only intermediary that makes a correct IMAP server look wrong in one way, to prove the BINARY and UIDPLUS
checks catch it.

``mangle:mode=...`` on the server->client leg: ``eol`` CRLF to LF inside literals (a store that keeps LF and
forgets to convert), ``bodystructure`` a base64 part described as "binary", ``rfc2047`` the check's encoded-word
Subject decoded to raw UTF-8 inside literals, ``unknown-cte`` the UNKNOWN-CTE code replaced by another,
``disclose-uids`` APPENDUID/COPYUID added to the OK of every APPEND and COPY; on the client->server leg,
``uid-expunge`` turns ``UID EXPUNGE <set>`` into a plain ``EXPUNGE``. STARTTLS is hidden so the session stays
readable (the embedded Dovecot trusts its own address and still accepts the login). Importing this module registers
the intermediary; it is never part of the product.
"""

from __future__ import annotations

import re

from mitmproxy import tcp

from conformance.intermediaries.addons.common import add_options, check_options, shared, value
from conformance.intermediaries.addons.strip_starttls import strip_capabilities
from conformance.intermediaries.scenario import REGISTRY, Emulator, Param, register

from .rewrite_addon import LITERAL, rewrite_literals

MODES = ("eol", "bodystructure", "rfc2047", "unknown-cte", "disclose-uids", "uid-expunge")
MODE = Param("mode", str, "eol", "eol", "what to make wrong: " + ", ".join(MODES), choices=MODES, option="mangle_mode")
ENCODED = b"=?utf-8?q?caf=C3=A9_cr=C3=A8me?="
DECODED = "café crème".encode()


def replace_in_literals(data: bytes, old: bytes, new: bytes) -> tuple[bytes, int]:
    """``old`` replaced by ``new`` inside every complete literal of ``data``, literal sizes fixed (sans-IO)."""
    out, pos, count = bytearray(), 0, 0
    for m in LITERAL.finditer(data):
        if m.start() < pos:
            continue
        start, end = m.end(), m.end() + int(m.group(1))
        if end > len(data):
            break
        lit = data[start:end]
        changed = lit.replace(old, new)
        count += lit.count(old)
        out += data[pos:m.start()] + b"{%d}\r\n" % len(changed) + changed
        pos = end
    out += data[pos:]
    return bytes(out), count


def mangle_server(data: bytes, mode: str) -> tuple[bytes, str]:
    """What the server sent, changed as ``mode`` says; and a description of the change ('' when none)."""
    if mode == "eol":
        new, changes = rewrite_literals(data, "eol")
        return new, "; ".join(changes)
    if mode == "bodystructure" and b"BODYSTRUCTURE" in data.upper():
        new, n = re.subn(rb'"base64"', b'"binary"', data, flags=re.I)
        return new, f"described {n} base64 part(s) as binary in BODYSTRUCTURE" if n else ""
    if mode == "rfc2047":
        new, n = replace_in_literals(data, ENCODED, DECODED)
        return new, f"decoded {n} RFC 2047 encoded-word(s) to raw UTF-8 in literals" if n else ""
    if mode == "unknown-cte":
        new, n = re.subn(rb"\[UNKNOWN-CTE\]", b"[SERVERBUG]", data, flags=re.I)
        return new, f"replaced {n} UNKNOWN-CTE code(s) by SERVERBUG" if n else ""
    if mode == "disclose-uids":
        new, a = re.subn(rb"(?m)^(\S+) OK (Append completed)", rb"\1 OK [APPENDUID 1 4242] \2", data)
        new, c = re.subn(rb"(?m)^(\S+) OK (Copy completed)", rb"\1 OK [COPYUID 1 1 4242] \2", new)
        return new, f"added APPENDUID to {a} and COPYUID to {c} tagged OK(s)" if a or c else ""
    return data, ""


class Mangle:
    OPTIONS = (MODE,)

    def load(self, loader) -> None:
        add_options(loader, self.OPTIONS)

    def configure(self, updated) -> None:
        check_options(self.OPTIONS, updated)

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        m = flow.messages[-1]
        if not m.content:
            return
        s, mode = shared(), value(MODE)
        if m.from_client:
            if mode == "uid-expunge":
                new, n = re.subn(rb"(?m)^(\S+) UID EXPUNGE \S+\r\n", rb"\1 EXPUNGE\r\n", m.content, flags=re.I)
                if n:
                    s.record("mangle", f"client->server leg: UID EXPUNGE turned into EXPUNGE ({n})", s.label(flow))
                    m.content = new
            return
        content, hidden = strip_capabilities(m.content)
        if hidden:
            s.record("mangle", f"hid {' '.join(sorted(set(hidden)))} so the session stays in cleartext", s.label(flow))
        content, what = mangle_server(content, mode)
        if what:
            s.record("mangle", f"server->client leg: {what}", s.label(flow))
        m.content = content


if "mangle" not in REGISTRY:
    register(Emulator(
        name="mangle", path="tcp", addon=Mangle, endpoints=("imap",),
        summary="TEST ONLY: makes BINARY/UIDPLUS answers wrong in one way."))
