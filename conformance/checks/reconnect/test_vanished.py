"""When an untagged VANISHED may come (RFC 7162 section 3.2.10.2): only for messages the client was told about,
only while a command is in progress, and not during FETCH, STORE or SEARCH (where sequence numbers must stay
stable), just like EXPUNGE."""

from __future__ import annotations

import pytest

from conformance.checks.support import ChangeMaker, full_sync, populate
from conformance.protocols.imap import ImapConnection
from conformance.protocols.imapwire import Response, format_uid_set, parse_exists, parse_vanished


def unannounced(responses: list[Response], known: set[int]) -> list[str]:
    """VANISHED (non-EARLIER) UIDs neither known to the client nor announced by an EXISTS before them. ``known``
    (the UIDs the client has) is updated in place."""
    problems = []
    pool = 0  # messages announced by EXISTS whose UIDs the client has not learned yet
    for r in responses:
        if (n := parse_exists(r)) is not None:
            pool = max(pool, n - len(known))
            continue
        v = parse_vanished(r)
        if v is None or v[0]:
            continue
        for uid in sorted(v[1]):
            if uid in known:
                known.discard(uid)
            elif pool > 0:
                pool -= 1
            else:
                problems.append(f"{r.first_line!r} names UID {uid}, never announced by EXISTS")
    return problems


def vanished_lines(responses: list[Response]) -> list[str]:
    """The first lines of the VANISHED responses among ``responses``."""
    return [r.first_line for r in responses if parse_vanished(r)]


@pytest.mark.requirement("qresync.vanished-visible-only")
def test_vanished_only_when_allowed(case):
    """Another connection expunges a known message: nothing arrives while no command is in progress, nothing
    during FETCH, STORE and SEARCH, then NOOP reports it. Then it appends a message and expunges it at once:
    a VANISHED for that UID is allowed only after an EXISTS announced the message."""
    conn: ImapConnection = case.imap()
    case.require_capability(conn.capability(), "QRESYNC")
    res = conn.command("ENABLE QRESYNC")
    assert res.ok and res.find("ENABLED"), f"ENABLE QRESYNC was not accepted with * ENABLED: {res}"
    name = case.scratch_mailbox(conn, "vanished")
    populate(conn, name, 4)
    cached, _ = full_sync(conn, name)
    known = set(cached.flags)
    uids = sorted(known)
    changer = ChangeMaker(case)
    changer.select(name)
    changer.expunge(uids[0])  # the second connection's change is set-up: a refusal is the harness's
    problems = []
    idle = conn.poll(0.5)
    if idle is not None:
        problems.append(f"sent {idle.first_line!r} while no command was in progress")
    for command in ("FETCH 1:* (FLAGS)", "STORE 2 +FLAGS.SILENT ($Lemonade)", "SEARCH ALL"):
        got = conn.command(command)
        if lines := vanished_lines(got.untagged):
            problems.append(f"VANISHED during {command.split(' ')[0]}: {lines}")
            unannounced(got.untagged, known)
    noop = conn.command("NOOP")
    problems += unannounced(noop.untagged, known)
    assert uids[0] not in known, (f"UID {uids[0]}, expunged by another connection, was never reported (FETCH, "
                                  f"STORE, SEARCH, NOOP): " + "; ".join(problems))
    # a message appended and expunged before this connection heard of it
    changer.populate(name, 1, tag="ghost")
    changer.conn.command("NOOP")
    changer.expunge(f"{uids[-1] + 1}:*")
    noop = conn.command("NOOP")
    problems += unannounced(noop.untagged, known)
    assert not problems, "; ".join(problems)
    case.passed(f"UID {uids[0]} reported only by NOOP (not during FETCH/STORE/SEARCH, nothing unsolicited); "
                f"the appended-and-expunged message: {vanished_lines(noop.untagged) or 'not reported'}; "
                f"left {format_uid_set(known)}")
