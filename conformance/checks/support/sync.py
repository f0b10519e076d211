"""A mailbox as a client knows it (``MailboxView``), the full synchronisation that builds it, and the ground truth.

``full_sync`` is what a client without QRESYNC downloads after every reconnect (SELECT, then the UID and flags of
every message); run on the connection under test, a broken answer is the server's fault. ``ground_truth`` is the
same full sync, read-only, on an undisturbed direct connection: the state a check compares a client's
reconstruction with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from conformance.protocols.imap import CommandResult, ImapConnection
from conformance.protocols.imapwire import format_uid_set, parse_fetch

from .blame import Blame, refuse
from .imap import Selected, select

# flags that describe a session, not the message: never part of the compared state
SESSION_FLAGS = {"\\RECENT"}


def norm_flags(flags) -> frozenset[str]:
    """A message's flags without the session flags (\\Recent)."""
    return frozenset(f for f in flags if f.upper() not in SESSION_FLAGS)


@dataclass
class MailboxView:
    """UIDVALIDITY, HIGHESTMODSEQ and the flags of every UID, as one client knows them."""

    uidvalidity: int = 0
    highestmodseq: int = 0
    flags: dict[int, frozenset[str]] = field(default_factory=dict)

    def copy(self) -> "MailboxView":
        """An independent copy (the cache a resync starts from)."""
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


def view_from_select(sel: Selected, *, blame: Blame | None = Blame.SERVER) -> MailboxView:
    """A view holding the UIDVALIDITY and HIGHESTMODSEQ (0 when absent) a SELECT/EXAMINE reported."""
    if sel.uidvalidity is None:
        refuse(blame, f"{sel.result.command.split(' ')[0]} gave no UIDVALIDITY: {sel.result}")
    return MailboxView(sel.uidvalidity or 0, sel.highestmodseq or 0)


def full_sync(conn: ImapConnection, mailbox: str, *, selected: Selected | None = None, timeout: float = 60.0,
              blame: Blame | None = Blame.SERVER) -> tuple[MailboxView, CommandResult]:
    """SELECT (unless ``selected`` is given; a refusal is the harness's) and UID FETCH 1:* (FLAGS): the flags of
    every message. A missing UIDVALIDITY, a refused FETCH or a FETCH without UID is ``blame``'s."""
    sel = selected or select(conn, mailbox, timeout=timeout)
    view = view_from_select(sel, blame=blame)
    fetch = conn.command("UID FETCH 1:* (FLAGS)", timeout=timeout)
    if not fetch.ok:
        refuse(blame, f"UID FETCH 1:* (FLAGS) failed: {fetch.tagged.first_line}")
    for r in fetch.untagged:
        parsed = parse_fetch(r)
        if parsed is None:
            continue
        _, items = parsed
        if "UID" not in items:
            refuse(blame, f"UID FETCH response without UID: {r.first_line}")
            continue
        if "FLAGS" in items:
            view.flags[int(items["UID"])] = norm_flags(items["FLAGS"])
    return view, fetch


def ground_truth(case: Any, mailbox: str, *, conn: ImapConnection | None = None, label: str = "truth") -> MailboxView:
    """A fresh full sync, read-only (EXAMINE (CONDSTORE), then UNSELECT), on an undisturbed connection: ``conn``, or
    a new direct one labelled ``label``."""
    conn = conn or case.imap(via_path=False, label=label)
    sel = select(conn, mailbox, examine=True, condstore=True)
    view, _ = full_sync(conn, mailbox, selected=sel)
    conn.command("UNSELECT")
    return view
