"""Quick resynchronisation (RFC 7162 CONDSTORE/QRESYNC, RFC 5161 ENABLE): a client that lost its connection
reconstructs the mailbox from its cache plus the server's report of what changed, and the result must equal
the ground truth read by a fresh full sync."""

from __future__ import annotations

import re
import time

import pytest

from conformance.checks.support import (
    Blame,
    ChangeMaker,
    MailboxView,
    examine,
    find_code,
    full_sync,
    ground_truth,
    populate,
    select,
)
from conformance.errors import ConformanceFailure, HarnessError, ServerClosed, ServerTimeout
from conformance.protocols.imap import ImapConnection
from conformance.protocols.imapwire import format_uid_set, parse_exists, parse_fetch, parse_vanished, quote, response_code

from .resync import apply_responses, change_mailbox, quick_resync


def qresync_session(case, **kw) -> ImapConnection:
    """A logged-in connection (through the scenario path) that has enabled QRESYNC."""
    conn = case.imap(**kw)
    case.require_capability(conn.capability(), "QRESYNC")
    res = conn.command("ENABLE QRESYNC")
    assert res.ok and res.find("ENABLED"), f"ENABLE QRESYNC was not accepted with * ENABLED: {res}"
    return conn


def scratch_with(case, conn: ImapConnection, count: int) -> str:
    """A scratch mailbox holding ``count`` small messages."""
    name = case.scratch_mailbox(conn, "resync")
    populate(conn, name, count)
    return name


def fetch_items_lacking(commands) -> list[tuple[str, list[str]]]:
    """Per command, messages whose FETCH data (possibly split over several FETCH responses of that command, as
    IMAP allows) lacks UID or MODSEQ."""
    out = []
    for label, responses in commands:
        items: dict[int, set[str]] = {}
        lines: dict[int, list[str]] = {}
        for r in responses:
            if (p := parse_fetch(r)) is None:
                continue
            items.setdefault(p[0], set()).update(p[1])
            lines.setdefault(p[0], []).append(r.first_line)
        out += [(label, lines[seq]) for seq, got in items.items() if not {"UID", "MODSEQ"} <= got]
    return out


def enabled_names(res) -> set[str]:
    """The extensions an ENABLE's '* ENABLED' responses name, upper-cased."""
    return {w.upper() for r in res.find("ENABLED") for w in r.first_line.split()[2:]}


@pytest.mark.requirement("enable.enabled-response", "qresync.enable")
def test_enable_reports_enabled(case):
    """ENABLE answers with * ENABLED naming what it enabled (unknown names ignored) and leaves CAPABILITY alone;
    ENABLE QRESYNC CONDSTORE has the same effect as ENABLE QRESYNC."""
    conn = case.imap()
    before = conn.capability()
    case.require_capability(before, "ENABLE", "QRESYNC")
    res = conn.command("ENABLE QRESYNC X-LEMONADE-UNKNOWN")
    names = enabled_names(res)
    case.require("enable.enabled-response", res.ok, f"ENABLE QRESYNC X-LEMONADE-UNKNOWN failed (unknown names must be "
                                                    f"ignored): {res.tagged.first_line}")
    case.require("enable.enabled-response", "QRESYNC" in names, f"expected '* ENABLED QRESYNC', saw: {res}")
    case.require("qresync.enable", res.ok and "QRESYNC" in names, f"ENABLE QRESYNC did not enable QRESYNC: {res}")
    case.require("enable.enabled-response", "X-LEMONADE-UNKNOWN" not in names,
                 f"an unknown extension was reported as enabled: {res}")
    after = conn.capability()
    case.require("enable.enabled-response", sorted(before) == sorted(after),
                 f"CAPABILITY changed after ENABLE: before {' '.join(before)}; after {' '.join(after)}")
    other = case.imap(label="both-forms")
    res2 = other.command("ENABLE QRESYNC CONDSTORE")
    case.require("qresync.enable", res2.ok and "QRESYNC" in enabled_names(res2),
                 f"ENABLE QRESYNC CONDSTORE did not enable QRESYNC: {res2}")
    case.passed(f"ENABLED {' '.join(sorted(names))}; unknown name ignored; CAPABILITY unchanged")


