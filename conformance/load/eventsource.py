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
import random
import ssl
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import h11

from ..protocols.sse import SseParser
from .imap_idle import MAX_ERRORS, PHASES, MailboxLog, Resync
from .wire import Dropped, Octets, Refused

if TYPE_CHECKING:
    from .engine import Engine

MAIL = "urn:ietf:params:jmap:mail"
CORE = "urn:ietf:params:jmap:core"
READ_SIZE = 65536
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


class HttpConnection:
    """One HTTP/1.1 connection (h11): a request, then the response head, body data as it arrives."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, octets: Octets) -> None:
        self.reader, self.writer, self.octets = reader, writer, octets
        self.h11 = h11.Connection(h11.CLIENT)
        self.last_rx = time.monotonic()
        self.max_gap = 0.0
        self.measuring = True

    @classmethod
    async def connect(cls, address: tuple[str, int], octets: Octets, timeout: float,
                      tls: ssl.SSLContext | None) -> "HttpConnection":
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(*address, ssl=tls, limit=1 << 20,
                                                               server_hostname=address[0] if tls else None)
        except ConnectionRefusedError as e:
            raise Refused("connect", f"{address[0]}:{address[1]} refused the connection") from e
        except (OSError, TimeoutError) as e:
            raise Dropped("connect", f"{address[0]}:{address[1]}: {e or 'timed out'}") from e
        return cls(reader, writer, octets)

    def send(self, event) -> None:
        data = self.h11.send(event)
        if data:
            self.writer.write(data)
            self.octets.sent += len(data)

    async def next_event(self, timeout: float):
        """The next h11 event; None when nothing arrived within ``timeout``."""
        while True:
            try:
                ev = self.h11.next_event()
            except h11.RemoteProtocolError as e:
                raise Dropped("garbage", f"not HTTP/1.1: {e}") from e
            if ev is not h11.NEED_DATA:
                return ev
            try:
                async with asyncio.timeout(timeout):
                    data = await self.reader.read(READ_SIZE)
            except TimeoutError:
                return None
            except (ConnectionError, OSError) as e:
                raise Dropped("reset", str(e) or type(e).__name__) from e
            now = time.monotonic()
            if self.measuring:
                self.max_gap = max(self.max_gap, now - self.last_rx)
            self.last_rx = now
            self.octets.received += len(data)
            self.h11.receive_data(data)
            if not data:
                raise Dropped("closed", "the peer closed the connection")

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

    def close(self) -> None:
        try:
            self.writer.close()
        except (OSError, RuntimeError):
            pass


@dataclass
class EventSourceSession:
    """One push stream (``group`` path or control) and what it measured; the fields the engine reads are those of
    ``imap_idle.Session``."""

    sid: int
    group: str
    account: str
    jmap: JmapAccount
    mailbox: MailboxLog
    address: tuple[str, int]
    tls: ssl.SSLContext | None = None
    octets: Octets = field(default_factory=Octets)
    state: str = "new"
    seen: int = 0  # changes notified (or resynchronised) so far
    email_state: str = ""
    latencies: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PHASES})
    max_gap_s: float = 0.0
    connects: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    storm_drops: int = 0
    silent_noticed: int = 0
    refusals: dict[str, int] = field(default_factory=dict)
    storm_refusals: dict[str, int] = field(default_factory=dict)
    storm_failures: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    resyncs: list[Resync] = field(default_factory=list)
    first_idle_at: float = 0.0
    conn: HttpConnection | None = field(default=None, repr=False)

    def error(self, text: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(text[:300])

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

    async def run(self, engine: Engine) -> None:
        backoff = 0.0
        resync: Resync | None = None
        while not engine.stopping:
            if backoff:
                await asyncio.sleep(backoff)
            self.state = "connecting"
            before = self.octets.total
            try:
                if not self.email_state:
                    await self._initial_state(engine)
                elif resync is not None:
                    await self._resync(engine, resync)
                conn = self.conn = await HttpConnection.connect(self.address, self.octets, engine.plan.deadline_s,
                                                                self.tls)
                self.connects += 1
                await self._open_stream(conn, engine)
                if resync is not None:
                    resync.octets += self.octets.total - before
                    resync.idle_at = time.monotonic()
                    self.resyncs.append(resync)
                    resync = None
                if not self.first_idle_at:
                    self.first_idle_at = time.monotonic()
                backoff = 0.0
                self.state = "idle"
                await self._stream(conn, engine)
            except Refused as e:
                counts = self.storm_refusals if engine.in_storm(time.monotonic(), self.group) else self.refusals
                counts[e.kind] = counts.get(e.kind, 0) + 1
                self.error(str(e))
                backoff = min(2.0, max(0.05, backoff * 2)) * (0.5 + random.random())
                if resync is not None:
                    self.storm_failures[e.kind] = self.storm_failures.get(e.kind, 0) + 1
                    resync.attempts += 1
            except Dropped as e:
                if engine.stopping:
                    break
                now = time.monotonic()
                if resync is not None:
                    self.storm_failures[e.how] = self.storm_failures.get(e.how, 0) + 1
                    resync.attempts += 1
                    resync.octets += self.octets.total - before
                else:
                    resync = Resync(dropped_at=now, method="Email/changes")
                if engine.in_storm(now, self.group):
                    self.storm_drops += 1
                else:
                    self.drops[e.how] = self.drops.get(e.how, 0) + 1
                    if e.how == "silent":
                        self.silent_noticed += 1
                    self.error(f"dropped ({e}) at {now - engine.t0:.2f} s")
                backoff = engine.plan.reconnect_jitter_s * random.random()
            except Exception as e:  # noqa: BLE001 - a session's own fault ends only this session, with the reason
                self.error(f"session failed: {type(e).__name__}: {e}")
                self.state = "stopped"
                return
            finally:
                if self.conn is not None:
                    self.max_gap_s = max(self.max_gap_s, self.conn.max_gap)
                    self.conn.close()
                    self.conn = None
            self.state = "down"
        self.state = "stopped"

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
            self.latencies[engine.phase_of(sent[self.seen])].append(now - sent[self.seen])
            self.seen += 1
