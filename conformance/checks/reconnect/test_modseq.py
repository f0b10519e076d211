"""Modification sequences (RFC 7162 CONDSTORE): every flag change gets a new, larger mod-sequence, so that a
client that remembers the highest one it saw can later ask only for what changed since."""

from __future__ import annotations

import pytest

from conformance.checks.support import populate, select
from conformance.errors import ConformanceFailure, HarnessError
from conformance.protocols.imap import CommandResult, ImapConnection
from conformance.protocols.imapwire import parse_fetch


def store_modseq(conn: ImapConnection, uid: int, change: str) -> tuple[int, CommandResult]:
    """UID STORE ``change`` on ``uid``; the MODSEQ the server reported for it (from the STORE's FETCH data, or
    a UID FETCH (MODSEQ) afterwards when the server left MODSEQ out of it)."""
    res = conn.command(f"UID STORE {uid} {change}")
    if not res.ok:
        raise ConformanceFailure(f"UID STORE {uid} {change} failed: {res.tagged.first_line}")
    for r in res.untagged:
        p = parse_fetch(r)
        if p and str(p[1].get("UID")) == str(uid) and "MODSEQ" in p[1]:
            return modseq_value(p[1]["MODSEQ"], r.first_line), res
    got = conn.command(f"UID FETCH {uid} (MODSEQ)")
    for r in got.untagged:
        p = parse_fetch(r)
        if p and "MODSEQ" in p[1]:
            return modseq_value(p[1]["MODSEQ"], r.first_line), res
    raise ConformanceFailure(f"no MODSEQ for UID {uid} after UID STORE {change}, neither in its FETCH data nor "
                             f"in UID FETCH {uid} (MODSEQ): {got}")


def modseq_value(item, line: str) -> int:
    """A MODSEQ item as a number; anything else fails the check."""
    value = item[0] if isinstance(item, (list, tuple)) and item else item
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConformanceFailure(f"MODSEQ is not a number: {line!r}") from None


@pytest.mark.requirement("condstore.modseq-order")
def test_store_modseq_grows(case):
    """Three flag changes (two on one message, one on another) get three distinct, increasing mod-sequences,
    each above the HIGHESTMODSEQ of the SELECT; a +FLAGS of a flag already set is reported (no rule judges it)
    if it moves the mod-sequence."""
    conn = case.imap()
    case.require_capability(conn.capability(), "CONDSTORE")
    name = case.scratch_mailbox(conn, "modseq")
    populate(conn, name, 2)
    assert conn.command("ENABLE CONDSTORE").ok, "ENABLE CONDSTORE failed although CONDSTORE is advertised"
    sel = select(conn, name)
    hm = sel.code("HIGHESTMODSEQ")
    assert hm, f"SELECT after ENABLE CONDSTORE gave no HIGHESTMODSEQ: {sel.result}"
    u1, u2 = _uids(conn)
    steps = [(u1, "+FLAGS (\\Flagged)"), (u2, "+FLAGS (\\Flagged)"), (u1, "+FLAGS ($Lemonade)")]
    seen = [int(hm)]
    for uid, change in steps:
        m, _ = store_modseq(conn, uid, change)
        assert m > seen[-1], (f"UID STORE {uid} {change} got MODSEQ {m}, expected more than the previous "
                              f"{seen[-1]} (mod-sequences so far: {seen})")
        seen.append(m)
    case.measure("modseqs", seen[1:], "")
    again, res = store_modseq(conn, u1, "+FLAGS (\\Flagged)")
    if again != seen[-1]:
        case.note(f"re-setting \\Flagged, already set on UID {u1}, moved its MODSEQ from {seen[-1]} to "
                           f"{again} (a client resyncing sees an unchanged message as changed)")
    case.passed(f"MODSEQ {' < '.join(map(str, seen))} over three STOREs (first is the SELECT's HIGHESTMODSEQ); "
                f"a redundant +FLAGS left it at {again}")


def _uids(conn: ImapConnection) -> tuple[int, int]:
    """The first two UIDs of the selected mailbox (the scratch mailbox holds two messages)."""
    res = conn.command("UID FETCH 1:* (FLAGS)")
    uids = sorted(int(p[1]["UID"]) for r in res.untagged if (p := parse_fetch(r)) and "UID" in p[1])
    if len(uids) < 2:
        raise HarnessError(f"expected two messages in the scratch mailbox, found UIDs {uids}")
    return uids[0], uids[1]