@pytest.mark.requirement("qresync.select-preconditions")
def test_qresync_before_enable_is_bad(case):
    """SELECT (QRESYNC ...) before ENABLE QRESYNC is BAD; invalid parameters are BAD and leave nothing selected."""
    conn = case.imap()
    case.require_capability(conn.capability(), "QRESYNC")
    name = scratch_with(case, conn, 3)
    probe = case.imap(label="probe")
    uv = examine(probe, name, condstore=True).uidvalidity  # set-up: a refusal is the harness's
    if uv is None:
        raise HarnessError(f"EXAMINE {name} gave no UIDVALIDITY: the QRESYNC parameters cannot be built")
    probe.command("UNSELECT")
    res = select(conn, name, qresync=(uv, 1), blame=None).result
    assert res.status == "BAD", f"SELECT (QRESYNC ...) before ENABLE QRESYNC must be BAD, got: {res.tagged.first_line}"
    enabled = conn.command("ENABLE QRESYNC")
    if not enabled.ok:
        raise ConformanceFailure(f"ENABLE QRESYNC refused although QRESYNC is advertised: {enabled.tagged.first_line}")
    bad = conn.command(f"SELECT {quote(name)} (QRESYNC ({uv} -1))")
    assert bad.status == "BAD", f"SELECT with modseq -1 must be BAD, got: {bad.tagged.first_line}"
    after = conn.command("FETCH 1 (FLAGS)")
    assert after.status in ("NO", "BAD"), (f"after a BAD SELECT no mailbox may be selected, but FETCH worked: "
                                           f"{after.tagged.first_line}")
    case.passed("BAD before ENABLE, BAD for modseq -1, nothing selected afterwards")


@pytest.mark.requirement("qresync.select-baseline")
def test_stale_uidvalidity_ignored(case):
    """With a stale UIDVALIDITY the QRESYNC parameters are ignored: normal SELECT data, no VANISHED, no FETCH."""
    conn = qresync_session(case)
    name = scratch_with(case, conn, 6)
    uv = select(conn, name, blame=None).uidvalidity
    conn.command("UNSELECT")
    sel = select(conn, name, qresync=(uv + 1 if uv < 4294967295 else uv - 1, 1, "1:6"), blame=None)
    res = sel.result
    assert res.ok, f"SELECT (QRESYNC ...) with a stale UIDVALIDITY failed: {res.tagged.first_line}"
    missing = [what for what, ok in (
        ("FLAGS", sel.flags is not None), ("EXISTS", sel.exists is not None),
        ("UIDVALIDITY", sel.uidvalidity is not None), ("UIDNEXT", sel.code("UIDNEXT") is not None),
        ("PERMANENTFLAGS", sel.permanentflags is not None)) if not ok]
    assert not missing, f"SELECT (QRESYNC) left out normal SELECT data {missing}: {res}"
    resync = [r.first_line for r in res.untagged if parse_vanished(r) or parse_fetch(r)]
    assert not resync, f"stale UIDVALIDITY {uv + 1} must make the server ignore the QRESYNC data, but it sent: {resync}"
    case.passed("normal SELECT data and no resync data for a stale UIDVALIDITY")


def _drop_connection(case, conn: ImapConnection) -> str:
    """Lose ``conn`` the way the scenario's intermediary does: a cut now, or a silent NAT drop after idling."""
    nat = case.scenario.element("nat-idle")
    if nat is None:
        if case.path.kill("rst", endpoint="imap") < 1:
            raise HarnessError("the kill intermediary found no live connection to cut")
        try:
            conn.command("NOOP", timeout=3)
        except (ServerClosed, ServerTimeout):
            pass
        conn.close()
        return "cut by the intermediary (RST)"
    timeout = float(nat.get("timeout"))
    # stay idle past the NAT window (reading whatever the server volunteers), then find out: nothing comes back
    deadline = time.monotonic() + timeout + 0.5
    while time.monotonic() < deadline:
        conn.poll(max(0.05, deadline - time.monotonic()))
    try:
        conn.command("NOOP", timeout=1.5)
    except (ServerClosed, ServerTimeout):
        conn.close()
        return f"silently dropped after {timeout:g} s idle (NOOP unanswered)"
    raise HarnessError(f"nat-idle did not drop the connection after {timeout:g} s idle")


@pytest.mark.requirement("qresync.select.vanished-earlier", "qresync.vanished-before-fetch",
                         "mobile.reconnect.resync-after-drop")
