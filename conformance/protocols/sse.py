"""Sans-IO parser for server-sent events (HTML Living Standard, "Server-sent events", event stream parsing).

Feed it body bytes as they arrive; it returns complete events (dispatched at a blank line) and comment lines.
Line ends may be CRLF, LF or CR; a leading UTF-8 BOM is dropped; an event still being built when the stream
ends is not dispatched (``pending`` tells whether one was left). Nothing here touches a socket.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
        self._buf = b""
        self._started = False
        self._cr_pending = False
        self._data: list[str] = []
        self._type = ""
        self._id: str | None = None
        self._retry: int | None = None
        self._raw = b""
        self._fields: list[tuple[str, str]] = []
        self.last_event_id = ""
        self.invalid_utf8 = False

    @property
    def pending(self) -> bool:
        """An event was being built (or a partial line buffered) and not yet dispatched."""
        return bool(self._buf or self._fields)

    def feed(self, data: bytes) -> list[SseEvent]:
        if not self._started and data:
            self._started = True
            if data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
        self._buf += data
        out: list[SseEvent] = []
        while True:
            if self._cr_pending and self._buf:
                if self._buf.startswith(b"\n"):  # the LF of a CRLF split across two reads
                    self._buf = self._buf[1:]
                self._cr_pending = False
            idx = [i for i in (self._buf.find(b"\r"), self._buf.find(b"\n")) if i >= 0]
            if not idx:
                break
            i = min(idx)
            line, sep = self._buf[:i], self._buf[i:i + 1]
            self._buf = self._buf[i + 1:]
            if sep == b"\r":
                if self._buf.startswith(b"\n"):
                    self._buf = self._buf[1:]
                    sep = b"\r\n"
                elif not self._buf:
                    self._cr_pending = True
            ev = self._line(line, line + sep)
            if ev:
                out.append(ev)
        return out

    def _line(self, line: bytes, raw: bytes) -> SseEvent | None:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self.invalid_utf8 = True
            text = line.decode("utf-8", errors="replace")
        if text == "":
            return self._dispatch(raw)
        self._raw += raw
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
        fields, event_raw = self._fields, self._raw + raw
        ev = None
        if self._data:
            ev = SseEvent(self._type or "message", "\n".join(self._data), self._id, self.last_event_id,
                          self._retry, event_raw, fields)
        elif fields:  # an event with no data is not dispatched, but its id still counts (done above)
            pass
        self._data, self._type, self._id, self._retry, self._raw, self._fields = [], "", None, None, b"", []
        return ev
