"""Push timelines: what happened on one idling connection, when, and how long it stayed silent.

Times are seconds on the case clock (``case.transcript.now()``), the clock of the transcript and the timeline.
The waiting itself (``Watch``) and the second connection that makes the changes (``ChangeMaker``) are in the
helper layer, ``conformance.checks.support``.
"""

from __future__ import annotations

import re

from conformance.report.figures.timeline import TimelineBuilder

CHANGE_RE = re.compile(r"^\* (?:\d+ (?:EXISTS|EXPUNGE|FETCH)\b|STATUS\b|VANISHED\b|LIST\b)", re.I)
KEEPALIVE_RE = re.compile(r"^\* OK(?! \[)", re.I)


def conn_entries(case, label: str | tuple[str, ...], start: float, end: float) -> list:
    """The transcript entries (C: and S:) of connection(s) ``label`` between ``start`` and ``end``."""
    labels = (label,) if isinstance(label, str) else label
    return [e for e in case.transcript.entries if e.conn in labels and start <= e.t <= end and e.direction in "CS"]


def longest_gap(case, label: str, start: float, end: float) -> tuple[float, float, float]:
    """(length, from, to) of the longest stretch without a byte either way on connection ``label``."""
    times = sorted({start, end, *(e.t for e in conn_entries(case, label, start, end))})
    best = (0.0, start, start)
    for a, b in zip(times, times[1:]):
        if b - a > best[0]:
            best = (round(b - a, 3), a, b)
    return best


def intermediary_actions(case) -> list:
    """Everything the intermediaries did in this case (I: entries), in order."""
    return [e for e in case.transcript.entries if e.direction == "I"]


def timeline(case, label: str | tuple[str, ...], title: str, *, start: float, end: float, change_at: float | None = None,
             change_label: str = "", noticed_at: float | None = None, noticed_label: str = "",
             closed_at: float | None = None, closed_label: str = "", idle_from: float | None = None,
             gap: tuple[float, float, float] | None = None,
             thresholds: dict[str, float | tuple[float, float]] | None = None,
             blackhole_at: float | None = None) -> TimelineBuilder:
    """Timeline data (format in conformance/report/figures/timeline.py) for one client connection."""
    b = TimelineBuilder(title, start=start, end=end)
    for e in conn_entries(case, label, start, end):
        first = e.text.split("\r\n", 1)[0].split("\n", 1)[0]
        if e.direction == "C":
            b.event(e.t, "client", first, e.nbytes)
        elif change_at is not None and e.t >= change_at and CHANGE_RE.match(first):
            b.event(e.t, "notification", first, e.nbytes)
        elif idle_from is not None and e.t > idle_from and KEEPALIVE_RE.match(first):
            b.event(e.t, "keepalive", first, e.nbytes)
        else:
            b.event(e.t, "server", first, e.nbytes)
    for e in intermediary_actions(case):
        if start <= e.t <= end:
            b.event(e.t, "intermediary", e.text)
    if change_at is not None:
        b.event(change_at, "change", change_label or "change made on a second connection")
    if noticed_at is not None:
        b.event(noticed_at, "noticed", noticed_label or "client noticed the loss")
    if closed_at is not None:
        b.event(closed_at, "closed", closed_label or "connection ended")
    if idle_from is not None:
        b.span(idle_from, closed_at if closed_at is not None else end, "idle", "IDLE in progress")
    if gap is not None and gap[0] > 0:
        b.span(gap[1], gap[2], "gap", f"longest silence {gap[0]:.3f} s")
    if blackhole_at is not None:
        b.span(blackhole_at, end, "blackhole", "black hole: nothing forwarded, nobody told")
    if change_at is not None:
        notified = next((ev["t"] for ev in b.events if ev["kind"] == "notification"), None)
        b.span(change_at, notified if notified is not None else end, "waiting",
               "waiting for the notification" if notified is not None else "change never reported")
    for name, value in (thresholds or {}).items():
        secs, begin = value if isinstance(value, tuple) else (value, None)
        b.threshold(name, secs, begin)
    return b