@pytest.mark.scenarios("kill", "nat-idle:timeout=1,mode=silent")
def test_resync_after_drop(case):
    """Cache a mailbox, lose the connection in the intermediary, change the mailbox from a second connection,
    reconnect with SELECT (QRESYNC (uidvalidity modseq known-uids)): VANISHED (EARLIER) before any FETCH, UID
    in every FETCH, and the reconstructed state equals a fresh full sync."""
    conn = qresync_session(case, label="client")
    name = scratch_with(case, conn, 20)
    cached, _ = full_sync(conn, name)
    assert cached.highestmodseq, f"SELECT after ENABLE QRESYNC gave no HIGHESTMODSEQ for {name}"
    how = _drop_connection(case, conn)
    case.note(f"client connection {how}")
    changes = change_mailbox(ChangeMaker(case), name, sorted(cached.flags), changes=6)
    case.note(f"while the client was away: {changes}")
    again = qresync_session(case, label="client-again")
    resync = quick_resync(again, name, cached)
    truth = ground_truth(case, name)
    order = [p for p in resync.problems if "after a FETCH" in p]
    case.require("qresync.vanished-before-fetch", not order, "; ".join(order))
    other = [p for p in resync.problems if p not in order]
    case.require("qresync.select.vanished-earlier", not other, "; ".join(other))
    missed = changes.expunged - resync.vanished
    case.require("qresync.select.vanished-earlier", not missed,
                 f"expunged UIDs {format_uid_set(missed)} were not reported in VANISHED (EARLIER) "
                 f"(reported: {format_uid_set(resync.vanished) or 'nothing'})")
    diff = resync.view.diff(truth)
    for rid in ("qresync.select.vanished-earlier", "mobile.reconnect.resync-after-drop"):
        case.require(rid, not diff, "reconstructed state differs from a fresh full sync: " + "; ".join(diff))
    case.measure("resync_bytes", again.bytes_sent + again.bytes_received, "B")
    case.passed(f"{changes}; resync reconstructed {len(truth.flags)} messages exactly")


@pytest.mark.requirement("qresync.old-modseq")
def test_old_modseq_reports_every_expunge(case):
    """Resync (EXAMINE) from modseq 1: VANISHED (EARLIER) covers every expunged UID of known-uids, and no
    existing one."""
    conn = qresync_session(case)
    name = scratch_with(case, conn, 12)
    cached, _ = full_sync(conn, name)
    conn.command("UNSELECT")
    changes = change_mailbox(ChangeMaker(case), name, sorted(cached.flags), changes=8)
    stale = MailboxView(cached.uidvalidity, 1, dict(cached.flags))
    resync = quick_resync(conn, name, stale, modseq=1, examine=True)  # read-only resync
    truth = ground_truth(case, name)
    missed = changes.expunged - resync.vanished
    assert not missed, (f"resync from modseq 1 must report every expunged UID; missing {format_uid_set(missed)} "
                        f"(VANISHED: {format_uid_set(resync.vanished) or 'nothing'})")
    wrong = resync.vanished & set(truth.flags)
    assert not wrong, f"VANISHED (EARLIER) named UIDs that still exist: {format_uid_set(wrong)}"
    assert not resync.view.diff(truth), "; ".join(resync.view.diff(truth))
    case.passed(f"all {len(changes.expunged)} expunged UIDs reported from modseq 1")


