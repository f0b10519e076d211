"""CATENATE refusals (RFC 4469 3, 4.1, 4.2; RFC 7889 4): a URL the server cannot resolve, a result too big.

A refused CATENATE stores nothing: the mailbox holds as many messages afterwards as before.
"""

from __future__ import annotations

import re

import pytest

from conformance.checks.support import append, select, uids
from conformance.errors import NotApplicable
from conformance.protocols.imapwire import quote, response_code

PART = (b"From: catenate-check@lemonade.test\r\nSubject: catenate source\r\nContent-Type: text/plain\r\n\r\n"
        b"A part other messages are built from.\r\n")


def catenate(imap, mailbox: str, urls: list[str], *, timeout: float | None = None):
    """APPEND ``mailbox`` CATENATE (URL "u1" URL "u2" ...): the tagged result."""
    parts = " ".join(f"URL {quote(u)}" for u in urls)
    return imap.command(f"APPEND {quote(mailbox)} CATENATE ({parts})", timeout=timeout)


@pytest.mark.requirement("catenate.badurl")
def test_catenate_badurl(case):
    """A CATENATE whose URL names a message that does not exist, or another server, fails with tagged NO and the
    BADURL code naming the first URL that failed (RFC 4469 3, 4.1), and stores nothing."""
    imap = case.imap()
    case.require_capability(imap.capability(), "CATENATE")
    box = case.scratch_mailbox(imap, "catenate-bad")
    sel = select(imap, box)
    done = append(imap, box, PART)
    uidvalidity = done.uidvalidity or sel.uidvalidity
    uid = done.uid or 1
    good = f"/{box};UIDVALIDITY={uidvalidity}/;UID={uid}"
    missing = f"/{box};UIDVALIDITY={uidvalidity}/;UID={uid + 100000}"
    foreign = "imap://other.example/INBOX/;UID=1"
    tries = {"a UID that does not exist": ([good, missing, foreign], missing),
             "a URL of another server": ([good, foreign, missing], foreign)}
    problems, seen, plain_no = [], [], []
    for what, (urls, first_bad) in tries.items():
        before = uids(imap)
        res = catenate(imap, box, urls)
        seen.append(f"{what}: {res.tagged.first_line}")
        code = response_code(res.tagged, "BADURL")
        if res.status != "NO":
            problems.append(f"{what}: {res.tagged.first_line!r}, expected tagged NO [BADURL {first_bad}]")
        elif code is None:
            plain_no.append(what)
        elif code.strip().strip('"') != first_bad:  # a quoted URL still names it
            problems.append(f"{what}: [BADURL {code}] does not name the first failing URL {first_bad}")
        elif code.strip().startswith('"'):
            case.note(f"{what}: the BADURL code quotes the URL (RFC 4469 9 gives it as bare text up to ']')")
        after = uids(imap)
        if after != before:
            problems.append(f"{what}: the refused CATENATE stored a message (UIDs {before} -> {after})")
    case.require("catenate.badurl", not problems, "; ".join(problems))
    if plain_no and not problems:
        case.note(f"tagged NO without the BADURL code for {', '.join(plain_no)} (RFC 4469 allows a plain NO)")
    case.passed("; ".join(seen))


def append_limit(caps: list[str]) -> int | None:
    """The APPENDLIMIT=n of a CAPABILITY list (RFC 7889), or None."""
    for c in caps:
        m = re.fullmatch(r"APPENDLIMIT=(\d+)", c, re.I)
        if m:
            return int(m.group(1))
    return None


@pytest.mark.requirement("catenate.toobig")
def test_catenate_toobig(case):
    """A CATENATE whose result exceeds the server's announced APPENDLIMIT (RFC 7889) fails with tagged NO [TOOBIG]
    (RFC 4469 4.2, RFC 7889 4), in bounded time, and stores nothing. The 4 GB limit of RFC 4469 itself is beyond a
    bounded check: without an announced limit the requirement is not applicable."""
    imap = case.imap()
    caps = imap.capability()
    case.require_capability(caps, "CATENATE")
    limit = append_limit(caps)
    if limit is None:
        raise NotApplicable("the server announces no APPENDLIMIT (RFC 7889); reaching the 4 GB limit of RFC 4469 4.2 "
                            "would make it store 4 GB, beyond a bounded check")
    bound = case.param("max_limit")
    if limit > bound:
        raise NotApplicable(f"APPENDLIMIT={limit} is larger than this check builds ({bound} octets at this depth)")
    box = case.scratch_mailbox(imap, "catenate-big")
    sel = select(imap, box)
    source = PART + b"y" * 76 + b"\r\n" + (b"z" * 76 + b"\r\n") * max(1, min(limit, 1 << 20) // 156)
    done = append(imap, box, source)
    url = f"/{box};UIDVALIDITY={done.uidvalidity or sel.uidvalidity}/;UID={done.uid or 1}"
    copies = limit // len(source) + 1
    before = uids(imap)
    res = catenate(imap, box, [url] * copies, timeout=max(case.deadline, 30.0))
    after = uids(imap)
    case.measure("appendlimit", limit, "B")
    case.measure("composed", copies * len(source), "B")
    problems = []
    if res.status != "NO" or (res.code or "").upper() != "TOOBIG":
        problems.append(f"CATENATE of {copies} x {len(source)} octets (limit {limit}) answered "
                        f"{res.tagged.first_line!r}, expected tagged NO [TOOBIG]")
    if after != before:
        problems.append(f"the refused CATENATE stored a message (UIDs {before} -> {after})")
    case.require("catenate.toobig", not problems, "; ".join(problems))
    case.passed(f"{copies * len(source)} octets over APPENDLIMIT={limit}: {res.tagged.first_line}")
