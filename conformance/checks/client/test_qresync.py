"""QRESYNC use (RFC 7162 3.2.5, 4): a client that enabled QRESYNC resynchronises with SELECT (QRESYNC ...), not by
fetching every UID's flags again; read from its commands in clear (a TLS-terminating relay) on a resync after
one new message and one flag change."""

from __future__ import annotations

import re

import pytest

from conformance.errors import ConformanceFailure, NotApplicable

from .support import LEG, client_timeline, delivered_once, play_failure, server_octets

RID = "client.qresync.use"
ENABLE = re.compile(r"^\S+ +ENABLE\b.*\bQRESYNC\b", re.I)
SELECT = re.compile(r"^\S+ +(?:SELECT|EXAMINE)\b", re.I)
WITH_QRESYNC = re.compile(r"\(\s*QRESYNC\s*\(", re.I)
# every message's flags again: FETCH over the whole mailbox (1:* or *:1) asking for FLAGS, no CHANGEDSINCE
FULL_FLAGS = re.compile(r"^\S+ +(?:UID +)?FETCH +(?:1:\*|\*:1)\s.*\bFLAGS\b", re.I)
CHANGEDSINCE = re.compile(r"\bCHANGEDSINCE\b", re.I)


def client_commands(case, start: float, end: float | None = None) -> list[tuple[float, str, str]]:
    """(time, connection, command line) the client sent through the relay in ``[start, end]``."""
    out = []
    for e in case.transcript.entries:
        if e.leg != LEG or e.direction != "C" or not e.conn.startswith("conn#") or e.t < start:
            continue
        if end is not None and e.t > end:
            continue
        out += [(e.t, e.conn, ln) for ln in e.text.split("\r\n") if ln.strip()]
    return out


def judge_resync(enabled: list, resync: list) -> tuple[str, str]:
    """The verdict of one resync from the client's commands: ("not-applicable" | "fail" | "pass", why)."""
    if not enabled:
        full = [c[2].strip()[:80] for c in resync if FULL_FLAGS.search(c[2]) and not CHANGEDSINCE.search(c[2])]
        return "not-applicable", ("the client never sent ENABLE QRESYNC: the rule binds a client that enabled it"
                                  + (f"; its resync fetched every message's flags ({full[0]!r})" if full else ""))
    selects = [c for c in resync if SELECT.search(c[2])]
    if not selects:
        return "fail", "the resync selected no mailbox at all"
    plain = [c for c in selects if not WITH_QRESYNC.search(c[2])]
    full = [c for c in resync if FULL_FLAGS.search(c[2]) and not CHANGEDSINCE.search(c[2])]
    bad = plain + full
    if bad:
        what = []
        if plain:
            what.append("SELECT/EXAMINE without (QRESYNC ...)")
        if full:
            what.append("a FETCH of every message's FLAGS without CHANGEDSINCE")
        return "fail", (f"after ENABLE QRESYNC the resync used {' and '.join(what)}: "
                        + "; ".join(f"t={t:.3f} {conn} {line.strip()[:90]!r}" for t, conn, line in bad[:3]))
    return "pass", "resync by " + "; ".join(repr(line.strip()[:90]) for _, _, line in selects[:2])


@pytest.mark.requirement(RID)
@pytest.mark.scenarios("direct")
def test_qresync_use(case, clear_session, mailbox):
    """Sync, one new message and one flag change, sync again: how the client resynchronised, read in clear."""
    session = clear_session
    if "QRESYNC" not in {c.upper() for c in mailbox.conn.capability()}:
        raise NotApplicable(f"target {case.target.name} does not advertise QRESYNC")
    mids = mailbox.append_many("qr", 6, size=1024)
    t0 = case.transcript.now()
    first = session.play("sync", timeout=60)
    missing, _ = delivered_once(session, mids)
    if missing:
        raise ConformanceFailure(f"{RID}: the first sync delivered {len(mids) - len(missing)} of {len(mids)} messages, "
                                 f"so there is nothing to resynchronise; {play_failure(session, first)}")
    new = mailbox.append("qr-new", size=1024)
    res = mailbox.conn.command(f'SELECT "{mailbox.name}"')
    res = res.ok and mailbox.conn.command("STORE 1 +FLAGS (\\Flagged)")
    if not res or not res.ok:
        raise ConformanceFailure(f"{RID}: the suite could not flag a message in {mailbox.name} (harness)")
    mailbox.conn.command("UNSELECT")
    t2 = case.transcript.now()
    second = session.play("sync", timeout=60)
    t3 = case.transcript.now()
    enabled = [c for c in client_commands(case, t0) if ENABLE.search(c[2])]
    resync = client_commands(case, t2, t3)
    verdict, why = judge_resync(enabled, resync)
    pulled = server_octets(case, t2, t3)
    case.attach("resync_commands", [f"t={t:.3f} {conn} {line.strip()[:200]}" for t, conn, line in resync[:200]])
    case.measure("qresync_enabled", bool(enabled), "")
    case.measure("resync_commands", len(resync), "")
    case.measure("resync_server_octets", pulled, "B", changed="1 new message (about 1.2 kB), 1 flag",
                 mailbox_messages=len(mids) + 1)
    case.attach("timeline", client_timeline(case, session, f"{session.adapter.name}: resync in clear",
                                            start=max(0.0, t2 - 0.5), changes={new: mailbox.appended[new]}).as_dict(
                                                "pass" if verdict == "pass" else verdict))
    if session.output.first(new) is None:
        case.note(f"the resync did not deliver the new message; {play_failure(session, second)}")
    if verdict == "not-applicable":
        case.requirement_not_applicable(RID, f"client {session.adapter.name}: {why} ({len(resync)} commands on the "
                                        "resync, in the attachment resync_commands)")
        return
    case.require(RID, verdict == "pass", f"{RID}: {why}")
    case.passed(f"ENABLE QRESYNC, then {why}; the resync pulled {pulled} octets")