@pytest.mark.requirement("qresync.uid-fetch-vanished", "condstore.changedsince")
def test_uid_fetch_changedsince_vanished(case):
    """UID FETCH 1:* (FLAGS) (CHANGEDSINCE m VANISHED): VANISHED (EARLIER) first, then FETCHes with MODSEQ > m;
    VANISHED without CHANGEDSINCE, on plain FETCH, or without ENABLE QRESYNC is BAD."""
    conn = qresync_session(case)
    name = scratch_with(case, conn, 15)
    cached, _ = full_sync(conn, name)
    changes = change_mailbox(ChangeMaker(case), name, sorted(cached.flags), changes=6)
    conn.command("UNSELECT")
    select(conn, name, blame=Blame.SERVER)  # a plain SELECT: the client then asks what changed since its modseq
    res = conn.command(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {cached.highestmodseq} VANISHED)")
    if not res.ok:
        raise ConformanceFailure(f"UID FETCH ... (CHANGEDSINCE m VANISHED) failed: {res.tagged.first_line}")
    problems: list[str] = []
    view = cached.copy()
    # unsolicited VANISHED (no EARLIER) for this session's own view may precede: apply them too
    vanished, _ = apply_responses(view, res.untagged, problems)
    truth = ground_truth(case, name)
    case.require("qresync.uid-fetch-vanished", not problems, "; ".join(problems))
    fetched = [(r.first_line, p[1]) for r in res.untagged if (p := parse_fetch(r))]
    without = [line for line, items in fetched if "MODSEQ" not in items]
    case.require("condstore.changedsince", not without,
                 f"CHANGEDSINCE must add MODSEQ to every FETCH it returns; without it: {without[:3]}")
    low = [line for line, items in fetched if "MODSEQ" in items and int(items["MODSEQ"]) <= cached.highestmodseq]
    case.require("condstore.changedsince", not low,
                 f"CHANGEDSINCE {cached.highestmodseq} returned messages with MODSEQ not above it: {low[:3]}")
    missed = changes.expunged - vanished
    case.require("qresync.uid-fetch-vanished", not missed,
                 f"expunged UIDs {format_uid_set(missed)} missing from VANISHED: {res}")
    diff = view.diff(truth)
    case.require("qresync.uid-fetch-vanished", not diff,
                 "cache + UID FETCH (CHANGEDSINCE VANISHED) differs from the server: " + "; ".join(diff))
    probes = {
        "UID FETCH without CHANGEDSINCE": conn.command("UID FETCH 1:* (FLAGS) (VANISHED)"),
        "plain FETCH with VANISHED": conn.command(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {cached.highestmodseq} VANISHED)"),
    }
    plain = case.imap(label="condstore-only")
    plain.command("ENABLE CONDSTORE")
    examine(plain, name, blame=None)
    probes["VANISHED without ENABLE QRESYNC"] = plain.command("UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")
    not_bad = [f"{what}: {r.tagged.first_line}" for what, r in probes.items() if r.status != "BAD"]
    case.require("qresync.uid-fetch-vanished", not not_bad, "expected BAD for: " + "; ".join(not_bad))
    case.passed(f"{changes}; VANISHED first, every FETCH above modseq {cached.highestmodseq}; 3 misuse probes BAD")


@pytest.mark.requirement("qresync.vanished-not-expunge", "qresync.fetch-uid-modseq-always")
def test_vanished_not_expunge_and_uid_modseq(case):
    """After ENABLE QRESYNC: expunges (own and another session's) come as VANISHED, never EXPUNGE; FETCHes caused
    by STORE, by an external agent and by an implicit \\Seen carry UID and MODSEQ."""
    conn = qresync_session(case)
    name = scratch_with(case, conn, 8)
    cached, _ = full_sync(conn, name)
    uids = sorted(cached.flags)
    seen: list = []
    own = conn.command(f"UID STORE {uids[0]} +FLAGS (\\Flagged)")
    seen += own.untagged
    conn.command(f"UID STORE {uids[1]} +FLAGS.SILENT (\\Deleted)")
    own_exp = conn.command("EXPUNGE")
    seen += own_exp.untagged
    changer = ChangeMaker(case)
    changer.select(name)
    changer.store(uids[2], "+FLAGS (\\Answered)")
    changer.expunge(uids[3])
    noop = conn.command("NOOP")
    seen += noop.untagged
    body = conn.command(f"UID FETCH {uids[4]} (BODY[])")  # sets \Seen implicitly
    seen += body.untagged
    expunge = [r.first_line for r in seen if r.first_line.upper().split(" ")[2:3] == ["EXPUNGE"]]
    case.require("qresync.vanished-not-expunge", not expunge,
                 f"EXPUNGE responses after ENABLE QRESYNC (must be VANISHED): {expunge}")
    vanished = set().union(*[v[1] for r in seen if (v := parse_vanished(r))] or [set()])
    case.require("qresync.vanished-not-expunge", {uids[1], uids[3]} <= vanished,
                 f"expected VANISHED for UIDs {uids[1]} (own EXPUNGE) and {uids[3]} (other session), saw VANISHED "
                 f"{format_uid_set(vanished) or 'none'}")
    earlier = [r.first_line for r in seen if (v := parse_vanished(r)) and v[0]]
    case.require("qresync.vanished-not-expunge", not earlier, f"unsolicited VANISHED must not carry (EARLIER): {earlier}")
    fetches = [r for r in seen if parse_fetch(r)]
    lacking = [f"{label}: {' / '.join(lines)}" for label, lines in fetch_items_lacking(
        [("own STORE", own.untagged), ("NOOP after the other session's STORE", noop.untagged),
         ("FETCH BODY[] setting \\Seen", body.untagged)])]
    case.require("qresync.fetch-uid-modseq-always", not lacking,
                 f"FETCH data without UID and MODSEQ for a message after ENABLE QRESYNC: {lacking}")
    flagged = {parse_fetch(r)[1].get("UID") for r in fetches}
    case.require("qresync.fetch-uid-modseq-always", uids[2] in flagged,
                 f"the other session's flag change on UID {uids[2]} was not reported: {[r.first_line for r in fetches]}")
    case.passed(f"{len(vanished)} expunges as VANISHED, {len(fetches)} FETCHes all with UID and MODSEQ")


