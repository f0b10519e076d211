"""What the client checks share: reading the relay's transcript (connections, client lines, octets) and the
client timeline (connects, drops, reconnects, deliveries, the suite's changes)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from conformance.report.figures.timeline import TimelineBuilder
from conformance.subjects.driver import ClientSession

LEG = "proxy-server"
CREDENTIALS = re.compile(r"^(?:\S+ +(?:LOGIN|AUTHENTICATE)\b|AUTH +\S+)", re.I | re.M)
AUTH_HEADER = re.compile(r"^(?:proxy-)?authorization:", re.I | re.M)


@dataclass
class Connection:
    label: str
    opened: float
    closed: float | None = None
    client_octets: int = 0
    server_octets: int = 0
    client_times: list[float] = field(default_factory=list)


def connections(case, start: float = 0.0, end: float | None = None) -> dict[str, Connection]:
    """Connections the client opened through the path (from the relay's own records), with octets each way."""
    out: dict[str, Connection] = {}
    for e in case.transcript.entries:
        if e.leg != LEG or not e.conn.startswith("conn#") or e.t < start or (end is not None and e.t > end):
            continue
        c = out.get(e.conn)
        if c is None:
            c = out[e.conn] = Connection(e.conn, e.t)
        if e.direction == "N" and ("closed" in e.text or "ended" in e.text):
            c.closed = e.t
        elif e.direction == "C":
            c.client_octets += e.nbytes
            c.client_times.append(e.t)
        elif e.direction == "S":
            c.server_octets += e.nbytes
    return out


def client_lines(case, conn: str) -> list[tuple[float, str]]:
    """What the client sent on one connection, as the relay forwarded it (redacted), with times."""
    return [(e.t, e.text) for e in case.transcript.entries if e.leg == LEG and e.conn == conn and e.direction == "C"]


def server_octets(case, start: float, end: float) -> int:
    return sum(e.nbytes for e in case.transcript.entries
               if e.leg == LEG and e.direction == "S" and start <= e.t <= end)


def intermediary_actions(case, start: float = 0.0):
    return [e for e in case.transcript.entries if e.direction == "I" and e.t >= start]


def client_timeline(case, session: ClientSession, title: str, *, start: float = 0.0, end: float | None = None,
                    changes: dict[str, float] | None = None, blackhole_at: float | None = None,
                    thresholds: dict[str, tuple[float, float | None]] | None = None) -> TimelineBuilder:
    """Connects, client writes, drops, reconnects and deliveries of one client on the case clock."""
    end = case.transcript.now() if end is None else end
    b = TimelineBuilder(title, start=start, end=end)
    conns = connections(case, start, end)
    for n, c in enumerate(sorted(conns.values(), key=lambda c: c.opened), 1):
        b.event(c.opened, "client", f"connection {n} opened ({c.label})")
        for t in c.client_times[:200]:
            b.event(t, "client", f"client wrote on {c.label}")
        if c.closed is not None:
            b.event(c.closed, "closed", f"connection {n} ended")
        b.span(c.opened, c.closed if c.closed is not None else end, "idle", f"connection {n}")
    for e in intermediary_actions(case, start):
        b.event(e.t, "intermediary", e.text)
    for mid, t in (changes or {}).items():
        b.event(t, "change", f"suite appended {mid}")
        got = session.output.first(mid)
        b.span(t, got.t if got else end, "waiting", "delivered" if got else "never delivered")
    for d in session.output.deliveries:
        if start <= d.t <= end:
            b.event(d.t, "notification", f"delivered {d.message_id or d.path}")
    if blackhole_at is not None:
        b.span(blackhole_at, end, "blackhole", "black hole: nothing forwarded, nobody told")
    for name, (secs, begin) in (thresholds or {}).items():
        b.threshold(name, secs, begin)
    return b


def delivered_once(session: ClientSession, mids: list[str]) -> tuple[list[str], dict[str, int]]:
    """(missing Message-IDs, duplicated Message-IDs with their counts) among ``mids``."""
    counts = session.output.counts()
    missing = [m for m in mids if counts.get(m, 0) == 0]
    dups = {m: counts[m] for m in mids if counts.get(m, 0) > 1}
    return missing, dups


def play_failure(session: ClientSession, play) -> str:
    """One line about how a play ended and the last lines of the client's log (secrets scrubbed)."""
    tail = " | ".join(play.process.log().strip().splitlines()[-4:])
    how = f"was stopped ({play.process.stopped_by})" if play.process.stopped_by else f"exited with {play.exit_code}"
    return f"client {session.adapter.name} {how}; its log ends: {tail[-400:]}"
