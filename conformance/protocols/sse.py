"""Sans-IO parser for server-sent events (HTML Living Standard, "Server-sent events", event stream parsing).

Feed it body bytes as they arrive; it returns complete events (dispatched at a blank line) and comment lines.
Line ends may be CRLF, LF or CR; a leading UTF-8 BOM is dropped; an event still being built when the stream
ends is not dispatched (``pending`` tells whether one was left). Nothing here touches a socket.

Bounds (past one, ``Flood``): MAX_LINE octets of a line without its end, MAX_EVENT octets of the lines of one
event before the blank line that dispatches it (each line charged LINE_OVERHEAD more for its bookkeeping).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import Flood

MAX_LINE = 1 << 20
MAX_EVENT = 4 << 20
LINE_OVERHEAD = 64
_eol = re.compile(rb"\r\n|\r|\n")


@dataclass
class SseEvent:
    type: str  # "message" when no event field was given; "comment" for a comment line
    data: str
    id: str | None  # the id field of this event (None when the event had none)
    last_event_id: str  # the stream's last event id after this event (what a client would resume with)
    retry: int | None = None
    raw: bytes = b""
    fields: list[tuple[str, str]] = field(default_factory=list)


class SseParser:
    def __init__(self) -> None:
        self._buf = bytearray()
        self._started = False
        self._cr_pending = False
        self._data: list[str] = []
        self._type = ""
        self._id: str | None = None
        self._retry: int | None = None
        self._raw: list[bytes] = []
        self._fields: list[tuple[str, str]] = []
        self._octets = 0  # charged to the event being built
        self.last_event_id = ""
        self.invalid_utf8 = False

    @property
    def pending(self) -> bool:
        """An event was being built (or a partial line buffered) and not yet dispatched."""
        return bool(self._buf or self._fields)

    @property
    def held(self) -> tuple[int, int]:
        """(octets of a line without its end, octets charged to the event being built): within the bounds."""
        return len(self._buf), self._octets

    def feed(self, data: bytes) -> list[SseEvent]:
        if not self._started and data:
            self._started = True
            if data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
        scanned = len(self._buf)  # what the buffer held has no line end in it
        self._buf += data
        out: list[SseEvent] = []
        pos = 0
        if self._cr_pending and self._buf:
            if self._buf[:1] == b"\n":  # the LF of a CRLF split across two reads
                pos = 1
            self._cr_pending = False
        while True:
            m = _eol.search(self._buf, max(pos, scanned))
            if not m:
                break
            if m.group() == b"\r" and m.end() == len(self._buf):
                self._cr_pending = True
            line, raw = bytes(self._buf[pos:m.start()]), bytes(self._buf[pos:m.end()])
            pos = m.end()
            ev = self._line(line, raw)
            if ev:
                out.append(ev)
        del self._buf[:pos]
        if len(self._buf) > MAX_LINE:
            raise Flood(f"flood: {len(self._buf)} octets of the event stream without an end of line "
                        f"(the bound is {MAX_LINE})")
        return out

    def _line(self, line: bytes, raw: bytes) -> SseEvent | None:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self.invalid_utf8 = True
            text = line.decode("utf-8", errors="replace")
        if text == "":
            return self._dispatch(raw)
        self._octets += len(raw) + LINE_OVERHEAD
        if self._octets > MAX_EVENT:
            raise Flood(f"flood: an event of {len(self._fields)} lines ({self._octets} octets) and no blank line "
                        f"to end it (the bound is {MAX_EVENT} octets)")
        self._raw.append(raw)
        if text.startswith(":"):
            return SseEvent("comment", text[1:].lstrip(" "), None, self.last_event_id, raw=raw)
        name, _, value = text.partition(":")
        if value.startswith(" "):
            value = value[1:]
        self._fields.append((name, value))
        if name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self._id = value
                self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self, raw: bytes) -> SseEvent | None:
        fields, event_raw = self._fields, b"".join(self._raw) + raw
        ev = None
        if self._data:
            ev = SseEvent(self._type or "message", "\n".join(self._data), self._id, self.last_event_id,
                          self._retry, event_raw, fields)
        elif fields:  # an event with no data is not dispatched, but its id still counts (done above)
            pass
        self._data, self._type, self._id, self._retry, self._raw, self._fields = [], "", None, None, [], []
        self._octets = 0
        return ev