def fetch_modseq(conn: ImapConnection, uid: int) -> int:
    """The MODSEQ of ``uid`` (UID FETCH (MODSEQ)); a missing one fails the check."""
    res = conn.command(f"UID FETCH {uid} (MODSEQ)")
    got = [int(p[1]["MODSEQ"]) for r in res.untagged if (p := parse_fetch(r)) and p[1].get("UID") == uid
           and "MODSEQ" in p[1]]
    assert res.ok and got, f"UID FETCH {uid} (MODSEQ) returned no MODSEQ for UID {uid}: {res}"
    return max(got)


@pytest.mark.requirement("condstore.unchangedsince")
def test_store_unchangedsince_modified(case):
    """STORE (UNCHANGEDSINCE m) on a message changed since m fails with [MODIFIED uid] and is not applied;
    with a current modseq it succeeds and reports FETCH with MODSEQ even for .SILENT."""
    conn = qresync_session(case)
    name = scratch_with(case, conn, 4)
    cached, _ = full_sync(conn, name)
    uid = sorted(cached.flags)[1]
    old = fetch_modseq(conn, uid)
    changer = ChangeMaker(case)
    changer.select(name)
    changer.store(uid, "+FLAGS (\\Answered)")
    conn.command("NOOP")
    res = conn.command(f"UID STORE {uid} (UNCHANGEDSINCE {old}) +FLAGS.SILENT (\\Seen)")
    assert res.ok, f"conditional STORE must complete OK (with MODIFIED), got: {res.tagged.first_line}"
    modified = find_code(res, "MODIFIED")
    assert modified is not None and str(uid) in modified.replace(":", ",").split(","), (
        f"expected OK [MODIFIED {uid}] for a message changed since modseq {old}, got: {res.tagged.first_line}")
    truth = ground_truth(case, name)
    assert "\\Seen" not in truth.flags[uid], (f"a failed conditional STORE was applied: UID {uid} has "
                                            f"{sorted(truth.flags[uid])}")
    now = fetch_modseq(conn, uid)
    ok = conn.command(f"UID STORE {uid} (UNCHANGEDSINCE {now}) +FLAGS.SILENT (\\Seen)")
    assert ok.ok and find_code(ok, "MODIFIED") is None, f"conditional STORE with the current modseq failed: {ok}"
    got = [parse_fetch(r)[1] for r in ok.untagged if parse_fetch(r)]
    assert any("MODSEQ" in g for g in got), ("a successful conditional .SILENT STORE must still send FETCH with "
                                              "MODSEQ; "
                                              f"saw: {[r.first_line for r in ok.untagged] or 'nothing'}")
    case.passed(f"MODIFIED {modified} for a stale modseq; FETCH MODSEQ after the successful .SILENT STORE")


