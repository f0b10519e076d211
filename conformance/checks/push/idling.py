"""An IDLE session watched through the path while a second connection changes its mailbox: the push checks' run.

``idle_then_append`` selects a fresh scratch mailbox on a connection through the scenario path, starts IDLE,
watches it for a while, APPENDs a message on an undisturbed second connection and waits for the EXISTS; the
``IdleRun`` it returns holds what a push check judges and draws (times on the case clock).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from conformance.checks.support import ChangeMaker, Watch, select, untagged
from conformance.protocols.imap import ImapConnection
from conformance.protocols.imapwire import Response

from .timelines import intermediary_actions, longest_gap


@dataclass
class IdleRun:
    """One IDLE session (``imap``, tag ``tag``) and the APPEND made while it idled (``got``: its EXISTS, or None)."""

    imap: ImapConnection
    other: ChangeMaker
    box: str
    tag: str
    watch: Watch
    idle_from: float
    change_at: float
    got: Response | None
    end: float
    gap: tuple[float, float, float]  # longest silence on the idling connection until it ended, or until ``end``
    drop: Any  # the first thing an intermediary did to a connection after IDLE began (None: nothing)

    @property
    def latency(self) -> float | None:
        """Seconds from the APPEND to its EXISTS, or None."""
        return round(self.watch.time_of(self.got) - self.change_at, 3) if self.got is not None else None

    @property
    def keepalives(self) -> int:
        """Untagged OK lines (keepalives) seen before the change."""
        return sum(1 for t, r in self.watch.seen if t < self.change_at and r.first_line.upper().startswith("* OK"))


def idle_then_append(case: Any, *, observe: float, wait: float) -> IdleRun:
    """IDLE on a scratch mailbox through the path, watch ``observe`` s, then APPEND on a second connection and wait
    up to ``wait`` s for the EXISTS (not at all when the idling connection already ended)."""
    imap = case.imap(label="idler")
    other = ChangeMaker(case)
    box = other.scratch_mailbox()
    select(imap, box)
    tag = imap.idle(timeout=5)
    idle_from = case.transcript.now()
    watch = Watch(case, imap)
    watch.until(observe)
    change_at = case.transcript.now()
    other.append(box)
    case.note("second connection APPENDed one message to the idled mailbox")
    got = watch.until(wait, untagged.exists())
    end = case.transcript.now()
    gap = longest_gap(case, imap.label, idle_from, watch.closed_at if watch.closed_at is not None else end)
    drop = next((e for e in intermediary_actions(case) if e.t >= idle_from), None)
    return IdleRun(imap, other, box, tag, watch, idle_from, change_at, got, end, gap, drop)
