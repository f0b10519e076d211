"""A load run's shard: N push sessions through the path, a control group on the direct path, changes at a
rate, a reconnect storm, all in one asyncio loop of one thread.

Phases (``Engine.run``): the change-makers create their mailboxes; every session connects and starts idling
(ramp-up); changes are made at ``rate`` per second per mailbox for ``duration_s``; at ``storm_at`` of that
time the intermediary drops every session at once (``kill``: a carrier NAT reboots) and the sessions
reconnect and resynchronise while the changes go on; then the changes stop, the sessions get a last chance
to report the final count (drain), and everything is closed and the mailboxes deleted. ``LoadReport`` holds
what was measured; the check in ``conformance/checks/scale/`` judges it.
"""

from __future__ import annotations

import asyncio
import resource
import ssl
import statistics
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from .changes import ChangeMaker
from .eventsource import EventSourceSession, JmapAccount
from .imap_idle import Session
from .session import PHASES, MailboxLog
from .stats import Distribution
from .wire import Dropped, Refused

GROUPS = ("path", "control")
SAMPLE_S = 0.25  # timeline resolution


@dataclass
class LoadPlan:
    protocol: str = "imap"  # imap (IDLE sessions) or eventsource (JMAP push streams)
    sessions: int = 100  # through the path
    control: int = 20  # on the direct path, same mailboxes: the server's own share of the latency
    duration_s: float = 20.0  # how long changes are made
    rate: float = 1.0  # changes per second per mailbox
    storm: bool = True
    storm_at: float = 0.5  # fraction of duration_s at which the intermediary drops every session
    storm_how: str = "rst"
    storm_deadline_s: float = 60.0  # every session must be back within this
    reconnect_jitter_s: float = 0.0  # a session waits up to this long (uniform) before reconnecting
    dead_after_s: float = 45.0  # silence after which a session declares its connection dead
    poll_s: float = 1.0
    deadline_s: float = 10.0  # one answer of the server
    ramp_deadline_s: float = 120.0
    drain_s: float = 10.0
    # sessions logging in at once during the ramp-up: few, so the order the server registers them in is the
    # interleaved order of the two groups (a server notifies the sessions of one process one after the other)
    connect_concurrency: int = 10
    mailbox_prefix: str = "lemonade-load"
    shard: str = "1/1"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Endpoints:
    """Where each group connects, and the TLS context for it (None: cleartext); where the change-makers connect
    (IMAP, direct) when that is another endpoint than the sessions'."""

    path: tuple[str, int]
    direct: tuple[str, int]
    tls: ssl.SSLContext | None = None
    changes: tuple[str, int] | None = None
    changes_tls: ssl.SSLContext | None = None