@pytest.mark.requirement("condstore.highestmodseq")
def test_highestmodseq_on_select(case):
    """After ENABLE CONDSTORE each SELECT/EXAMINE returns exactly one of OK [HIGHESTMODSEQ n] or OK [NOMODSEQ],
    and STATUS (HIGHESTMODSEQ) agrees on an unchanged mailbox."""
    conn = case.imap()
    case.require_capability(conn.capability(), "CONDSTORE")
    name = scratch_with(case, conn, 3)
    res = conn.command("ENABLE CONDSTORE")
    assert res.ok, f"ENABLE CONDSTORE failed: {res.tagged.first_line}"
    codes = []
    for read_only in (False, True):
        sel = select(conn, name, examine=read_only, blame=Blame.SERVER)
        hm, nomod = sel.code("HIGHESTMODSEQ"), sel.code("NOMODSEQ")
        assert (hm is None) != (nomod is None), (f"{'EXAMINE' if read_only else 'SELECT'} must give exactly one of "
                                                 f"HIGHESTMODSEQ or NOMODSEQ: {sel.result}")
        codes.append(hm)
        conn.command("UNSELECT")
    st = conn.command(f"STATUS {quote(name)} (HIGHESTMODSEQ)")
    m = re.search(r"HIGHESTMODSEQ (\d+)", str(st))
    assert st.ok and m, f"STATUS (HIGHESTMODSEQ) gave no value: {st}"
    if codes[0] is not None:
        assert int(m.group(1)) == int(codes[0]), (f"STATUS HIGHESTMODSEQ {m.group(1)} differs from SELECT's "
                                                  f"{codes[0]} on an unchanged mailbox")
    case.passed(f"HIGHESTMODSEQ {codes[0]} on SELECT and EXAMINE; STATUS agrees")


@pytest.mark.requirement("qresync.select-scope")
def test_known_uids_and_sequence_match(case):
    """SELECT (QRESYNC (v m known-uids)) reports the expunged UIDs of known-uids (UIDs outside it are noted);
    with a sequence-match pair the reconstructed state still equals a fresh full sync."""
    conn = qresync_session(case)
    name = scratch_with(case, conn, 12)
    cached, _ = full_sync(conn, name)
    conn.command("UNSELECT")
    uids = sorted(cached.flags)
    inside, outside = uids[2], uids[9]
    changer = ChangeMaker(case)
    changer.select(name)
    changer.expunge(f"{inside},{outside}")
    known = format_uid_set(uids[:6])
    res = select(conn, name, qresync=(cached.uidvalidity, cached.highestmodseq, known), blame=None).result
    assert res.ok, f"SELECT (QRESYNC (v m known-uids)) failed: {res.tagged.first_line}"
    vanished = set().union(*[v[1] for r in res.untagged if (v := parse_vanished(r))] or [set()])
    assert inside in vanished, (f"UID {inside} is in known-uids {known} and was expunged, but VANISHED (EARLIER) "
                                f"reported {format_uid_set(vanished) or 'nothing'}")
    if outside in vanished:
        case.note(f"VANISHED (EARLIER) also named UID {outside}, outside known-uids {known} (noted, not judged)")
    conn.command("UNSELECT")
    truth1 = ground_truth(case, name)
    # second round: the client knows truth1 and offers a sequence-match pair for its first three messages
    later = sorted(truth1.flags)[-2]
    changer.expunge(later)
    first3 = sorted(truth1.flags)[:3]
    resync = quick_resync(conn, name, truth1, seq_match=("1:3", format_uid_set(first3)))
    truth2 = ground_truth(case, name, label="truth2")
    assert not resync.problems, "; ".join(resync.problems)
    assert later in resync.vanished, (f"UID {later} (above the sequence-match pairs) was expunged but not reported: "
                                      f"{format_uid_set(resync.vanished) or 'nothing'}")
    diff = resync.view.diff(truth2)
    assert not diff, "resync with sequence-match data differs from a fresh full sync: " + "; ".join(diff)
    case.passed(f"expunged UID {inside} of known-uids reported; sequence-match resync exact")


@pytest.mark.requirement("qresync.closed-code")
def test_closed_code_between_mailboxes(case):
    """SELECT of a second mailbox while one is selected (QRESYNC enabled) sends OK [CLOSED] before the new
    mailbox's data."""
    conn = qresync_session(case)
    first = scratch_with(case, conn, 2)
    second = case.scratch_mailbox(conn, "closed")
    assert select(conn, first, blame=None).ok
    res = select(conn, second, blame=None).result
    assert res.ok, f"SELECT {second} failed: {res.tagged.first_line}"
    closed = [i for i, r in enumerate(res.untagged) if response_code(r, "CLOSED") is not None]
    exists = [i for i, r in enumerate(res.untagged) if parse_exists(r) is not None]
    assert closed, f"no OK [CLOSED] when SELECT replaced the selected mailbox: {res}"
    assert not exists or closed[0] < exists[0], f"OK [CLOSED] came after the new mailbox's EXISTS: {res}"
    case.passed("OK [CLOSED] before the new mailbox's data")


