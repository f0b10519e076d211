"""IMAP steps every check family takes: SELECT/EXAMINE, APPEND, UID SEARCH, UID FETCH, filling a mailbox.

They work on any ``ImapConnection`` (the one under test or an undisturbed second one) and parse with the sans-IO
readers of ``conformance.protocols.imapwire``. Each takes ``blame`` (see ``blame.py``): who is at fault when the
server refuses the step; the default is the harness's, as for a set-up step.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from conformance.protocols.imap import CommandResult, ImapConnection
from conformance.protocols.imapwire import Response, parse_exists, parse_fetch, parse_search, quote, response_code
from conformance.protocols.members import Obj

from .blame import Blame, refuse

APPENDUID = re.compile(r"\[APPENDUID (\d+) ([0-9:,]+)\]", re.I)
_flags_re = re.compile(r"^\* FLAGS \(([^)]*)\)", re.I)


@dataclass
class Selected:
    """What SELECT or EXAMINE said about a mailbox (None: the server did not say), with the raw result."""

    mailbox: str
    result: CommandResult = field(repr=False)
    exists: int | None = None
    uidvalidity: int | None = None
    uidnext: int | None = None
    highestmodseq: int | None = None
    nomodseq: bool = False
    flags: list[str] | None = None
    permanentflags: list[str] | None = None

    @property
    def ok(self) -> bool:
        """Did the server answer OK?"""
        return self.result.ok

    def code(self, name: str) -> str | None:
        """The first response code ``name`` among the untagged responses and the tagged one ('' without argument)."""
        return find_code(self.result, name)


def find_code(res: CommandResult, name: str) -> str | None:
    """The first response code ``name`` in a command's untagged responses, then its tagged one."""
    for r in [*res.untagged, res.tagged]:
        value = response_code(r, name)
        if value is not None:
            return value
    return None


def _number(value: str | None) -> int | None:
    """A response code's numeric argument, or None."""
    return int(value) if value is not None and value.isdigit() else None


def selected_from(mailbox: str, res: CommandResult) -> Selected:
    """Read a SELECT/EXAMINE result: EXISTS, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ/NOMODSEQ, FLAGS, PERMANENTFLAGS."""
    sel = Selected(mailbox, res)
    for r in res.untagged:
        if (n := parse_exists(r)) is not None:
            sel.exists = n
        elif m := _flags_re.match(r.first_line):
            sel.flags = m.group(1).split()
    sel.uidvalidity = _number(sel.code("UIDVALIDITY"))
    sel.uidnext = _number(sel.code("UIDNEXT"))
    sel.highestmodseq = _number(sel.code("HIGHESTMODSEQ"))
    sel.nomodseq = sel.code("NOMODSEQ") is not None
    perm = sel.code("PERMANENTFLAGS")
    if perm is not None:
        sel.permanentflags = perm.strip("()").split()
    return sel


def select(conn: ImapConnection, mailbox: str, *, examine: bool = False, condstore: bool = False,
           qresync: tuple | None = None, timeout: float | None = None,
           blame: Blame | None = Blame.HARNESS) -> Selected:
    """SELECT (or EXAMINE) ``mailbox``, with (CONDSTORE) or (QRESYNC (uidvalidity modseq [known-uids
    [seq-match]])) when asked (empty QRESYNC parameters are left out)."""
    verb = "EXAMINE" if examine else "SELECT"
    command = f"{verb} {quote(mailbox)}"
    if qresync is not None:
        command += " (QRESYNC (" + " ".join(str(x) for x in qresync if x not in (None, "")) + "))"
    elif condstore:
        command += " (CONDSTORE)"
    res = conn.command(command, timeout=timeout)
    if not res.ok:
        refuse(blame, f"{verb} {mailbox} refused: {res.tagged.first_line}")
    return selected_from(mailbox, res)


def examine(conn: ImapConnection, mailbox: str, **kw) -> Selected:
    """EXAMINE ``mailbox`` (read-only SELECT); options and blame as for ``select``."""
    return select(conn, mailbox, examine=True, **kw)


@dataclass
class Appended:
    """An APPEND's result, and the APPENDUID it carried when the server has UIDPLUS."""

    result: CommandResult = field(repr=False)
    uidvalidity: int | None = None
    uid_set: str | None = None  # APPENDUID's UID set as sent ('7', or '7:9' for a MULTIAPPEND)

    @property
    def ok(self) -> bool:
        """Did the server answer OK?"""
        return self.result.ok

    @property
    def uid(self) -> int | None:
        """The new message's UID when APPENDUID named exactly one."""
        return int(self.uid_set) if self.uid_set and self.uid_set.isdigit() else None


