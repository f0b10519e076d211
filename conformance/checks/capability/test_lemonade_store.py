"""Lemonade message store behaviour (RFC 5550 section 5): keywords, URL-PARTIAL, binary APPEND, IDLE promptness."""

from __future__ import annotations

import re
import time

import pytest

from conformance.checks.support import ChangeMaker, append, fetch_uid, select, uids, untagged, wait_for_untagged
from conformance.errors import ConformanceFailure
from conformance.protocols.imapwire import parse_exists, parse_search, quote

from .samples import SAMPLE, SAMPLE_PART1

LEMONADE_KEYWORDS = ("$Forwarded", "$SubmitPending", "$Submitted")


def _has(flags: object, keyword: str) -> bool:
    """Is ``keyword`` among the FETCH FLAGS (any case)?"""
    return isinstance(flags, list) and keyword.upper() in {f.upper() for f in flags}


@pytest.mark.requirement("lemonade.store.keywords")
def test_lemonade_keywords_stored_copied_searchable(case):
    """$Forwarded, $SubmitPending and $Submitted can be set, are kept by COPY, and SEARCH KEYWORD finds them."""
    imap = case.imap()
    box = case.scratch_mailbox(imap)
    copy_box = case.scratch_mailbox(imap, prefix="lemonade-copy")
    append(imap, box, SAMPLE)
    select(imap, box)
    uid = uids(imap)[-1]
    res = imap.command(f"UID STORE {uid} +FLAGS ({' '.join(LEMONADE_KEYWORDS)})")
    assert res.ok, f"UID STORE +FLAGS ({' '.join(LEMONADE_KEYWORDS)}) was refused: {res.tagged.first_line}"
    flags = fetch_uid(imap, uid, "FLAGS").get("FLAGS")
    missing = [k for k in LEMONADE_KEYWORDS if not _has(flags, k)]
    assert not missing, f"after STORE the message lacks {' '.join(missing)} (FLAGS seen: {flags})"
    for kw in LEMONADE_KEYWORDS:
        res = imap.command(f"UID SEARCH KEYWORD {kw}")
        found = {uid for r in res.untagged for uid in parse_search(r) or []}
        assert res.ok and uid in found, (f"UID SEARCH KEYWORD {kw} did not find UID {uid} "
                                         f"(reply: {' | '.join(res.lines())})")
    res = imap.command(f"UID COPY {uid} {quote(copy_box)}")
    assert res.ok, f"UID COPY to {copy_box} failed: {res.tagged.first_line}"
    select(imap, copy_box)
    copied = uids(imap)
    assert copied, f"{copy_box} is empty after a successful COPY"
    flags = fetch_uid(imap, copied[-1], "FLAGS").get("FLAGS")
    missing = [k for k in LEMONADE_KEYWORDS if not _has(flags, k)]
    assert not missing, f"COPY lost {' '.join(missing)}: the copy's FLAGS are {flags}"
    res = imap.command("UID SEARCH KEYWORD $Submitted")
    found = {uid for r in res.untagged for uid in parse_search(r) or []}
    assert copied[-1] in found, f"SEARCH KEYWORD $Submitted in the copy's mailbox missed it ({' | '.join(res.lines())})"
    case.passed("all three keywords stored, found by SEARCH KEYWORD and kept by COPY")