class Engine:
    def __init__(self, plan: LoadPlan, accounts: list[tuple[str, str]], endpoints: Endpoints,
                 kill: Callable[[str], int] | None = None, proxy_cpu: Callable[[], float] | None = None,
                 jmap: dict[str, JmapAccount] | None = None) -> None:
        if not accounts:
            raise ValueError("a load run needs at least one account")
        self.plan = plan
        self.endpoints = endpoints
        self.kill = kill
        self.proxy_cpu = proxy_cpu
        self.stopping = False
        self.changes_over = False
        self.t0 = time.monotonic()
        self.storm_started: float | None = None
        self.storm_ended: float | None = None
        self.killed = 0
        shard = plan.shard.replace("/", "of")
        self.logs = [MailboxLog(user, f"{plan.mailbox_prefix}-{shard}-{user}") for user, _ in accounts]
        passwords = dict(accounts)
        changes = (endpoints.changes, endpoints.changes_tls) if endpoints.changes else (endpoints.direct, endpoints.tls)
        self.makers = [ChangeMaker(log, passwords[log.account], changes[0], changes[1], plan.deadline_s)
                       for log in self.logs]
        if plan.protocol == "eventsource" and not jmap:
            raise ValueError("an eventsource load run needs the accounts' JMAP session facts")
        self.sessions: list[Session | EventSourceSession] = []
        for group, count, address in (("path", plan.sessions, endpoints.path),
                                      ("control", plan.control, endpoints.direct)):
            for i in range(count):
                log = self.logs[i % len(self.logs)]
                common = {"sid": len(self.sessions), "group": group, "account": log.account, "mailbox": log,
                          "address": address, "tls": endpoints.tls}
                if plan.protocol == "eventsource":
                    assert jmap is not None
                    self.sessions.append(EventSourceSession(**common, jmap=jmap[log.account]))
                else:
                    self.sessions.append(Session(**common, password=passwords[log.account]))
        self.timeline: list[list[float]] = []
        self.phases: dict[str, float] = {}
        self.notes: list[str] = []
        self.idle_at_end: dict[str, int] = {}

    # -- what sessions ask ---------------------------------------------------------------------
    def in_storm(self, now: float, group: str = "path") -> bool:
        if group != "path" or self.storm_started is None:
            return False
        return now >= self.storm_started and (self.storm_ended is None or now <= self.storm_ended)

    def phase_of(self, sent_at: float) -> str:
        """When a change was sent: before the storm (or in a run without one), during it (from the cut until every
        path session was back), or after it."""
        if self.storm_started is None or sent_at < self.storm_started:
            return "before"
        if self.storm_ended is None or sent_at <= self.storm_ended:
            return "storm"
        return "after"

    def mark(self, phase: str) -> None:
        self.phases[phase] = round(time.monotonic() - self.t0, 3)

    # -- the run ---------------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        cpu0, loop_cpu0 = resource.getrusage(resource.RUSAGE_SELF), time.thread_time()
        proxy0 = self._proxy_cpu()
        sampler = asyncio.ensure_future(self._sample())
        tasks: list[asyncio.Task] = []
        try:
            await asyncio.gather(*(m.setup() for m in self.makers))
            self.mark("mailboxes_created")
            tasks = await self._ramp_up()
            self.mark("ramped_up")
            storm = asyncio.ensure_future(self._storm()) if self.plan.storm and self.kill else None
            until = time.monotonic() + self.plan.duration_s
            await asyncio.gather(*(m.run(self.plan.rate, until, lambda: self.stopping) for m in self.makers))
            self.mark("changes_stopped")
            self.changes_over = True
            for s in self.sessions:
                if s.conn is not None:
                    s.conn.measuring = False
            if storm is not None:
                await storm
            await self._drain()
            self.mark("drained")
            for group in GROUPS:
                self.idle_at_end[group] = sum(s.state == "idle" for s in self.sessions if s.group == group)
        except (Dropped, Refused) as e:
            self.notes.append(f"the run ended early: {e}")
        finally:
            self.stopping = True
            if tasks:
                await asyncio.wait(tasks, timeout=self.plan.deadline_s)
            for t in tasks:
                t.cancel()
            sampler.cancel()
            await asyncio.gather(*(m.cleanup() for m in self.makers), return_exceptions=True)
            self.mark("closed")
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        resources = {"cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 2),
                     "load_client_cpu_s": round(time.thread_time() - loop_cpu0, 2),
                     "max_rss_mb": round(cpu1.ru_maxrss / 1024, 1), "threads": threading.active_count()}
        proxy1 = self._proxy_cpu()
        if proxy0 is not None and proxy1 is not None:
            resources["proxy_cpu_s"] = round(proxy1 - proxy0, 2)
        return self.report(resources)

    def _proxy_cpu(self) -> float | None:
        try:
            return self.proxy_cpu() if self.proxy_cpu else None
        except Exception:  # noqa: BLE001 - a measurement, never a reason to fail the run
            return None

    async def _ramp_up(self) -> list[asyncio.Task]:
        """Start every session, at most ``connect_concurrency`` logging in at once; each holds its place until its
        first attempt has an outcome (idling, or refused, dropped or failed: it then retries on its own)."""
        gate = asyncio.Semaphore(self.plan.connect_concurrency)

        async def start(s: Session) -> None:
            async with gate:
                task = asyncio.ensure_future(s.run(self))
                started.append(task)
                try:
                    await asyncio.wait_for(s.settled.wait(), self.plan.deadline_s * 2)
                except asyncio.TimeoutError:
                    pass  # a login the server never answers: the session's own deadline reports it

        started: list[asyncio.Task] = []
        # the control group interleaved with the path group, so both land alike in the server's processes
        order = sorted(self.sessions, key=lambda s: (s.sid - (self.plan.sessions if s.group == "control" else 0))
                       / max(1, self.plan.control if s.group == "control" else self.plan.sessions))
        await asyncio.wait_for(asyncio.gather(*(start(s) for s in order)), self.plan.ramp_deadline_s)
        return started

    async def _storm(self) -> None:
        await asyncio.sleep(self.plan.duration_s * self.plan.storm_at)
        loop = asyncio.get_running_loop()
        self.storm_started = time.monotonic()
        self.mark("storm")
        assert self.kill is not None
        self.killed = await loop.run_in_executor(None, self.kill, self.plan.storm_how)
        deadline = self.storm_started + self.plan.storm_deadline_s
        path = [s for s in self.sessions if s.group == "path"]
        while time.monotonic() < deadline:
            back = [s for s in path if s.state == "idle" and s.resyncs and s.resyncs[-1].dropped_at >= self.storm_started]
            if len(back) == len(path):
                break
            await asyncio.sleep(0.05)
        self.storm_ended = time.monotonic()
        self.mark("storm_over")

    async def _drain(self) -> None:
        """Give every idling session until ``drain_s`` to report the final message count."""
        deadline = time.monotonic() + self.plan.drain_s
        while time.monotonic() < deadline:
            if all(s.seen >= s.mailbox.count for s in self.sessions if s.state == "idle"):
                return
            await asyncio.sleep(0.05)

    async def _sample(self) -> None:
        while True:
            now = time.monotonic()
            row = [round(now - self.t0, 3)]
            for group in GROUPS:
                members = [s for s in self.sessions if s.group == group]
                row += [sum(s.state == "idle" for s in members), sum(s.octets.total for s in members)]
            self.timeline.append(row)
            await asyncio.sleep(SAMPLE_S)

    # -- what was measured -------------------------------------------------------------------------
    def report(self, resources: dict[str, Any]) -> dict[str, Any]:
        groups = {g: self._group(g) for g in GROUPS}
        changes = {"made": sum(log.count for log in self.logs), "failed": sum(log.failures for log in self.logs),
                   "mailboxes": len(self.logs),
                   "append_p50_s": round(statistics.median([a for m in self.makers for a in m.append_s]), 4)
                   if any(m.append_s for m in self.makers) else None,
                   "errors": [m.error for m in self.makers if m.error]}
        if changes["made"] and self.phases.get("changes_stopped") and self.phases.get("ramped_up"):
            span = self.phases["changes_stopped"] - self.phases["ramped_up"]
            changes["rate_achieved"] = round(changes["made"] / len(self.logs) / span, 3) if span > 0 else None
        report = {"plan": self.plan.as_dict(), "phases": self.phases, "groups": groups, "changes": changes,
                  "resources": resources, "notes": self.notes,
                  "timeline": {"columns": ["t_s", "path_idle", "path_octets", "control_idle", "control_octets"],
                               "rows": self.timeline}}
        if self.storm_started is not None:
            report["storm"] = self._storm_report()
        p, c = groups["path"]["latency"]["before"], groups["control"]["latency"]["before"]
        if p["n"] and c["n"]:  # the suite's own share: path minus control, changes before the storm
            report["added_latency"] = {k: round(p[k] - c[k], 6) for k in ("p50_s", "p95_s", "p99_s", "max_s")}
            # each group's percentile is known within its own interval: the difference within these bounds
            report["added_latency"]["ci95"] = {
                k: [round(p["ci95"][k][0] - c["ci95"][k][1], 6), round(p["ci95"][k][1] - c["ci95"][k][0], 6)]
                for k in ("p50_s", "p95_s", "p99_s")}
        return report

    def _group(self, group: str) -> dict[str, Any]:
        members = [s for s in self.sessions if s.group == group]
        latency = {p: Distribution() for p in PHASES}
        gaps = Distribution()
        drops: dict[str, int] = {}
        refusals: dict[str, int] = {}
        for s in members:
            for p in PHASES:
                latency[p].extend(s.latencies[p])
            if s.first_idle_at:
                gaps.add(s.max_gap_s)
            for k, v in s.drops.items():
                drops[k] = drops.get(k, 0) + v
            for k, v in s.refusals.items():
                refusals[k] = refusals.get(k, 0) + v
        expected = sum(s.mailbox.count for s in members)
        short = [s for s in members if s.seen < s.mailbox.count]
        never = [s for s in members if not s.first_idle_at]
        ramp = [s.first_idle_at - self.t0 for s in members if s.first_idle_at]
        return {
            "sessions": len(members),
            "latency": {p: d.summary() for p, d in latency.items()},
            "notifications": {"timed": sum(len(d.samples) for d in latency.values()),
                              "changes_per_session": expected / len(members) if members else 0},
            "final_count_short": len(short),
            "never_idle": len(never),
            "idle_at_end": self.idle_at_end.get(group),
            "lost": sum(1 for s in members if s.drops),
            "drops": drops,
            "silent_noticed": sum(s.silent_noticed for s in members),
            "refusals": refusals,
            "keepalive_gap": {k: v for k, v in gaps.summary().items() if k != "histogram"},
            "ramp_up_s": round(max(ramp), 3) if ramp else None,
            "octets": sum(s.octets.total for s in members),
            "errors": [f"{s.group}#{s.sid}: {e}" for s in members for e in s.errors][:10],
        }

    def _storm_report(self) -> dict[str, Any]:
        assert self.storm_started is not None
        path = [s for s in self.sessions if s.group == "path"]
        resyncs = [r for s in path for r in s.resyncs if r.dropped_at >= self.storm_started]
        recovered = Distribution()
        recovered.extend(r.idle_at - self.storm_started for r in resyncs)
        back = {id(s) for s in path if any(r.dropped_at >= self.storm_started for r in s.resyncs)}
        refusals: dict[str, int] = {}
        for s in path:
            for k, v in s.storm_refusals.items():
                refusals[k] = refusals.get(k, 0) + v
        failures: dict[str, int] = {}
        for s in path:
            for k, v in s.storm_failures.items():
                failures[k] = failures.get(k, 0) + v
        lost = [u for r in resyncs for u in r.missing]
        end = self.storm_ended or time.monotonic()
        return {
            "at_s": round(self.storm_started - self.t0, 3),
            "how": self.plan.storm_how,
            "connections_cut": self.killed,
            "sessions": len(path),
            "resynchronised": len(back),
            "not_back": len(path) - len(back),
            "all_back_s": round(max(recovered.samples), 3) if len(back) == len(path) and recovered.samples else None,
            "window_s": round(end - self.storm_started, 3),
            "recovery": {k: v for k, v in recovered.summary().items() if k != "histogram"},
            "recovered_at_s": sorted(round(v, 3) for v in recovered.samples),
            "octets": sum(r.octets for r in resyncs),
            "octets_per_session": round(sum(r.octets for r in resyncs) / len(resyncs), 1) if resyncs else 0,
            "attempts": sum(r.attempts for r in resyncs) + len(resyncs),
            "refusals": refusals,
            "failed_attempts": failures,
            "changes_lost": len(lost),
            "lost_uids_example": lost[:10],
            "methods": sorted({r.method for r in resyncs}),
            "messages_reported": sum(r.learned for r in resyncs),
        }
