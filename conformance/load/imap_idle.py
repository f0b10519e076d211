"""An IMAP IDLE session of the load client: log in, select with QRESYNC, idle, time every EXISTS, resync after a drop.

A session behaves like a phone's push channel: it idles on one mailbox, takes every ``* n EXISTS`` as a
notification (timed against the moment the change-maker sent the APPEND that made message n), tracks how long
the line stays silent (keepalive gaps), declares the connection dead after ``dead_after`` seconds of silence
(a silent drop noticed), and reconnects at once after a drop, resynchronising with QRESYNC (RFC 7162) from
the UIDVALIDITY/HIGHESTMODSEQ of its previous SELECT. The resync must report every message appended since
(UIDs at or above the previous UIDNEXT): one it does not report is a change lost.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..protocols.imapwire import parse_capabilities, parse_exists, parse_fetch, quote, response_code
from .wire import AsyncImap, Dropped, Octets, Refused

if TYPE_CHECKING:
    from .engine import Engine

MAX_ERRORS = 3  # messages kept per session (the counts are complete)
PHASES = ("before", "storm", "after")  # when a timed change was made, relative to the reconnect storm


@dataclass
class MailboxLog:
    """What the change-maker did to one mailbox: message k (1-based) was sent at ``sent_at[k-1]``, has UID
    ``uids[k-1]`` (0 when the server gave no APPENDUID)."""

    account: str
    name: str
    sent_at: list[float] = field(default_factory=list)
    done_at: list[float] = field(default_factory=list)
    uids: list[int] = field(default_factory=list)
    failures: int = 0

    @property
    def count(self) -> int:
        return len(self.done_at)


@dataclass
class Resync:
    """One reconnection: from the drop to idling again."""

    dropped_at: float
    idle_at: float = 0.0
    octets: int = 0
    attempts: int = 0
    learned: int = 0  # messages the resync reported
    missing: list[int] = field(default_factory=list)  # UIDs appended since the last SELECT it did not report
    method: str = "qresync"


@dataclass
class Session:
    """One push session (``group`` path or control) and everything it measured."""

    sid: int
    group: str
    account: str
    password: str = field(repr=False)
    mailbox: MailboxLog
    address: tuple[str, int]
    tls: ssl.SSLContext | None = None
    octets: Octets = field(default_factory=Octets)
    state: str = "new"  # new, connecting, idle, down, stopped
    seen: int = 0  # the highest message count the session knows
    latencies: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PHASES})
    max_gap_s: float = 0.0
    connects: int = 0
    drops: dict[str, int] = field(default_factory=dict)  # how -> count, outside a storm
    storm_drops: int = 0
    silent_noticed: int = 0
    refusals: dict[str, int] = field(default_factory=dict)
    storm_refusals: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    resyncs: list[Resync] = field(default_factory=list)
    uidvalidity: int = 0
    highestmodseq: int = 0
    uidnext: int = 0
    qresync: bool = False
    first_idle_at: float = 0.0
    conn: AsyncImap | None = field(default=None, repr=False)
    storm_failures: dict[str, int] = field(default_factory=dict)  # reconnect attempts that failed, by how

    def error(self, text: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(text[:300])

    async def run(self, engine: Engine) -> None:
        """Connect, idle, and reconnect after every drop until the engine stops; never raises."""
        backoff = 0.0
        resync: Resync | None = None
        while not engine.stopping:
            if backoff:
                await asyncio.sleep(backoff)
            conn = None
            self.state = "connecting"
            before = self.octets.total
            try:
                conn = self.conn = await AsyncImap.connect(*self.address, self.octets, engine.plan.deadline_s,
                                                           self.tls, server_hostname=self.address[0])
                self.connects += 1
                await self._open(conn, engine, resync)
                if resync is not None:
                    resync.octets += self.octets.total - before
                    resync.idle_at = time.monotonic()
                    self.resyncs.append(resync)
                    resync = None
                if not self.first_idle_at:
                    self.first_idle_at = time.monotonic()
                backoff = 0.0
                self.state = "idle"
                await self._idle(conn, engine)
            except Refused as e:
                counts = self.storm_refusals if engine.in_storm(time.monotonic(), self.group) else self.refusals
                counts[e.kind] = counts.get(e.kind, 0) + 1
                self.error(str(e))
                backoff = min(2.0, max(0.05, backoff * 2)) * (0.5 + random.random())
                if resync is not None:
                    self.storm_failures[e.kind] = self.storm_failures.get(e.kind, 0) + 1
                    resync.attempts += 1
                    resync.octets += self.octets.total - before
            except Dropped as e:
                if engine.stopping:
                    break
                now = time.monotonic()
                if resync is not None:  # dropped again while reconnecting
                    self.storm_failures[e.how] = self.storm_failures.get(e.how, 0) + 1
                    resync.attempts += 1
                    resync.octets += self.octets.total - before
                else:
                    resync = Resync(dropped_at=now)
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
                if conn is not None:
                    self.max_gap_s = max(self.max_gap_s, conn.max_gap)
                    conn.close()
                    self.conn = None
            self.state = "down"
        self.state = "stopped"

    async def _open(self, conn: AsyncImap, engine: Engine, resync: Resync | None) -> None:
        deadline = engine.plan.deadline_s
        greeting = await conn.next_response(deadline)
        if greeting.status == "BYE":
            raise Refused("greeting", greeting.first_line[:200])
        caps = parse_capabilities(greeting.first_line)
        login = await conn.login(self.account, self.password, deadline)
        if login.status != "OK":
            raise Refused("login", login.tagged.first_line[:200].replace(self.password, "***"))
        caps = parse_capabilities(login.tagged.first_line) or caps
        if "IMAP4REV1" not in caps:  # no capability list after LOGIN: ask
            r = await conn.command("CAPABILITY", deadline)
            caps = parse_capabilities("\r\n".join(u.first_line for u in r.untagged))
        self.qresync = "QRESYNC" in caps
        if self.qresync:
            await conn.command("ENABLE QRESYNC", deadline)
        await self._select(conn, engine, resync)
        conn.send(b"L0 IDLE\r\n")
        while True:
            r = await conn.next_response(deadline)
            if r.is_continuation:
                break
            if r.tag == "L0":
                raise Refused("idle", r.first_line[:200])
            self._untagged(r, engine, notify=False)
        conn.mark_idle()
        conn.measuring = not engine.changes_over  # the quiet end of the run is not a keepalive gap

    async def _select(self, conn: AsyncImap, engine: Engine, resync: Resync | None) -> None:
        name = quote(self.mailbox.name)
        known = self.uidvalidity and self.highestmodseq
        if self.qresync and known:
            cmd = f"SELECT {name} (QRESYNC ({self.uidvalidity} {self.highestmodseq}))"
        elif self.qresync:
            cmd = f"SELECT {name} (CONDSTORE)"
        else:
            cmd = f"SELECT {name}"
        previous_uidnext = self.uidnext
        r = await conn.command(cmd, engine.plan.deadline_s)
        if r.status != "OK":
            raise Refused("select", r.tagged.first_line[:200])
        learned: set[int] = set()
        for u in r.untagged:
            self._untagged(u, engine, notify=False)
            fetched = parse_fetch(u)
            if fetched and "UID" in fetched[1]:
                learned.add(int(fetched[1]["UID"]))
        for u in [*r.untagged, r.tagged]:
            for key in ("UIDVALIDITY", "UIDNEXT", "HIGHESTMODSEQ"):
                value = response_code(u, key)
                if value and value.isdigit():
                    setattr(self, key.lower(), int(value))
        if resync is None:
            return
        if not (self.qresync and known):  # a client without QRESYNC asks for the new UIDs itself
            resync.method = "uid fetch"
            if previous_uidnext:
                f = await conn.command(f"UID FETCH {previous_uidnext}:* (UID)", engine.plan.deadline_s)
                for u in f.untagged:
                    fetched = parse_fetch(u)
                    if fetched and "UID" in fetched[1]:
                        learned.add(int(fetched[1]["UID"]))
        expected = {u for u in self.mailbox.uids if u and previous_uidnext <= u < self.uidnext}
        resync.learned = len(learned)
        resync.missing = sorted(expected - learned)[:20]

    def _untagged(self, r, engine: Engine, notify: bool) -> None:
        n = parse_exists(r)
        if n is None:
            return
        if notify:
            now = time.monotonic()
            sent = self.mailbox.sent_at
            for k in range(self.seen + 1, min(n, len(sent)) + 1):
                # timed by the phase the change was made in: only the changes before the storm meet both groups
                # in the same server processes (path sessions come back elsewhere; during the storm the server
                # is busy with the reconnects and path sessions are down)
                self.latencies[engine.phase_of(sent[k - 1])].append(now - sent[k - 1])
        self.seen = max(self.seen, n)

    async def _idle(self, conn: AsyncImap, engine: Engine) -> None:
        while not engine.stopping:
            r = await conn.poll(engine.plan.poll_s)
            if r is not None:
                self._untagged(r, engine, notify=True)
                if r.status == "BYE":
                    raise Dropped("bye", r.first_line[:200])
                continue
            silent = time.monotonic() - conn.last_rx
            if silent > engine.plan.dead_after_s:
                raise Dropped("silent", f"nothing received for {silent:.1f} s while idling")
        # stopping: end the IDLE and log out, briefly (the server may be busy with everybody else)
        try:
            conn.send(b"DONE\r\n")
            await conn.command("LOGOUT", 2.0)
        except (Dropped, Refused, OSError):
            pass
