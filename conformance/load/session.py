"""What every push session of the load client shares: who it is, what it counted, and the connect-listen-
reconnect loop. A protocol (``imap_idle.Session``, ``eventsource.EventSourceSession``) supplies ``start``
(connect, log in, resynchronise after a drop, start listening; it sets ``self.conn`` as soon as it has a
connection) and ``listen`` (until the connection ends or the engine stops)."""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .wire import Dropped, Octets, Refused

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
    """One reconnection: from the drop to listening again."""

    dropped_at: float
    method: str
    idle_at: float = 0.0
    octets: int = 0
    attempts: int = 0
    learned: int = 0  # messages the resync reported
    missing: list[int] = field(default_factory=list)  # changes since the last known state it did not report


@dataclass(kw_only=True)
class PushSession:
    """One push session (``group`` path or control) and everything it measured."""

    sid: int
    group: str
    account: str
    mailbox: MailboxLog
    address: tuple[str, int]
    tls: ssl.SSLContext | None = None
    octets: Octets = field(default_factory=Octets)
    state: str = "new"  # new, connecting, idle, down, stopped
    seen: int = 0  # the changes the session knows of (notified or resynchronised)
    latencies: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PHASES})
    max_gap_s: float = 0.0
    connects: int = 0
    drops: dict[str, int] = field(default_factory=dict)  # how -> count, outside a storm
    storm_drops: int = 0
    silent_noticed: int = 0
    refusals: dict[str, int] = field(default_factory=dict)
    storm_refusals: dict[str, int] = field(default_factory=dict)
    storm_failures: dict[str, int] = field(default_factory=dict)  # reconnect attempts that failed, by how
    errors: list[str] = field(default_factory=list)
    resyncs: list[Resync] = field(default_factory=list)
    first_idle_at: float = 0.0
    conn: Any = field(default=None, repr=False)
    # set once the first attempt has an outcome (idling, refused, dropped, failed): the ramp-up moves on then
    settled: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    resync_method = "reconnect"  # what a subclass's resynchronisation is called in the report

    def error(self, text: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(text[:300])

    async def start(self, engine: Engine, resync: Resync | None) -> None:
        raise NotImplementedError

    async def listen(self, engine: Engine) -> None:
        raise NotImplementedError

    def timed(self, engine: Engine, k: int, now: float) -> None:
        """Change k (1-based) was notified at ``now``: its latency, filed by the phase it was made in (only the
        changes before the storm meet both groups in the same server processes)."""
        sent = self.mailbox.sent_at[k - 1]
        self.latencies[engine.phase_of(sent)].append(now - sent)

    async def run(self, engine: Engine) -> None:
        """Connect, listen, and reconnect after every drop until the engine stops; never raises."""
        backoff = 0.0
        resync: Resync | None = None
        while not engine.stopping:
            if backoff:
                await asyncio.sleep(backoff)
            self.state = "connecting"
            before = self.octets.total
            try:
                await self.start(engine, resync)
                if resync is not None:
                    resync.octets += self.octets.total - before
                    resync.idle_at = time.monotonic()
                    self.resyncs.append(resync)
                    resync = None
                if not self.first_idle_at:
                    self.first_idle_at = time.monotonic()
                backoff = 0.0
                self.state = "idle"
                self.settled.set()
                await self.listen(engine)
            except Refused as e:
                counts = self.storm_refusals if engine.in_storm(time.monotonic(), self.group) else self.refusals
                counts[e.kind] = counts.get(e.kind, 0) + 1
                self.error(str(e))
                backoff = min(2.0, max(0.05, backoff * 2)) * (0.5 + random.random())
                if resync is not None:
                    self.failed(resync, e.kind, before)
            except Dropped as e:
                if engine.stopping:
                    break
                now = time.monotonic()
                if resync is not None:  # dropped again while reconnecting
                    self.failed(resync, e.how, before)
                else:
                    resync = Resync(dropped_at=now, method=self.resync_method)
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
                self.settled.set()
                if self.conn is not None:
                    self.max_gap_s = max(self.max_gap_s, self.conn.max_gap)
                    self.conn.close()
                    self.conn = None
            self.state = "down"
        self.state = "stopped"

    def failed(self, resync: Resync, how: str, before: int) -> None:
        self.storm_failures[how] = self.storm_failures.get(how, 0) + 1
        resync.attempts += 1
        resync.octets += self.octets.total - before