@pytest.mark.requirement("lemonade.store.url-partial")
def test_url_partial_in_catenate_and_urlfetch(case):
    """CATENATE with ;PARTIAL= copies exactly the octet range; URLFETCH of a PARTIAL URLAUTH URL returns it too."""
    imap = case.imap()
    caps = imap.capability()
    case.require_capability(caps, "URL-PARTIAL", "CATENATE")
    box = case.scratch_mailbox(imap)
    append(imap, box, SAMPLE)
    sel = select(imap, box)
    src = uids(imap)[-1]
    slices = {(0, 10): SAMPLE_PART1[0:10], (6, 7): SAMPLE_PART1[6:13]}
    for (start, length), expected in slices.items():
        url = f"/{box};UIDVALIDITY={sel.uidvalidity}/;UID={src}/;SECTION=1/;PARTIAL={start}.{length}"
        res = imap.command(f"APPEND {quote(box)} CATENATE (URL {quote(url)})")
        assert res.ok, f"CATENATE with URL {url} was refused: {res.tagged.first_line}"
        new = uids(imap)[-1]
        body = fetch_uid(imap, new, "BODY.PEEK[]").get("BODY[]")
        assert body == expected, (f"CATENATE of {url} stored {body!r}, expected the {length} octets "
                                  f"{expected!r} starting at offset {start} of section 1")
    urlauth = "URLAUTH" in {c.upper() for c in caps}
    if urlauth:
        acct = case.account(0)
        host = case.target.endpoint("imap").host
        url = (f"imap://{acct.username}@{host}/{box};UIDVALIDITY={sel.uidvalidity}/;UID={src}/;SECTION=1"
               f"/;PARTIAL=6.7;URLAUTH=user+{acct.username}")
        res = imap.command(f"GENURLAUTH {quote(url)} INTERNAL")
        gen = res.find("GENURLAUTH")
        assert res.ok and gen, f"GENURLAUTH for a PARTIAL URL failed: {' | '.join(res.lines())}"
        authorized = gen[0].first_line.split(" ", 2)[2].strip().strip('"')
        res = imap.command(f"URLFETCH {quote(authorized)}")
        assert res.ok, f"URLFETCH of a PARTIAL URLAUTH URL failed: {res.tagged.first_line}"
        fetched = [r for r in res.find("URLFETCH")]
        data = fetched[0].literals[0] if fetched and fetched[0].literals else None
        if data is None and fetched:
            m = re.search(r'"([^"]*)"\s*$', fetched[0].first_line)
            data = m.group(1).encode() if m else None
        assert data == SAMPLE_PART1[6:13], (f"URLFETCH of a ;PARTIAL=6.7 URL returned {data!r}, "
                                            f"expected {SAMPLE_PART1[6:13]!r}")
    case.passed("PARTIAL ranges honoured by CATENATE" + (" and URLFETCH" if urlauth else ""))


BINARY_MESSAGE = (b"From: alice@example.test\r\n"
                  b"Subject: binary body\r\n"
                  b"MIME-Version: 1.0\r\n"
                  b"Content-Type: application/octet-stream\r\n"
                  b"Content-Transfer-Encoding: binary\r\n"
                  b"\r\n"
                  b"\x00\x01\x02 binary \xff\xfe octets \x00 with NUL\r\n")
BINARY_BODY = BINARY_MESSAGE.split(b"\r\n\r\n", 1)[1]


@pytest.mark.requirement("lemonade.store.binary-append")
def test_binary_append_accepted(case):
    """APPEND with a literal8 (~{n}) holding NUL octets and CTE binary is accepted and stored without loss."""
    imap = case.imap()
    caps = imap.capability()
    case.require_capability(caps, "BINARY")
    box = case.scratch_mailbox(imap)
    res = append(imap, box, BINARY_MESSAGE, literal="literal8", blame=None).result
    assert res.ok, (f"binary APPEND (literal8 with NUL octets, CTE binary) was refused: {res.tagged.first_line}; "
                    "RFC 5550 5.2 requires a Lemonade store to accept it")
    select(imap, box)
    stored = uids(imap)
    assert stored, f"binary APPEND answered OK but {box} is empty"
    got = fetch_uid(imap, stored[-1], "BINARY.PEEK[1]").get("BINARY[1]")
    assert got == BINARY_BODY, (f"BINARY[1] of the appended message is {got!r}, expected the {len(BINARY_BODY)} "
                                f"octets appended ({BINARY_BODY!r})")
    case.passed(f"literal8 APPEND accepted; BINARY[1] returns the {len(BINARY_BODY)} octets unchanged")


@pytest.mark.requirement("lemonade.store.idle-timely")
def test_idle_notification_is_prompt(case):
    """While one session IDLEs on a mailbox, a message appended by another is announced within max_latency."""
    max_latency = case.param("max_latency")
    imap = case.imap(label="idler")
    case.require_capability(imap.capability(), "IDLE")
    box = case.scratch_mailbox(imap)
    sel = select(imap, box)
    tag = imap.idle()
    other = ChangeMaker(case, label="appender")
    t0 = time.monotonic()
    other.append(box, SAMPLE)
    grown = wait_for_untagged(imap, lambda r: (parse_exists(r) or 0) > (sel.exists or 0),
                              t0 + max_latency - time.monotonic())
    latency = time.monotonic() - t0 if grown is not None else None
    end = imap.done(tag)
    assert end.ok, f"DONE was not answered with OK: {end.tagged.first_line}"
    if latency is None:
        late = [r.first_line for r in end.untagged if untagged.exists()(r)]
        raise ConformanceFailure(f"no EXISTS while idling within {max_latency:g} s of the APPEND"
                       + (f"; it came only after DONE ({late[0]})" if late else "; not even after DONE"))
    case.measure("idle_latency", round(latency, 3), "s", limit=max_latency)
    case.passed(f"EXISTS arrived {latency * 1000:.0f} ms after the other session's APPEND (limit {max_latency:g} s)")
