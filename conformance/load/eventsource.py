"""A JMAP EventSource session of the load client (RFC 8620 7.3): one stream, timed state changes, /changes resync.

The JMAP counterpart of ``imap_idle.Session``, on the sans-IO readers (h11 for HTTP/1.1 framing, ``sse`` for
the event stream): it opens ``eventSourceUrl`` (types=Email, a ping interval for keepalives), takes each
``state`` event whose Email state differs from the one it knows as the notification of every change sent
before it and not yet notified (a server may coalesce several changes into one event), tracks silences, and
after a drop asks ``Email/changes`` since its last known state on a fresh connection (through the same path)
before streaming again: the changes appended since that state and missing from ``created`` are lost.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import h11

from ..protocols.sse import SseParser
from .session import PushSession, Resync
from .wire import Dropped, Octets, Refused, Stream, open_stream

if TYPE_CHECKING:
    from .engine import Engine

MAIL = "urn:ietf:params:jmap:mail"
CORE = "urn:ietf:params:jmap:core"
MAX_BODY = 4 << 20  # an API answer larger than this is not what a state query returns


@dataclass(frozen=True)
class JmapAccount:
    """What discovery found for one account (the direct Session resource): request targets, not full URLs, so the
    same requests go through the path's address."""

    username: str
    password: str = field(repr=False)
    account_id: str
    events_target: str  # path?query of eventSourceUrl (types=Email, closeafter=no, ping=...)
    api_target: str
    host: str  # the Host header: the target's own authority

    @property
    def auth(self) -> str:
        return "Basic " + base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