def append(conn: ImapConnection, mailbox: str, message: bytes, *, flags: str = "", literal: str = "sync",
           timeout: float | None = None, blame: Blame | None = Blame.HARNESS) -> Appended:
    """APPEND ``message`` to ``mailbox`` with ``flags`` (e.g. '\\Seen $Forwarded').

    ``literal``: "sync" ({n}, sent after the server's '+'), "non-sync" ({n+}, LITERAL+: command and message in one
    write, no '+' awaited; any continuation the server sends anyway stays in ``result.untagged``), or "literal8"
    (~{n}, RFC 3516 BINARY, sent after '+').
    """
    head = f"APPEND {quote(mailbox)}" + (f" ({flags})" if flags else "")
    if literal == "sync":
        res = conn.command(f"{head} {{{len(message)}}}", literal=message, timeout=timeout)
    elif literal == "literal8":
        res = conn.command(f"{head} ~{{{len(message)}}}", literal=message, timeout=timeout)
    elif literal == "non-sync":
        tag = conn.next_tag()
        line = f"{tag} {head} {{{len(message)}+}}"
        conn.send_raw(line.encode() + b"\r\n" + message + b"\r\n", note=f"{line} + {len(message)} octets in one write")
        res = conn.wait_tagged(tag, timeout=timeout)
    else:
        raise ValueError(f"literal must be sync, non-sync or literal8, not {literal!r}")
    if not res.ok:
        refuse(blame, f"APPEND of {len(message)} octets to {mailbox} refused: {res.tagged.first_line}")
    m = APPENDUID.search(res.tagged.first_line)
    return Appended(res, int(m.group(1)) if m else None, m.group(2) if m else None)


def search_uids(conn: ImapConnection, criteria: str = "ALL", *, blame: Blame | None = Blame.HARNESS) -> list[int]:
    """UID SEARCH ``criteria`` in the selected mailbox: the UIDs found, sorted."""
    res = conn.command(f"UID SEARCH {criteria}")
    if not res.ok:
        refuse(blame, f"UID SEARCH {criteria} refused: {res.tagged.first_line}")
    return sorted(uid for r in res.untagged for uid in (parse_search(r) or []))


def uids(conn: ImapConnection, *, blame: Blame | None = Blame.HARNESS) -> list[int]:
    """Every UID of the selected mailbox, sorted (NOOP first, so messages this session appended are announced)."""
    conn.command("NOOP")
    return search_uids(conn, "ALL", blame=blame)


def fetch_uid(conn: ImapConnection, uid: int, *items: str, blame: Blame | None = Blame.HARNESS) -> Obj:
    """UID FETCH ``items`` of one message: its FETCH items merged over every FETCH response for it (a server may
    split them); empty when the server sent none. Literals (BODY[...], BINARY[...]) are bytes."""
    res = conn.command(f"UID FETCH {uid} ({' '.join(items)})")
    if not res.ok:
        refuse(blame, f"UID FETCH {uid} ({' '.join(items)}) refused: {res.tagged.first_line}")
    return fetch_items(res.untagged, uid)


FETCH_ITEMS = {"UID": int, "MODSEQ": int, "FLAGS": list, "RFC822.SIZE": int}


def fetch_items(responses: list[Response], uid: int) -> Obj:
    """The FETCH items for ``uid`` merged over ``responses`` (a FETCH without UID counts for it too), read through
    ``Obj``: ``items["MODSEQ"]`` on a FETCH that lacks it fails naming the item (RFC 9051 7.5.2), no KeyError."""
    merged: dict[str, object] = {}
    for r in responses:
        parsed = parse_fetch(r)
        if parsed and parsed[1].get("UID", uid) == uid:
            merged.update(parsed[1])
    return Obj(merged, f"the FETCH response for UID {uid}", "RFC 9051 7.5.2", FETCH_ITEMS)


def populate(conn: ImapConnection, mailbox: str, count: int, *, size: int = 120, batch: int = 500,
             tag: str = "m", blame: Blame | None = Blame.HARNESS) -> None:
    """Fill ``mailbox`` with ``count`` small messages (Subject '<tag> <i>'): MULTIAPPEND batches with LITERAL+ (one
    round trip each) when offered, else one APPEND per message."""
    caps = set(conn.capability())
    multi = "MULTIAPPEND" in caps
    plus = "LITERAL+" in caps or "LITERAL-" in caps
    done = 0
    unique = uuid.uuid4().hex[:10]  # a server may deduplicate by Message-ID: each run's messages are new ones
    while done < count:
        n = min(batch if multi else 1, count - done)
        parts = []
        for i in range(done, done + n):
            body = f"Subject: {tag} {i}\r\nMessage-ID: <{tag}.{i}.{unique}@lemonade.test>\r\n\r\n".encode()
            body += b"x" * max(0, size - len(body) - 2) + b"\r\n"
            parts.append(body)
        if plus:
            text = f"APPEND {quote(mailbox)} " + " ".join(f"{{{len(b)}+}}\r\n" + b.decode() for b in parts)
            res = conn.command(text, timeout=120)
        else:
            res = None
            for b in parts:
                res = conn.command(f"APPEND {quote(mailbox)}", literal=b, timeout=60)
                if not res.ok:
                    break
        if res is None or not res.ok:
            refuse(blame, f"cannot fill {mailbox}: {res.tagged.first_line if res else 'no APPEND sent'}")
            return
        done += n
