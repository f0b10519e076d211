"""JMAP over WebSocket (RFC 8887) on a captured connection: the upgrade, text frames, pings, with deadlines.

``JmapWebSocket`` speaks through wsproto (sans-IO) on a ``CapturedConnection``: every read has a deadline,
every frame lands in the transcript, invalid frames are ``ProtocolViolation``.

Bounds (past one, ``Flood``): MAX_MESSAGE octets of one message across its fragments (a frame header that
announces 2^63 octets is read as it arrives and stopped here), MAX_FRAGMENTS frames of one message,
FLOOD_MESSAGES messages while the client waits without sending (``skipped`` keeps the last SKIPPED_KEPT).
"""

from __future__ import annotations

import json
import socket
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)

from ..errors import Flood, ProtocolViolation, ServerClosed, ServerTimeout
from ..transcript import Transcript, printable
from .connection import CapturedConnection, FloodGuard, scrub_faults

MAX_MESSAGE = 16 << 20
MAX_FRAGMENTS = 10_000
FLOOD_MESSAGES = 10_000
FLOOD_OCTETS = 64 << 20
SKIPPED_KEPT = 1000


@dataclass
class WsMessage:
    """One message as received, with its time on the transcript clock."""

    t: float
    kind: str  # "text", "bytes", "pong", "ping", "close"
    data: Any = None
    json: Any = None
    fragments: int = 1


class WsReader:
    """Sans-IO WebSocket client (wsproto underneath) with bounds: ``request(...)`` gives the upgrade request,
    ``feed(data)`` (``None`` at EOF) the messages that data completes; answers the peer is owed (pongs) wait in
    ``outgoing``. Invalid frames are ``ProtocolViolation``, messages past the bounds ``Flood``."""

    def __init__(self) -> None:
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.accepted: AcceptConnection | None = None
        self.rejected: RejectConnection | None = None
        self.outgoing: list[tuple[bytes, str]] = []  # (octets, transcript text) to send
        self._parts: list[bytes] = []
        self._size = 0
        self._frames = 0

    @property
    def message_octets(self) -> int:
        """Octets of the message being received (its frames so far): at most MAX_MESSAGE."""
        return self._size

    def request(self, host: str, target: str, subprotocols: list[str], headers: list[tuple[str, str]]) -> bytes:
        return self.ws.send(Request(host=host, target=target, subprotocols=subprotocols, extra_headers=headers))

    def send(self, event: Any) -> bytes:
        return self.ws.send(event)

    def feed(self, data: bytes | None) -> list[WsMessage]:
        out: list[WsMessage] = []
        try:
            self.ws.receive_data(data)
            for ev in self.ws.events():
                if (isinstance(ev, CloseConnection) and data is not None
                        and self.ws.state in (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING)):
                    # wsproto reports a frame it cannot parse as a close of its own; a close frame from the peer
                    # moves the state on
                    raise ProtocolViolation(f"invalid WebSocket data from the server: {ev.reason} ({ev.code})")
                msg = self._take(ev)
                if msg is not None:
                    out.append(msg)
        except (ProtocolViolation, Flood):
            raise
        except Exception as e:  # noqa: BLE001 - wsproto and h11 raise their own types on invalid input
            raise ProtocolViolation(f"invalid WebSocket data from the server: {type(e).__name__}: {e}") from e
        return out

    def _grow(self, octets: int) -> None:
        self._frames += 1
        self._size += octets
        if self._size > MAX_MESSAGE or self._frames > MAX_FRAGMENTS:
            raise Flood(f"flood: a WebSocket message of {self._frames} frames ({self._size} octets) and no end; "
                        f"the bound is {MAX_MESSAGE} octets or {MAX_FRAGMENTS} frames")

    def _take(self, ev: Any) -> WsMessage | None:
        if isinstance(ev, AcceptConnection):
            self.accepted = ev
        elif isinstance(ev, RejectConnection):
            self.rejected = ev
        elif isinstance(ev, (TextMessage, BytesMessage)):
            data = ev.data.encode() if isinstance(ev, TextMessage) else bytes(ev.data)
            self._grow(len(data))
            self._parts.append(data)
            if ev.message_finished:
                whole, frames = b"".join(self._parts), self._frames
                self._parts, self._size, self._frames = [], 0, 0
                if isinstance(ev, BytesMessage):
                    return WsMessage(0.0, "bytes", whole, None, frames)
                text = whole.decode("utf-8")  # wsproto validated the UTF-8 of text frames
                try:
                    obj = json.loads(text)
                except (ValueError, RecursionError):
                    obj = None
                return WsMessage(0.0, "text", text, obj, frames)
        elif isinstance(ev, Pong):
            return WsMessage(0.0, "pong", bytes(ev.payload))
        elif isinstance(ev, Ping):
            self.outgoing.append((self.ws.send(ev.response()), f"[pong] {bytes(ev.payload)!r}"))
            return WsMessage(0.0, "ping", bytes(ev.payload))
        elif isinstance(ev, CloseConnection):
            return WsMessage(0.0, "close", (ev.code, ev.reason))
        return None  # RejectData: the body of a refused upgrade


