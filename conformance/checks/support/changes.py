"""The change-maker: a second, undisturbed IMAP connection that changes mailboxes while the one under test watches.

It connects straight to the target, not through the scenario path, so no intermediary fault reaches it, and its
commands land in the case transcript under its own label (``changer``), on the same clock as the connection under
test. Everything it does is set-up: a refusal is the harness's fault (``error``) unless a call says otherwise.
"""

from __future__ import annotations

import uuid
from typing import Any

from conformance.protocols.imap import CommandResult, ImapConnection

from .blame import Blame, refuse
from .imap import Appended, Selected, append, populate, search_uids, select

MESSAGE = (b"From: push-check@example.test\r\nTo: alice@example.test\r\nSubject: lemonade push check\r\n"
           b"Message-ID: <push-{n}.{unique}@example.test>\r\n\r\nA change the idling client should hear about.\r\n")


def message(n: int | str = 1) -> bytes:
    """A small message whose Message-ID carries ``n`` and a token of its own (push-n.<token>@example.test): a server
    that deduplicates by Message-ID or content must still store it, run after run."""
    return MESSAGE.replace(b"{n}", str(n).encode()).replace(b"{unique}", uuid.uuid4().hex[:12].encode())


class ChangeMaker:
    """A direct connection for ``account`` that appends, flags and expunges; ``conn`` is there for anything else.
    Each command waits at most ``timeout`` seconds (default: the run's ``--deadline``)."""

    def __init__(self, case: Any, *, account: int = 0, label: str = "changer", timeout: float | None = None) -> None:
        self.case = case
        self.conn: ImapConnection = case.imap(account, via_path=False, label=label, timeout=timeout)

    @property
    def label(self) -> str:
        """The connection's label in the transcript."""
        return self.conn.label

    def scratch_mailbox(self, prefix: str = "lemonade", *, messages: int = 0) -> str:
        """A fresh mailbox for this case (deleted at teardown), holding ``messages`` small messages numbered 1, 2, ...
        (one APPEND each)."""
        name = self.case.scratch_mailbox(self.conn, prefix)
        for n in range(1, messages + 1):
            self.append(name, n=n)
        return name

    def command(self, text: str, *, blame: Blame | None = Blame.HARNESS) -> CommandResult:
        """Any other change (CREATE, RENAME, DELETE, ...): the tagged result, refused or not."""
        res = self.conn.command(text)
        if not res.ok:
            refuse(blame, f"the second connection could not {text}: {res.tagged.first_line}")
        return res

    def select(self, mailbox: str, *, blame: Blame | None = Blame.HARNESS) -> Selected:
        """SELECT ``mailbox`` on the second connection (before STORE or EXPUNGE)."""
        return select(self.conn, mailbox, blame=blame)

    def append(self, mailbox: str, data: bytes | None = None, *, n: int | str = 1, flags: str = "",
               blame: Blame | None = Blame.HARNESS) -> Appended:
        """APPEND ``data`` (default: the small message number ``n``) to ``mailbox``."""
        return append(self.conn, mailbox, message(n) if data is None else data, flags=flags, blame=blame)

    def store(self, which: int | str, change: str, *, uid: bool = True,
              blame: Blame | None = Blame.HARNESS) -> CommandResult:
        """[UID] STORE ``which`` ``change`` (e.g. '+FLAGS (\\Flagged)') in the selected mailbox."""
        return self.command(f"{'UID ' if uid else ''}STORE {which} {change}", blame=blame)

    def expunge(self, which: int | str, *, uid: bool = True, blame: Blame | None = Blame.HARNESS) -> CommandResult:
        """Mark ``which`` \\Deleted and expunge it: UID EXPUNGE of just those UIDs (plain EXPUNGE when the server
        refuses that, e.g. without UIDPLUS), or with ``uid=False`` STORE by sequence number and EXPUNGE."""
        self.store(which, "+FLAGS.SILENT (\\Deleted)", uid=uid, blame=blame)
        res = self.conn.command(f"UID EXPUNGE {which}") if uid else self.conn.command("EXPUNGE")
        if uid and not res.ok:
            res = self.conn.command("EXPUNGE")
        if not res.ok:
            refuse(blame, f"the second connection could not expunge {which}: {res.tagged.first_line}")
        return res

    def uids(self) -> list[int]:
        """The UIDs of the selected mailbox."""
        return search_uids(self.conn)

    def populate(self, mailbox: str, count: int, **kw: Any) -> None:
        """Fill ``mailbox`` with ``count`` small messages (see ``imap.populate``)."""
        populate(self.conn, mailbox, count, **kw)
