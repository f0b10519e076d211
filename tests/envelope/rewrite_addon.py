"""Test-only intermediary that tampers with mail content, to prove the envelope checks detect it.

``rewrite:mode=eol`` turns CRLF into LF inside IMAP literals the server sends (fixing the literal's octet
count, as a line-ending-"normalising" gateway would); ``rewrite:mode=cte`` relabels
``Content-Transfer-Encoding: 7bit`` as ``8bit`` (same length); ``rewrite:mode=keywords`` drops the Lemonade
keyword $Submitted from the FLAGS of FETCH responses (a store that cannot keep it). STARTTLS is hidden from the client so the
session stays readable to the intermediary (the embedded Dovecot trusts its own address and still accepts the
login). Importing this module registers the intermediary; it is never part of the product.
"""

from __future__ import annotations

import re

from mitmproxy import tcp

from conformance.intermediaries.addons.common import add_options, check_options, shared, value
from conformance.intermediaries.addons.strip_starttls import strip_capabilities
from conformance.intermediaries.scenario import REGISTRY, Emulator, Param, register

MODE = Param("mode", str, "eol", "eol", "eol: CRLF to LF in server literals; cte: 7bit label to 8bit; "
             "keywords: $Submitted dropped from FETCH FLAGS", choices=("eol", "cte", "keywords"), option="rewrite_mode")

LITERAL = re.compile(rb"\{(\d+)\}\r\n")
SUBMITTED = re.compile(rb"(?m)(^\* \d+ FETCH \([^\r\n]*FLAGS \([^)\r\n]*?) ?\$Submitted")


def rewrite_literals(data: bytes, mode: str) -> tuple[bytes, list[str]]:
    """Rewrite every complete literal in ``data``; returns new data and what was changed (sans-IO)."""
    out, pos, changes = bytearray(), 0, []
    for m in LITERAL.finditer(data):
        if m.start() < pos:
            continue
        n = int(m.group(1))
        start, end = m.end(), m.end() + n
        if end > len(data):
            changes.append(f"literal of {n} octets split across segments: left alone")
            break
        lit = data[start:end]
        new = lit.replace(b"\r\n", b"\n") if mode == "eol" else lit.replace(
            b"Content-Transfer-Encoding: 7bit", b"Content-Transfer-Encoding: 8bit")
        out += data[pos:m.start()] + b"{%d}\r\n" % len(new) + new
        pos = end
        if new != lit:
            crlf, label = lit.count(b"\r\n"), lit.count(b"Content-Transfer-Encoding: 7bit")
            what = f"{crlf} CRLF turned into LF" if mode == "eol" else f"{label} 7bit labels turned into 8bit"
            changes.append(f"{what} in a {n}-octet literal from the server (now {len(new)} octets)")
    out += data[pos:]
    return bytes(out), changes


class Rewrite:
    OPTIONS = (MODE,)

    def load(self, loader) -> None:
        add_options(loader, self.OPTIONS)

    def configure(self, updated) -> None:
        check_options(self.OPTIONS, updated)

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        m = flow.messages[-1]
        if m.from_client or not m.content:
            return
        s = shared()
        content, removed = strip_capabilities(m.content)
        if removed:
            s.record("rewrite", f"hid {' '.join(sorted(set(removed)))} so the session stays in cleartext", s.label(flow))
        mode = value(MODE)
        if mode == "keywords":
            content, n = SUBMITTED.subn(rb"\1", content)
            changes = [f"dropped $Submitted from {n} FETCH FLAGS"] if n else []
        else:
            content, changes = rewrite_literals(content, mode)
        for c in changes:
            s.record("rewrite", f"server->client leg: {c}", s.label(flow))
        m.content = content


if "rewrite" not in REGISTRY:
    register(Emulator(
        name="rewrite", path="tcp", addon=Rewrite, endpoints=("imap",),
        summary="TEST ONLY: rewrites line endings or transfer-encoding labels in mail, or drops $Submitted."))
