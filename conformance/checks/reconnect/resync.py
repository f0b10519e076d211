"""Quick resynchronisation (QRESYNC) as a client does it after a dropped connection, and the changes it must find.

The checks of the reconnect family compare what a client reconstructs after a dropped connection with the
ground truth read by a fresh full sync on an undisturbed connection (``conformance.checks.support``:
``MailboxView``, ``full_sync``, ``ground_truth``). ``quick_resync`` rebuilds a cached view from SELECT (QRESYNC
...) and ``apply_responses``; ``change_mailbox`` makes the changes a second connection applies while the first
one is gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from conformance.checks.support import ChangeMaker, MailboxView, norm_flags, select, view_from_select
from conformance.errors import ConformanceFailure, HarnessError
from conformance.protocols.imap import CommandResult, ImapConnection
from conformance.protocols.imapwire import Response, format_uid_set, parse_fetch, parse_vanished


@dataclass
class Resync:
    """What one quick resynchronisation returned, and the order problems found in it."""

    result: CommandResult
    view: MailboxView
    vanished: set[int] = field(default_factory=set)
    fetched: dict[int, frozenset[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def apply_responses(view: MailboxView, responses: list[Response], problems: list[str] | None = None,
                    *, earlier_expected: bool | None = None,
                    require_modseq: bool = False) -> tuple[set[int], dict[int, frozenset[str]]]:
    """Apply VANISHED and FETCH responses to ``view``; note protocol problems (FETCH without UID, VANISHED after
    FETCH) in ``problems``."""
    problems = problems if problems is not None else []
    vanished: set[int] = set()
    fetched: dict[int, frozenset[str]] = {}
    seen_fetch = None
    for r in responses:
        v = parse_vanished(r)
        if v is not None:
            earlier, uids = v
            if earlier and seen_fetch is not None:
                problems.append(f"VANISHED (EARLIER) after a FETCH: {seen_fetch!r} came before {r.first_line!r}")
            if earlier_expected is not None and earlier != earlier_expected:
                problems.append(f"VANISHED {'with' if earlier else 'without'} (EARLIER) where the other form was "
                                f"expected: {r.first_line!r}")
            vanished |= uids
            for uid in uids:
                view.flags.pop(uid, None)
            continue
        parsed = parse_fetch(r)
        if parsed is None:
            continue
        seen_fetch = seen_fetch or r.first_line
        _, items = parsed
        if "UID" not in items:
            problems.append(f"FETCH without UID after ENABLE QRESYNC: {r.first_line!r}")
            continue
        if require_modseq and "MODSEQ" not in items:
            problems.append(f"resync FETCH without MODSEQ: {r.first_line!r}")
        if "FLAGS" in items:
            uid = int(items["UID"])
            fetched[uid] = norm_flags(items["FLAGS"])
            view.flags[uid] = fetched[uid]
    return vanished, fetched


def quick_resync(conn: ImapConnection, mailbox: str, cached: MailboxView, *, known_uids: bool = True,
                 seq_match: tuple[str, str] | None = None, examine: bool = False,
                 modseq: int | None = None, timeout: float = 60.0) -> Resync:
    """SELECT/EXAMINE mailbox (QRESYNC (uidvalidity modseq [known-uids [seq-match]])) on a connection that
    has enabled QRESYNC; new messages (UIDs above the cached ones) are fetched after the SELECT."""
    known = format_uid_set(cached.flags) if known_uids and cached.flags else None
    params: list = [cached.uidvalidity, cached.highestmodseq if modseq is None else modseq]
    if known:
        params.append(known)
        if seq_match:
            params.append(f"({seq_match[0]} {seq_match[1]})")
    sel = select(conn, mailbox, qresync=tuple(params), examine=examine, timeout=timeout, blame=None)
    if not sel.ok:
        raise ConformanceFailure(f"{'EXAMINE' if examine else 'SELECT'} (QRESYNC ...) refused: "
                                 f"{sel.result.tagged.first_line}")
    fresh = view_from_select(sel)
    view = cached.copy() if fresh.uidvalidity == cached.uidvalidity else MailboxView()
    view.uidvalidity, view.highestmodseq = fresh.uidvalidity, fresh.highestmodseq
    out = Resync(sel.result, view)
    out.vanished, out.fetched = apply_responses(view, sel.result.untagged, out.problems, earlier_expected=True,
                                               require_modseq=True)
    # messages that arrived while we were away: UIDs above the highest we knew
    top = max(cached.flags, default=0)
    if sel.uidnext is None or sel.uidnext > top + 1:
        new = conn.command(f"UID FETCH {top + 1}:* (FLAGS)", timeout=timeout)
        if not new.ok:
            raise ConformanceFailure(f"UID FETCH of new messages failed: {new.tagged.first_line}")
        _, got = apply_responses(view, new.untagged, out.problems)
        for uid in list(got):
            if uid <= top and uid not in cached.flags:
                view.flags.pop(uid, None)  # '*' matched an old message: not new
        out.fetched.update(got)
    return out


@dataclass
class Changes:
    """The changes a second connection made: what a resync must report."""

    expunged: set[int] = field(default_factory=set)
    flagged: dict[int, str] = field(default_factory=dict)
    appended: int = 0

    def __str__(self) -> str:
        return (f"expunged UIDs {format_uid_set(self.expunged) or 'none'}, flag changes on "
                f"{format_uid_set(self.flagged) or 'none'}, {self.appended} new message(s)")


def change_mailbox(changer: ChangeMaker, mailbox: str, uids: list[int], changes: int = 5) -> Changes:
    """Spread ``changes`` changes over the mailbox from a second connection: about 2/5 flag changes, 2/5 expunges,
    1/5 new messages (every step set-up: a refusal is the harness's)."""
    out = Changes()
    if not uids:
        raise HarnessError("no messages to change")
    changer.select(mailbox)
    n_flag = max(1, changes * 2 // 5)
    n_exp = max(1, changes * 2 // 5)
    n_new = max(0, changes - n_flag - n_exp)
    step = max(1, len(uids) // (n_flag + n_exp + 1))
    picks = [uids[min(len(uids) - 1, step * (i + 1) - 1)] for i in range(n_flag + n_exp)]
    picks = list(dict.fromkeys(picks))
    for uid in picks[:n_flag]:
        flag = "\\Flagged" if uid % 2 else "$Lemonade"
        changer.store(uid, f"+FLAGS ({flag})")
        out.flagged[uid] = flag
    exp = picks[n_flag:]
    if exp:
        changer.expunge(format_uid_set(exp))
        out.expunged = set(exp)
    changer.conn.command("UNSELECT")
    if n_new:
        changer.populate(mailbox, n_new, tag="new")
        out.appended = n_new
    return out

