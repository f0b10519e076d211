"""UIDPLUS (RFC 4315, RFC 9051 6.3.12): UID EXPUNGE removes only what it names; UIDs are not disclosed to a client that
may append to a mailbox but not read it."""

from __future__ import annotations

import re

import pytest

from conformance.checks.support import Blame, ChangeMaker, append, search_uids, select
from conformance.checks.support.imap import APPENDUID
from conformance.errors import NotApplicable
from conformance.protocols.imapwire import parse_expunge, quote

from .roundtrip import COPYUID

NOTE = b"From: uidplus-check@lemonade.test\r\nSubject: UIDPLUS {n}\r\n\r\nmessage {n}\r\n"


def note(n: int | str) -> bytes:
    return NOTE.replace(b"{n}", str(n).encode())


@pytest.mark.requirement("uidplus.uid-expunge")
def test_uid_expunge_only_named(case):
    """With three messages, two of them \\Deleted, UID EXPUNGE of one removes exactly that one (RFC 4315 2.1): the
    other \\Deleted message and the undeleted one stay, and UID EXPUNGE of an undeleted message removes nothing."""
    imap = case.imap()
    case.require_capability(imap.capability(), "UIDPLUS")
    box = case.scratch_mailbox(imap, "uid-expunge")
    select(imap, box)
    for n in range(3):
        append(imap, box, note(n))
    uids = search_uids(imap)
    if len(uids) != 3:
        raise Blame.HARNESS.exception(f"expected 3 messages in {box}, found UIDs {uids}")
    first, second, third = uids
    res = imap.command(f"UID STORE {first}:{second} +FLAGS.SILENT (\\Deleted)")
    if not res.ok:
        raise Blame.HARNESS.exception(f"cannot mark {first}:{second} \\Deleted: {res.tagged.first_line}")
    problems = []
    res = imap.command(f"UID EXPUNGE {first}")
    expunged = [n for r in res.untagged if (n := parse_expunge(r)) is not None]
    left = search_uids(imap)
    if not res.ok:
        problems.append(f"UID EXPUNGE {first} refused: {res.tagged.first_line}")
    if left != [second, third]:
        problems.append(f"after UID EXPUNGE {first} the mailbox holds UIDs {left}, expected [{second}, {third}] "
                        f"(UID {second} is \\Deleted too but was not named)")
    if res.ok and expunged != [1]:
        problems.append(f"UID EXPUNGE {first} reported EXPUNGE of sequence numbers {expunged}, expected [1]")
    res = imap.command(f"UID EXPUNGE {third}")
    after = search_uids(imap)
    if after != left:
        problems.append(f"UID EXPUNGE {third} (not \\Deleted) changed the mailbox from {left} to {after}")
    case.require("uidplus.uid-expunge", not problems, "; ".join(problems))
    case.passed(f"UID EXPUNGE {first} removed only UID {first}; UID {second} (\\Deleted, not named) and UID {third} "
                f"stayed; UID EXPUNGE {third} removed nothing")


def other_users_mailbox(conn, owner: str, mailbox: str) -> str:
    """The name under which another user's ``mailbox`` of ``owner`` appears in ``conn``'s NAMESPACE (RFC 2342: the
    other users' prefix, the owner, the separator, the name)."""
    res = conn.command("NAMESPACE")
    line = next((r.first_line for r in res.untagged if r.first_line.upper().startswith("* NAMESPACE")), "")
    groups = re.findall(r'\(\("([^"]*)" (?:"([^"]*)"|NIL)\)[^)]*\)|NIL', line[len("* NAMESPACE "):])
    if len(groups) < 2 or not groups[1][0]:
        raise NotApplicable(f"the server has no other users' namespace to share a mailbox through ({line or res})")
    prefix, sep = groups[1]
    return f"{prefix}{owner}{sep or '/'}{mailbox}"


@pytest.mark.requirement("uidplus.no-disclosure")
def test_no_uids_without_read_right(case):
    """A user who may insert into another user's mailbox but not read it (ACL rights 'li', RFC 4314) gets APPEND and
    COPY answered without APPENDUID or COPYUID (RFC 4315 3, RFC 9051 6.3.12: they would disclose the mailbox's
    UIDs to someone who may not select it)."""
    owner = ChangeMaker(case, label="owner")
    caps = owner.conn.capability()
    case.require_capability(caps, "UIDPLUS")
    if "ACL" not in caps:
        raise NotApplicable("the server has no ACL (RFC 4314): a client cannot make a mailbox appendable but not "
                            "readable for another user")
    guest_account = case.account(1)
    box = owner.scratch_mailbox("no-disclosure")
    grant = owner.conn.command(f"SETACL {quote(box)} {quote(guest_account.username)} li")
    if not grant.ok:
        raise NotApplicable(f"SETACL {box} {guest_account.username} li refused: {grant.tagged.first_line}")
    guest = case.imap(1, label="guest")
    shared = other_users_mailbox(guest, case.account(0).username, box)
    sel = guest.command(f"SELECT {quote(shared)}")
    if sel.ok:
        raise NotApplicable(f"{guest_account.username} may SELECT {shared} despite the 'li' rights: the precondition "
                            "(append but not read) does not hold")
    done = append(guest, shared, note("guest"), blame=Blame.PREREQUISITE)
    own = case.scratch_mailbox(guest, "guest-source")
    select(guest, own)
    append(guest, own, note("to-copy"))
    source = search_uids(guest)
    copy = guest.command(f"UID COPY {source[0]} {quote(shared)}")
    disclosed = []
    if APPENDUID.search(done.result.tagged.first_line):
        disclosed.append(f"APPEND answered {done.result.tagged.first_line!r}")
    if not copy.ok:
        case.note(f"UID COPY into {shared} refused ({copy.tagged.first_line}): only APPEND judged")
    elif COPYUID.search(copy.tagged.first_line):
        disclosed.append(f"UID COPY answered {copy.tagged.first_line!r}")
    case.require("uidplus.no-disclosure", not disclosed,
                 f"{guest_account.username} may append to {shared} but not read it, yet got its UIDs: "
                 + "; ".join(disclosed))
    case.passed(f"APPEND{' and COPY' if copy.ok else ''} into {shared} (rights 'li') answered without UIDs: "
                f"{done.result.tagged.first_line}")
