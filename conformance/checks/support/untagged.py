"""Waiting for untagged responses with a deadline: the first one that matters, or everything seen on the way.

``wait_for_untagged`` is the plain wait (a closed connection ends it with ``ServerClosed``, the server's fault);
``Watch`` reads an idling connection for a push check, keeps every response with its time on the case clock and
notes when and why the connection ended instead of raising, so the check can still draw its timeline.
The predicates (``exists()``, ``fetch()``, ``expunge_or_vanished()``) say which responses matter.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from conformance.errors import ServerClosed
from conformance.protocols.imap import ImapConnection
from conformance.protocols.imapwire import Response, parse_exists, parse_expunge, parse_vanished

from .blame import Blame, refuse

Predicate = Callable[[Response], bool]
_fetch_head = re.compile(r"^\* (\d+) FETCH\b", re.I)


def exists(n: int | None = None) -> Predicate:
    """'* n EXISTS' (any n when None)."""
    return lambda r: (got := parse_exists(r)) is not None and (n is None or got == n)


def fetch(n: int | None = None) -> Predicate:
    """An untagged FETCH (of message sequence number n when given), whatever its items."""
    return lambda r: (m := _fetch_head.match(r.first_line)) is not None and (n is None or int(m.group(1)) == n)


def expunge_or_vanished() -> Predicate:
    """'* n EXPUNGE' or '* VANISHED ...': a message is gone."""
    return lambda r: parse_expunge(r) is not None or parse_vanished(r) is not None


def wait_for_untagged(conn: ImapConnection, predicate: Predicate, seconds: float, *, blame: Blame | None = None,
                      expected: str = "the expected untagged response") -> Response | None:
    """The first response within ``seconds`` for which ``predicate`` holds (others are read and passed over). When
    the deadline passes first: None, or with ``blame`` the verdict it stands for ('no <expected> within N s')."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        resp = conn.poll(left)
        if resp is None:
            break
        if predicate(resp):
            return resp
    refuse(blame, f"{conn.label}: no {expected} within {seconds:g} s")
    return None


@dataclass
class Watch:
    """Reads an idling connection until a predicate holds, a deadline passes or the connection ends.

    ``seen`` holds every response read, with its time on the case clock; ``closed_at``/``closed_reason`` say when
    and how the connection ended (then every later ``until`` returns None at once).
    """

    case: Any
    conn: ImapConnection
    seen: list[tuple[float, Response]] = field(default_factory=list)
    closed_at: float | None = None
    closed_reason: str = ""

    def now(self) -> float:
        """The case clock."""
        return self.case.transcript.now()

    def until(self, seconds: float, stop: Predicate | None = None) -> Response | None:
        """The first response for which ``stop`` holds (None: just keep reading) within ``seconds``; else None."""
        deadline = time.monotonic() + seconds
        while self.closed_at is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                resp = self.conn.poll(left)
            except ServerClosed as e:
                self.closed_at = self.now()
                self.closed_reason = str(e)
                return None
            if resp is None:
                return None
            self.seen.append((self.now(), resp))
            if stop is not None and stop(resp):
                return resp
        return None

    def time_of(self, resp: Response) -> float:
        """When ``resp`` (a response this watch read) arrived, on the case clock."""
        return next(t for t, r in self.seen if r is resp)

    def saw(self) -> list[str] | str:
        """For messages: the first lines of everything seen, or 'nothing'."""
        return [r.first_line for _, r in self.seen] or "nothing"
