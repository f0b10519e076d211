"""A client's cached view of one mailbox and the ways to build it: full sync, quick resync (QRESYNC), changes.

The checks of the reconnect family compare what a client reconstructs after a dropped connection with the
ground truth read by a fresh full sync on an undisturbed connection. ``MailboxView`` is that cached state;
``full_sync`` and ``quick_resync`` build it from the wire, ``change_mailbox`` makes the changes a second
connection applies while the first one is gone, ``populate`` fills a scratch mailbox quickly (MULTIAPPEND
with LITERAL+ when offered).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from conformance.errors import ConformanceFailure, HarnessError
from conformance.protocols.imap import CommandResult, ImapConnection
from conformance.protocols.imapwire import Response, format_uid_set, parse_fetch, parse_vanished, quote

# flags that describe a session, not the message: never part of the compared state
SESSION_FLAGS = {"\\RECENT"}


def norm_flags(flags) -> frozenset[str]:
    return frozenset(f for f in flags if f.upper() not in SESSION_FLAGS)


@dataclass
class MailboxView:
    """UIDVALIDITY, HIGHESTMODSEQ and the flags of every UID, as one client knows them."""

    uidvalidity: int = 0
    highestmodseq: int = 0
    flags: dict[int, frozenset[str]] = field(default_factory=dict)

    def copy(self) -> "MailboxView":
        return MailboxView(self.uidvalidity, self.highestmodseq, dict(self.flags))

    def diff(self, truth: "MailboxView") -> list[str]:
        """Human-readable differences from ``truth`` (empty when equal)."""
        out = []
        if self.uidvalidity != truth.uidvalidity:
            out.append(f"UIDVALIDITY {self.uidvalidity} vs {truth.uidvalidity}")
        missing = set(truth.flags) - set(self.flags)
        extra = set(self.flags) - set(truth.flags)
        if missing:
            out.append(f"UIDs the server has but the client does not: {format_uid_set(missing)}")
        if extra:
            out.append(f"UIDs the client still has but the server expunged: {format_uid_set(extra)}")
        for uid in sorted(set(self.flags) & set(truth.flags)):
            if self.flags[uid] != truth.flags[uid]:
                out.append(f"UID {uid} flags {sorted(self.flags[uid])} vs server {sorted(truth.flags[uid])}")
            if len(out) > 12:
                out.append("...")
                break
        return out


def code_value(resp: Response, name: str) -> str | None:
    m = re.search(r"\[" + name + r"(?: ([^\]]*))?\]", resp.first_line, re.I)
    if not m:
        return None
    return m.group(1) or ""


def find_code(res: CommandResult, name: str) -> str | None:
    for r in [*res.untagged, res.tagged]:
        v = code_value(r, name)
        if v is not None:
            return v
    return None


def select(conn: ImapConnection, mailbox: str, qresync: tuple | None = None, examine: bool = False,
           condstore: bool = False, timeout: float | None = None) -> CommandResult:
    verb = "EXAMINE" if examine else "SELECT"
    cmd = f"{verb} {quote(mailbox)}"
    if qresync is not None:
        cmd += " (QRESYNC (" + " ".join(str(x) for x in qresync if x not in (None, "")) + "))"
    elif condstore:
        cmd += " (CONDSTORE)"
    return conn.command(cmd, timeout=timeout)


def view_from_select(res: CommandResult) -> MailboxView:
    v = MailboxView()
    uv = find_code(res, "UIDVALIDITY")
    if uv is None:
        raise ConformanceFailure(f"{res.command.split(' ')[0]} gave no UIDVALIDITY: {res}")
    v.uidvalidity = int(uv)
    hm = find_code(res, "HIGHESTMODSEQ")
    v.highestmodseq = int(hm) if hm else 0
    return v


def full_sync(conn: ImapConnection, mailbox: str, *, selected: CommandResult | None = None,
              timeout: float = 60.0) -> tuple[MailboxView, CommandResult]:
    """SELECT (unless given) and UID FETCH 1:* (FLAGS): the flags of every message (what a client without
    QRESYNC must download after every reconnect)."""
    res = selected or select(conn, mailbox, timeout=timeout)
    if not res.ok:
        raise HarnessError(f"cannot select {mailbox}: {res.tagged.first_line}")
    view = view_from_select(res)
    fetch = conn.command("UID FETCH 1:* (FLAGS)", timeout=timeout)
    if not fetch.ok:
        raise ConformanceFailure(f"UID FETCH 1:* (FLAGS) failed: {fetch.tagged.first_line}")
    for r in fetch.untagged:
        parsed = parse_fetch(r)
        if parsed is None:
            continue
        _, items = parsed
        if "UID" not in items:
            raise ConformanceFailure(f"UID FETCH response without UID: {r.first_line}")
        if "FLAGS" in items:
            view.flags[int(items["UID"])] = norm_flags(items["FLAGS"])
    return view, fetch


def ground_truth(conn: ImapConnection, mailbox: str) -> MailboxView:
    """A fresh full sync read read-only (EXAMINE) on an undisturbed connection."""
    res = select(conn, mailbox, examine=True, condstore=True)
    if not res.ok:
        raise HarnessError(f"cannot examine {mailbox} for the ground truth: {res.tagged.first_line}")
    view, _ = full_sync(conn, mailbox, selected=res)
    conn.command("UNSELECT")
    return view


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
    res = select(conn, mailbox, qresync=tuple(params), examine=examine, timeout=timeout)
    if not res.ok:
        raise ConformanceFailure(f"{'EXAMINE' if examine else 'SELECT'} (QRESYNC ...) refused: {res.tagged.first_line}")
    fresh = view_from_select(res)
    view = cached.copy() if fresh.uidvalidity == cached.uidvalidity else MailboxView()
    view.uidvalidity, view.highestmodseq = fresh.uidvalidity, fresh.highestmodseq
    out = Resync(res, view)
    out.vanished, out.fetched = apply_responses(view, res.untagged, out.problems, earlier_expected=True,
                                               require_modseq=True)
    # messages that arrived while we were away: UIDs above the highest we knew
    top = max(cached.flags, default=0)
    uidnext = find_code(res, "UIDNEXT")
    if uidnext is None or int(uidnext) > top + 1:
        new = conn.command(f"UID FETCH {top + 1}:* (FLAGS)", timeout=timeout)
        if not new.ok:
            raise ConformanceFailure(f"UID FETCH of new messages failed: {new.tagged.first_line}")
        _, got = apply_responses(view, new.untagged, out.problems)
        for uid in list(got):
            if uid <= top and uid not in cached.flags:
                view.flags.pop(uid, None)  # '*' matched an old message: not new
        out.fetched.update(got)
    return out


def populate(conn: ImapConnection, mailbox: str, count: int, *, size: int = 120, batch: int = 500,
             tag: str = "m") -> None:
    """Fill ``mailbox`` with ``count`` small messages: MULTIAPPEND batches with LITERAL+ (one round trip each)."""
    caps = set(conn.capability())
    multi = "MULTIAPPEND" in caps
    plus = "LITERAL+" in caps or "LITERAL-" in caps
    done = 0
    while done < count:
        n = min(batch if multi else 1, count - done)
        parts = []
        for i in range(done, done + n):
            body = f"Subject: {tag} {i}\r\nMessage-ID: <{tag}.{i}@lemonade.test>\r\n\r\n".encode()
            body += b"x" * max(0, size - len(body) - 2) + b"\r\n"
            parts.append(body)
        if plus:
            text = f"APPEND {quote(mailbox)} " + " ".join(
                f"{{{len(b)}+}}\r\n" + b.decode() for b in parts)
            res = conn.command(text, timeout=120)
        else:
            res = None
            for b in parts:
                res = conn.command(f"APPEND {quote(mailbox)}", literal=b, timeout=60)
                if not res.ok:
                    break
        if res is None or not res.ok:
            raise HarnessError(f"cannot fill {mailbox}: {res.tagged.first_line if res else 'no APPEND sent'}")
        done += n


@dataclass
class Changes:
    """The changes a second connection made: what a resync must report."""

    expunged: set[int] = field(default_factory=set)
    flagged: dict[int, str] = field(default_factory=dict)
    appended: int = 0

    def __str__(self) -> str:
        return (f"expunged UIDs {format_uid_set(self.expunged) or 'none'}, flag changes on "
                f"{format_uid_set(self.flagged) or 'none'}, {self.appended} new message(s)")


def change_mailbox(conn: ImapConnection, mailbox: str, uids: list[int], changes: int = 5) -> Changes:
    """Spread ``changes`` changes over the mailbox: about 2/5 flag changes, 2/5 expunges, 1/5 new messages."""
    out = Changes()
    if not uids:
        raise HarnessError("no messages to change")
    res = select(conn, mailbox)
    if not res.ok:
        raise HarnessError(f"cannot select {mailbox} to change it: {res.tagged.first_line}")
    n_flag = max(1, changes * 2 // 5)
    n_exp = max(1, changes * 2 // 5)
    n_new = max(0, changes - n_flag - n_exp)
    step = max(1, len(uids) // (n_flag + n_exp + 1))
    picks = [uids[min(len(uids) - 1, step * (i + 1) - 1)] for i in range(n_flag + n_exp)]
    picks = list(dict.fromkeys(picks))
    for uid in picks[:n_flag]:
        flag = "\\Flagged" if uid % 2 else "$Lemonade"
        r = conn.command(f"UID STORE {uid} +FLAGS ({flag})")
        if not r.ok:
            raise HarnessError(f"UID STORE failed: {r.tagged.first_line}")
        out.flagged[uid] = flag
    exp = picks[n_flag:]
    if exp:
        r = conn.command(f"UID STORE {format_uid_set(exp)} +FLAGS.SILENT (\\Deleted)")
        r2 = conn.command(f"UID EXPUNGE {format_uid_set(exp)}") if r.ok else r
        if not r2.ok:
            r2 = conn.command("EXPUNGE")
        if not r2.ok:
            raise HarnessError(f"expunge failed: {r2.tagged.first_line}")
        out.expunged = set(exp)
    conn.command("UNSELECT")
    if n_new:
        populate(conn, mailbox, n_new, tag="new")
        out.appended = n_new
    return out