@scrub_faults
class JmapWebSocket:
    """A WebSocket client connection; ``handshake()`` upgrades, ``recv``/``recv_json`` read with deadlines."""

    def __init__(self, sock: socket.socket | CapturedConnection, host: str, target: str, auth: str | None,
                 transcript: Transcript, label: str = "ws", leg: str = "direct",
                 subprotocols: list[str] | None = None) -> None:
        self.conn = sock if isinstance(sock, CapturedConnection) else CapturedConnection(
            sock, transcript=transcript, label=label, leg=leg)
        self.conn.guard = FloodGuard("messages", FLOOD_MESSAGES, FLOOD_OCTETS)
        self.host, self.target, self.auth = host, target, auth
        self.transcript = transcript
        self.label = self.conn.label
        self.subprotocols = ["jmap"] if subprotocols is None else subprotocols
        self.reader = WsReader()
        self.inbox: deque[WsMessage] = deque()
        self.skipped: deque[WsMessage] = deque(maxlen=SKIPPED_KEPT)
        self.closed = False

    sock = property(lambda self: self.conn.sock)
    ws = property(lambda self: self.reader.ws)
    accepted = property(lambda self: self.reader.accepted)
    rejected = property(lambda self: self.reader.rejected)

    def handshake(self, timeout: float = 10.0) -> Any:
        extra = [("Authorization", self.auth)] if self.auth else []
        self.conn.send(self.reader.request(self.host, self.target, self.subprotocols, extra))
        deadline = time.monotonic() + timeout
        while self.accepted is None and self.rejected is None:
            if self.closed:
                raise ServerClosed(f"{self.label}: connection closed before the WebSocket handshake answer")
            try:
                self._read(deadline, "to the WebSocket upgrade request")
            except ServerTimeout as e:
                raise ServerTimeout(f"{self.label}: no WebSocket handshake answer within {timeout:.1f} s") from e
        return self.accepted or self.rejected

    def _read(self, deadline: float, waiting_for: str = "on the WebSocket") -> int:
        """Read once, queue the messages it completes in ``inbox``; how many. ServerTimeout when nothing came."""
        try:
            data: bytes | None = self.conn.recv(deadline, waiting_for)
        except ServerClosed:
            data = None
            self.closed = True
            self.transcript.add(self.conn.leg, "S", "[connection closed]", 0, self.label)
        if data and self.accepted is None and self.rejected is None:
            self.conn.record_server(data)
        try:
            messages = self.reader.feed(data)
        except ProtocolViolation as e:
            if data and (self.accepted is not None or self.rejected is not None):
                self.conn.record_server(data)  # the evidence: what did not parse
            raise type(e)(f"{self.label}: {e}") from e
        now, leg = self.transcript.now(), self.conn.leg
        for msg in messages:
            msg.t = now
            if msg.kind == "text":
                self.transcript.add(leg, "S", f"[text] {printable(msg.data.encode(), 1500)}", len(msg.data.encode()),
                                    self.label)
            elif msg.kind == "bytes":
                self.transcript.add(leg, "S", f"[binary] {len(msg.data)} octets", len(msg.data), self.label)
            elif msg.kind in ("pong", "ping"):
                self.transcript.add(leg, "S", f"[{msg.kind}] {msg.data!r}", len(msg.data), self.label)
            elif msg.kind == "close":
                self.transcript.add(leg, "S", f"[close] {msg.data[0]} {msg.data[1]}", 0, self.label)
                self.closed = True
            if msg.kind != "ping":
                self.inbox.append(msg)
        while self.reader.outgoing:
            octets, text = self.reader.outgoing.pop(0)
            self.conn.send(octets, text=text)
        if self.conn.guard is not None and data:
            self.conn.guard.count(len(messages), len(data), self.label, waiting_for)
        return len(messages)

    def send_text(self, text: str, fragments: int = 1) -> None:
        if fragments <= 1:
            self.conn.send(self.reader.send(TextMessage(data=text)), text=f"[text] {printable(text.encode(), 1500)}")
            return
        step = max(1, len(text) // fragments)
        parts = [text[i:i + step] for i in range(0, len(text), step)]
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            self.conn.send(self.reader.send(TextMessage(data=part, message_finished=last)),
                           text=f"[text fragment {i + 1}/{len(parts)}] {printable(part.encode(), 600)}")

    def send_json(self, obj: Any) -> None:
        self.send_text(json.dumps(obj))

    def ping(self, payload: bytes) -> None:
        self.conn.send(self.reader.send(Ping(payload=payload)), text=f"[ping] {payload!r}")

    def recv(self, timeout: float) -> WsMessage | None:
        """The next message within ``timeout`` seconds; None when nothing came (or the connection is closed)."""
        deadline = time.monotonic() + timeout
        while not self.inbox and not self.closed and time.monotonic() < deadline:
            try:
                self._read(deadline)
            except ServerTimeout:
                break
        return self.inbox.popleft() if self.inbox else None

    def recv_json(self, timeout: float, want=lambda obj: True) -> WsMessage | None:
        """The next text message whose JSON satisfies ``want`` (others are kept in ``skipped``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.recv(deadline - time.monotonic())
            if msg is None:
                return None
            if msg.kind == "text" and want(msg.json):
                return msg
            self.skipped.append(msg)
            if msg.kind == "close":
                return None
        return None

    def close(self) -> None:
        try:
            if not self.closed and self.accepted is not None and not self.conn.closed:
                self.conn.send(self.reader.send(CloseConnection(code=1000)), text="[close] 1000")
        except Exception:  # noqa: BLE001 - closing is a courtesy
            pass
        self.conn.close()