class HttpConnection(Stream):
    """One HTTP/1.1 connection (h11): a request, then the response head, body data as it arrives."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, octets: Octets) -> None:
        super().__init__(reader, writer, octets)
        self.h11 = h11.Connection(h11.CLIENT)
        self.eof = False

    @classmethod
    async def connect(cls, address: tuple[str, int], octets: Octets, timeout: float,
                      tls: ssl.SSLContext | None) -> "HttpConnection":
        return cls(*await open_stream(address, timeout, tls), octets)

    def send(self, event) -> None:
        data = self.h11.send(event)
        if data:
            self.write(data)

    async def next_event(self, timeout: float):
        """The next h11 event; None when nothing arrived within ``timeout``."""
        while True:
            try:
                ev = self.h11.next_event()
            except h11.RemoteProtocolError as e:
                raise Dropped("garbage", f"not HTTP/1.1: {e}") from e
            if ev is not h11.NEED_DATA:
                return ev
            if self.eof:
                raise Dropped("closed", "the peer closed the connection")
            try:
                data = await self.read_chunk(timeout)
            except Dropped as e:  # the end of the connection may also end a close-delimited body: h11 decides
                if e.how != "closed":
                    raise
                data, self.eof = b"", True
            if data is None:
                return None
            self.h11.receive_data(data)

    async def response(self, timeout: float) -> h11.Response:
        deadline = time.monotonic() + timeout
        while True:
            ev = await self.next_event(max(0.001, deadline - time.monotonic()))
            if ev is None:
                raise Dropped("silent", f"no response head within {timeout:.1f} s")
            if isinstance(ev, h11.Response):
                return ev
            if isinstance(ev, h11.ConnectionClosed):
                raise Dropped("closed", "closed before the response head")

    async def body(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        out = bytearray()
        while True:
            ev = await self.next_event(max(0.001, deadline - time.monotonic()))
            if ev is None:
                raise Dropped("silent", f"no complete response body within {timeout:.1f} s")
            if isinstance(ev, h11.Data):
                out += ev.data
                if len(out) > MAX_BODY:
                    raise Dropped("garbage", f"a response body over {MAX_BODY} octets")
            elif isinstance(ev, (h11.EndOfMessage, h11.ConnectionClosed)):
                return bytes(out)



@dataclass(kw_only=True)
class EventSourceSession(PushSession):
    """One JMAP push stream."""

    jmap: JmapAccount
    email_state: str = ""

    resync_method = "Email/changes"

    def headers(self, *extra: tuple[str, str]) -> list[tuple[str, str]]:
        return [("Host", self.jmap.host), ("Authorization", self.jmap.auth), *extra]

    async def api(self, engine: Engine, calls: list) -> list:
        """One API request on its own connection through the session's path; the method responses."""
        body = json.dumps({"using": [CORE, MAIL], "methodCalls": calls}).encode()
        conn = await HttpConnection.connect(self.address, self.octets, engine.plan.deadline_s, self.tls)
        try:
            conn.send(h11.Request(method="POST", target=self.jmap.api_target, headers=self.headers(
                ("Content-Type", "application/json"), ("Content-Length", str(len(body))), ("Connection", "close"))))
            conn.send(h11.Data(data=body))
            conn.send(h11.EndOfMessage())
            head = await conn.response(engine.plan.deadline_s)
            data = await conn.body(engine.plan.deadline_s)
        finally:
            conn.close()
        if head.status_code in (401, 403, 429, 503):
            raise Refused("api", f"HTTP {head.status_code} to an API request")
        if head.status_code != 200:
            raise Refused("api", f"HTTP {head.status_code}: {data[:200]!r}")
        try:
            return json.loads(data)["methodResponses"]
        except (ValueError, KeyError, TypeError) as e:
            raise Dropped("garbage", f"API answer is not a JMAP Response: {data[:200]!r}") from e

    async def start(self, engine: Engine, resync: Resync | None) -> None:
        if not self.email_state:
            await self._initial_state(engine)
        elif resync is not None:
            await self._resync(engine, resync)
        self.conn = await HttpConnection.connect(self.address, self.octets, engine.plan.deadline_s, self.tls)
        self.connects += 1
        await self._open_stream(self.conn, engine)

    async def listen(self, engine: Engine) -> None:
        await self._stream(self.conn, engine)

    async def _initial_state(self, engine: Engine) -> None:
        responses = await self.api(engine, [["Email/get", {"accountId": self.jmap.account_id, "ids": []}, "0"]])
        name, args = responses[0][0], responses[0][1]
        if name != "Email/get" or "state" not in args:
            raise Refused("api", f"Email/get answered {name} {str(args)[:200]}")
        self.email_state = str(args["state"])
        self.seen = self.mailbox.count

    async def _resync(self, engine: Engine, resync: Resync) -> None:
        """Email/changes since the last known state (all pages); changes appended since and not reported: lost."""
        known, created = self.seen, 0
        expected_by = len(self.mailbox.done_at)  # changes completed before the question was asked
        for _ in range(100):
            responses = await self.api(engine, [["Email/changes", {
                "accountId": self.jmap.account_id, "sinceState": self.email_state, "maxChanges": 500}, "0"]])
            name, args = responses[0][0], responses[0][1]
            if name != "Email/changes":
                raise Refused("changes", f"Email/changes answered {name} {str(args)[:200]}")
            created += len(args.get("created") or [])
            self.email_state = str(args.get("newState", self.email_state))
            if not args.get("hasMoreChanges"):
                break
        resync.learned = created
        missing = max(0, expected_by - known - created)
        resync.missing = list(range(known + 1, known + 1 + missing))[:20]
        self.seen = max(self.seen, known + created)

    async def _open_stream(self, conn: HttpConnection, engine: Engine) -> None:
        conn.send(h11.Request(method="GET", target=self.jmap.events_target, headers=self.headers(
            ("Accept", "text/event-stream"), ("Cache-Control", "no-cache"))))
        conn.send(h11.EndOfMessage())
        head = await conn.response(engine.plan.deadline_s)
        if head.status_code != 200:
            raise Refused("eventsource", f"HTTP {head.status_code} to GET eventSourceUrl")
        conn.last_rx, conn.max_gap = time.monotonic(), 0.0
        conn.measuring = not engine.changes_over
        self.parser = SseParser()

    async def _stream(self, conn: HttpConnection, engine: Engine) -> None:
        while not engine.stopping:
            ev = await conn.next_event(engine.plan.poll_s)
            if ev is None:
                silent = time.monotonic() - conn.last_rx
                if silent > engine.plan.dead_after_s:
                    raise Dropped("silent", f"nothing received for {silent:.1f} s while streaming")
                continue
            if isinstance(ev, (h11.EndOfMessage, h11.ConnectionClosed)):
                raise Dropped("closed", "the server ended the event stream")
            if isinstance(ev, h11.Data):
                for sse in self.parser.feed(bytes(ev.data)):
                    if sse.type == "state":
                        self._state_event(sse.data, engine)

    def _state_event(self, data: str, engine: Engine) -> None:
        try:
            changed: Any = json.loads(data).get("changed", {})
            new = str(changed.get(self.jmap.account_id, {}).get("Email", ""))
        except (ValueError, AttributeError):
            return
        if not new or new == self.email_state:
            return
        self.email_state = new
        now = time.monotonic()
        sent = self.mailbox.sent_at
        while self.seen < len(sent) and sent[self.seen] <= now:  # every change sent so far and not yet notified
            self.seen += 1
            self.timed(engine, self.seen, now)
