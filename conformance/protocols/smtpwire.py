"""SMTP reply reader, sans-IO: feed bytes, get complete replies (RFC 5321 4.2: single and multi-line).

A reply is one or more lines ``NNN-text`` ending with ``NNN text`` (or a bare ``NNN``); every line carries the
same code, whose first digit is 2 to 5. Lines end with CRLF (a bare LF is accepted, as smtplib does).

Bounds (a server that exceeds one gets ``ProtocolViolation`` or ``Flood``, never unbounded memory):
MAX_LINE octets in one line, MAX_REPLY_LINES lines and MAX_REPLY_OCTETS octets in one reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import Flood, ProtocolViolation

MAX_LINE = 64 << 10  # RFC 5321 4.5.3.1.5 allows 512 octets; far past that it is garbage
MAX_REPLY_LINES = 1000  # an EHLO reply has about twenty
MAX_REPLY_OCTETS = 256 << 10

_line = re.compile(r"^([2-5][0-9][0-9])(?:([ -])(.*))?$", re.S)


@dataclass
class SmtpReply:
    """One reply: its code and its lines as received ('250-PIPELINING', ..., '250 SMTPUTF8')."""

    code: int
    lines: list[str] = field(default_factory=list)
    raw: bytes = b""

    @property
    def text(self) -> str:
        return " | ".join(self.lines)

    @property
    def texts(self) -> list[str]:
        """The text of each line without its code and separator."""
        return [line[4:] for line in self.lines]

    @property
    def message(self) -> bytes:
        """The lines' texts joined by LF, as smtplib returns them."""
        return "\n".join(self.texts).encode("utf-8", "replace")

    def keywords(self) -> set[str]:
        """EHLO keywords (the first word of every line after the first), upper-cased."""
        return {t.split(" ")[0].upper() for t in self.texts[1:] if t}


class ReplyReader:
    """Sans-IO reader. ``feed(data)`` returns the replies completed by ``data``."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._lines: list[str] = []  # lines of the reply in progress
        self._raw = bytearray()
        self._code: str | None = None

    @property
    def pending(self) -> int:
        """Octets received that are not yet part of a complete reply."""
        return len(self._buf) + len(self._raw)

    def unparsed(self) -> bytes:
        """The octets received that are not yet part of a complete reply (left in the reader)."""
        return bytes(self._raw) + bytes(self._buf)

    def feed(self, data: bytes) -> list[SmtpReply]:
        self._buf += data
        out: list[SmtpReply] = []
        while True:
            idx = self._buf.find(b"\n")
            if idx < 0:
                if len(self._buf) > MAX_LINE:
                    raise ProtocolViolation(f"server sent {len(self._buf)} octets without a line end")
                break
            if idx > MAX_LINE:
                raise ProtocolViolation(f"server sent a reply line of {idx} octets (the bound is {MAX_LINE})")
            raw = bytes(self._buf[: idx + 1])
            del self._buf[: idx + 1]
            text = raw.rstrip(b"\n").rstrip(b"\r").decode("utf-8", "replace")
            m = _line.match(text)
            if not m:
                raise ProtocolViolation(f"reply line is not 'NNN text' with NNN from 200 to 599: {text[:120]!r}")
            if self._code is not None and m.group(1) != self._code:
                raise ProtocolViolation(f"multi-line reply mixes codes {self._code} and {m.group(1)}: {text[:120]!r}")
            self._code = m.group(1)
            self._lines.append(text)
            self._raw += raw
            if m.group(2) == "-":
                if len(self._lines) >= MAX_REPLY_LINES or len(self._raw) > MAX_REPLY_OCTETS:
                    raise Flood(f"flood: a multi-line {self._code} reply of {len(self._lines)} lines "
                                f"({len(self._raw)} octets) and no last line; the bound is {MAX_REPLY_LINES} lines "
                                f"or {MAX_REPLY_OCTETS} octets")
                continue
            out.append(SmtpReply(int(self._code), self._lines, bytes(self._raw)))
            self._lines, self._raw, self._code = [], bytearray(), None
        return out