@pytest.mark.requirement("qresync.expunge-modseq", "qresync.close-no-highestmodseq")
def test_expunge_codes_and_close(case):
    """With QRESYNC enabled, the tagged OK of EXPUNGE and UID EXPUNGE carries a growing [HIGHESTMODSEQ n], the
    tagged OK of CLOSE none; every expunge (EXPUNGE, UID EXPUNGE, CLOSE) is remembered for a later resync."""
    conn = qresync_session(case)
    name = scratch_with(case, conn, 5)
    cached, _ = full_sync(conn, name)
    uids = sorted(cached.flags)
    seen = [cached.highestmodseq]
    for uid, command in ((uids[0], "EXPUNGE"), (uids[1], f"UID EXPUNGE {uids[1]}")):
        conn.command(f"UID STORE {uid} +FLAGS.SILENT (\\Deleted)")
        res = conn.command(command)
        hm = response_code(res.tagged, "HIGHESTMODSEQ")
        verb = command.split(" ")[0]
        if not case.require("qresync.expunge-modseq", res.ok and hm and hm.isdigit(),
                            f"tagged OK of {verb} without [HIGHESTMODSEQ n]: {res.tagged.first_line}"):
            continue
        case.require("qresync.expunge-modseq", int(hm) > seen[-1],
                     f"{verb} HIGHESTMODSEQ {hm} did not grow beyond {seen[-1]}")
        seen.append(int(hm))
    conn.command(f"UID STORE {uids[2]} +FLAGS.SILENT (\\Deleted)")
    close = conn.command("CLOSE")
    if not close.ok:
        raise ConformanceFailure(f"CLOSE failed: {close.tagged.first_line}", requirement="qresync.close-no-highestmodseq")
    case.require("qresync.close-no-highestmodseq", response_code(close.tagged, "HIGHESTMODSEQ") is None,
                 f"CLOSE must not carry HIGHESTMODSEQ: {close.tagged.first_line}")
    resync = quick_resync(conn, name, cached)
    missed = set(uids[:3]) - resync.vanished
    case.require("qresync.expunge-modseq", not missed,
                 f"UIDs expunged by EXPUNGE, UID EXPUNGE and CLOSE must be reported to a resync from modseq "
                 f"{cached.highestmodseq}; missing {format_uid_set(missed)}")
    case.passed(f"HIGHESTMODSEQ {' then '.join(map(str, seen[1:]))} on EXPUNGE/UID EXPUNGE, none on CLOSE; all three "
                f"remembered")


@pytest.mark.requirement("compress.failure-modes", "compress.capability")
def test_compress_refusals(case):
    """COMPRESS before login, with an unknown mechanism, or a second time is refused, and the session goes on
    uncompressed (or compressed, after the second attempt) without a hitch."""
    conn = case.imap()
    case.require_capability(conn.capability(), "COMPRESS=DEFLATE")
    pre = case.imap(account=None, label="not-authenticated")
    early = pre.command("COMPRESS DEFLATE")
    case.require("compress.capability", early.status in ("BAD", "NO"),
                 f"COMPRESS before authentication must be refused: {early.tagged.first_line}")
    if early.status in ("BAD", "NO"):
        case.require("compress.failure-modes", pre.command("NOOP").ok,
                     "after a COMPRESS refused before login, the next reply must be plain text (NOOP failed)")
    bad = conn.command("COMPRESS X-LEMONADE-NONE")
    case.require("compress.failure-modes", bad.status in ("BAD", "NO"),
                 f"COMPRESS with an unknown mechanism must be refused: {bad.tagged.first_line}")
    case.require("compress.failure-modes", conn.command("NOOP").ok,
                 "after a refused COMPRESS the next reply must be plain text")
    started = conn.compress()
    if not case.require("compress.capability", started.ok,
                        f"COMPRESS DEFLATE after login refused although advertised: {started.tagged.first_line}"):
        return
    again = conn.command("COMPRESS DEFLATE")
    case.require("compress.failure-modes", again.status in ("BAD", "NO"),
                 f"a second COMPRESS must be refused: {again.tagged.first_line}")
    case.require("compress.failure-modes", conn.command("NOOP").ok,
                 "the compressed session broke after a refused second COMPRESS")
    case.passed(f"refused before login ({early.status}), unknown mechanism ({bad.status}) and second COMPRESS "
                f"({again.status}); plain and compressed sessions went on working")
