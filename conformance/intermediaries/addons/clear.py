"""hide-compress: keeps a TLS-terminating relay's IMAP stream readable by hiding COMPRESS=DEFLATE (RFC 4978).

A relay that terminates a client's TLS so a check can read its commands (``NetworkPath.terminate_tls``) would
see only deflated octets once the client sent COMPRESS DEFLATE: this addon removes ``COMPRESS=...`` from the
server's ``* CAPABILITY`` lines and ``[CAPABILITY ...]`` response codes, so a client that follows RFC 4978 does
not compress. It changes nothing else; what it removed is an intermediary action in the transcript.
Alone: ``mitmdump --mode reverse:tls://127.0.0.1:993@10993 -s clear.py``.
"""

from __future__ import annotations

import re

from mitmproxy import tcp

from conformance.intermediaries.addons.common import RawTcp, shared

_IMAP_CAPS = re.compile(rb"(\* CAPABILITY [^\r\n]*|\[CAPABILITY [^\]\r\n]*\])", re.I)
_COMPRESS = re.compile(rb" COMPRESS=\S+?(?=[ \]\r\n]|$)", re.I)


def hide_compress(data: bytes) -> tuple[bytes, int]:
    """``data`` without COMPRESS=... in its capability lists, and how many were removed (sans-IO)."""
    removed = 0

    def strip(m: re.Match) -> bytes:
        nonlocal removed
        removed += len(_COMPRESS.findall(m.group(0)))
        return _COMPRESS.sub(b"", m.group(0))

    return _IMAP_CAPS.sub(strip, data), removed


class HideCompress:
    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        m = flow.messages[-1]
        if m.from_client or not m.content:
            return
        m.content, removed = hide_compress(m.content)
        if removed:
            s = shared()
            s.record("hide-compress", "removed COMPRESS=DEFLATE from the server's capabilities (the relay reads "
                                      "the client's commands in clear)", s.label(flow))


addons = [RawTcp(), HideCompress()]
