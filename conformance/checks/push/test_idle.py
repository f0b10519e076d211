"""IMAP IDLE (RFC 2177, RFC 9051 6.3.13, RFC 5550 5.4.1): continuation, DONE, prompt change reports, autologout."""

from __future__ import annotations

import time

import pytest

from conformance.checks.support import ChangeMaker, Watch, select, untagged
from conformance.errors import NotApplicable, ServerTimeout
from conformance.protocols.imapwire import parse_fetch

from .idling import idle_then_append
from .timelines import longest_gap, timeline


@pytest.mark.requirement("idle.continuation", "idle.done")
def test_idle_continuation_and_done(case):
    """IDLE is answered with '+'; DONE ends it with a tagged OK; a command instead of DONE does not hang."""
    imap = case.imap(label="idler")
    box = case.scratch_mailbox(imap)
    select(imap, box)
    started = time.monotonic()
    tag = imap.idle(timeout=5)
    case.measure("continuation_s", round(time.monotonic() - started, 3), "s")
    res = imap.done(tag, timeout=3)
    assert res.tagged.status == "OK", f"expected '{tag} OK' after DONE, saw {res.tagged.first_line!r}"
    case.measure("done_s", round(res.elapsed, 3), "s")
    # robustness: something other than DONE while idling must end IDLE (BAD, NO or OK), not hang the session
    # (RFC 2177 forbids the client this; how the server copes is robustness, judged SHOULD-like: non-strict)
    tag = imap.idle(timeout=5)
    imap.send_raw(b"x NOOP\r\n")
    try:
        ended = imap.wait_tagged(tag, timeout=3)
    except ServerTimeout:
        case.non_strict("a command sent instead of DONE left IDLE hanging: no tagged reply within 3 s")
        case.passed(f"'+' then OK after DONE ({res.elapsed:.3f} s)")
        return
    case.note(f"server answered a command sent instead of DONE with {ended.tagged.first_line!r}")
    noop = imap.command("NOOP", timeout=3)
    if not noop.ok:
        case.non_strict(f"the session is unusable after IDLE ended without DONE: NOOP gave {noop.tagged.first_line!r}")
    case.passed(f"'+' then OK after DONE ({res.elapsed:.3f} s); 'x NOOP' instead of DONE ended IDLE with "
                f"{ended.tagged.first_line!r}")


@pytest.mark.requirement("lemonade.store.idle-timely", "idle.continuation", "mobile.push.prompt-through-intermediary")
@pytest.mark.scenarios("direct", "nat-idle:mode=rst")
def test_idle_reports_new_mail_promptly(case, scenario):
    """A message APPENDed by a second connection is reported to the idling client within max_latency."""
    max_latency = case.param("max_latency")
    run = idle_then_append(case, observe=0.3, wait=max_latency * 2)  # 0.3 s: let the IDLE settle first
    imap, watch, got, latency, end = run.imap, run.watch, run.got, run.latency, run.end
    case.measure("notification_latency", latency, "s", threshold=max_latency)
    gap = longest_gap(case, imap.label, run.idle_from, end)
    case.measure("longest_gap", gap[0], "s")
    tl = timeline(case, imap.label, f"new mail during IDLE ({scenario})", start=max(0.0, run.idle_from - 0.5),
                  end=end + 0.2, idle_from=run.idle_from, change_at=run.change_at,
                  change_label="second connection APPENDed a message", closed_at=watch.closed_at, gap=gap,
                  thresholds={"max latency": max_latency})
    ok = got is not None and latency <= max_latency
    case.attach("timeline", tl.as_dict("pass" if ok else "fail"))
    assert watch.closed_at is None, f"the idling connection ended before the change was reported: {watch.closed_reason}"
    assert got is not None, (f"no '* n EXISTS' within {max_latency * 2:g} s of the APPEND from a second connection "
                             f"(saw {watch.saw()})")
    assert latency <= max_latency, (f"new mail reported after {latency:.3f} s, expected within {max_latency:g} s "
                                    f"(RFC 5550 5.4.1 'promptly', profile threshold)")
    imap.done(run.tag, timeout=3)
    case.passed(f"'{got.first_line}' {latency:.3f} s after the APPEND (threshold {max_latency:g} s)")


@pytest.mark.requirement("lemonade.store.idle-timely")
@pytest.mark.uses("imap", "submission")
def test_idle_reports_submitted_mail(case):
    """Mail submitted to the account's own address is reported during IDLE, where submission delivers locally."""
    max_latency = case.param("max_latency")
    acct = case.account(0)
    address = acct.username if "@" in acct.username else f"{acct.username}@localhost"
    imap = case.imap(label="idler")
    select(imap, "INBOX")
    tag = imap.idle(timeout=5)
    smtp = case.submission(via_path=False)
    message_id = f"<{case.unique('submitted')}@lemonade.test>"
    case.expunge_at_end("INBOX", message_id)  # where it lands: the user's INBOX, so exactly it is removed
    change_at = case.transcript.now()
    smtp.sendmail(address, [address], (b"From: " + address.encode() + b"\r\nTo: " + address.encode()
                                       + b"\r\nSubject: lemonade push via submission\r\nMessage-ID: "
                                       + message_id.encode() + b"\r\n\r\nhello\r\n"))
    watch = Watch(case, imap)
    bound = max(4.0, 2 * max_latency)
    got = watch.until(bound, untagged.exists())
    if got is None:
        raise NotApplicable(
            f"a message submitted to {address} did not reach the INBOX within {bound:g} s: this target's submission "
            "service does not deliver into its own mailboxes (the embedded Dovecot relays every submission to the "
            "harness's SMTP sink and exposes no LMTP/local delivery), so promptness via submission cannot be measured")
    latency = round(watch.seen[-1][0] - change_at, 3)
    case.measure("notification_latency", latency, "s")
    imap.done(tag, timeout=3)
    assert latency <= max_latency, f"submitted mail reported after {latency:.3f} s, expected within {max_latency:g} s"
    case.passed(f"submitted mail reported after {latency:.3f} s")


@pytest.mark.requirement("idle.fetch-has-uid", "idle.expunge-rules")
def test_idle_reports_flag_changes_and_expunges(case):
    """During IDLE a flag change arrives as FETCH (with UID once QRESYNC is enabled) and an expunge as EXPUNGE;
    without a command in progress no EXPUNGE is sent."""
    imap = case.imap(label="idler")
    other = ChangeMaker(case)
    box = other.scratch_mailbox(messages=3)
    caps = imap.capability()
    uid_required = ""
    if "QRESYNC" in caps and "ENABLE" in caps and imap.command("ENABLE QRESYNC").ok:
        uid_required = "QRESYNC enabled (RFC 7162 3.2; RFC 5162 erratum 1807)"
    select(imap, box)
    other.select(box)
    # 1. a flag change while idling
    tag = imap.idle(timeout=5)
    watch = Watch(case, imap)
    other.store(1, "+FLAGS (\\Flagged)")
    fetch = watch.until(5, untagged.fetch())
    assert fetch is not None, (f"no unsolicited FETCH within 5 s of another session setting \\Flagged during IDLE "
                               f"(saw {watch.saw()})")
    parsed = parse_fetch(fetch)
    items = parsed[1] if parsed else {}
    assert "FLAGS" in items and "\\FLAGGED" in str(items.get("FLAGS")).upper(), (
        f"the FETCH during IDLE does not carry the new flag set with \\Flagged: {fetch.first_line!r}")
    if uid_required:
        assert "UID" in items, f"{uid_required} requires UID in every FETCH, saw {fetch.first_line!r}"
    # 2. an expunge while idling
    other.expunge(2)
    exp = watch.until(5, untagged.expunge_or_vanished())
    assert exp is not None, (f"no EXPUNGE or VANISHED within 5 s of another session expunging a message during IDLE "
                             f"(saw {watch.saw()})")
    imap.done(tag, timeout=3)
    # 3. no command in progress: an expunge elsewhere must not be announced until the next command
    other.expunge(3)
    quiet = Watch(case, imap)
    early = quiet.until(1.5, untagged.expunge_or_vanished())
    assert early is None, f"EXPUNGE sent with no command in progress (RFC 9051 7.5.1): {early.first_line!r}"
    noop = imap.command("NOOP", timeout=5)
    late = [r.first_line for r in noop.untagged if "EXPUNGE" in r.first_line.upper() or "VANISHED" in r.first_line.upper()]
    case.measure("uid_rule", uid_required or "none (QRESYNC not available)")
    case.passed(f"flag change as {fetch.first_line!r}, expunge as {exp.first_line!r} during IDLE; none sent between "
                f"commands{', then with NOOP: ' + late[0] if late else ''}")


@pytest.mark.requirement("idle.autologout-floor")
@pytest.mark.depth("full")
def test_autologout_not_below_30_minutes(case):
    """An authenticated, silent session is not logged out before 30 minutes (checked for silent_for seconds)."""
    silent_for = case.param("silent_for")
    imap = case.imap(label="silent")
    start = case.transcript.now()
    watch = Watch(case, imap)
    bye = watch.until(silent_for, lambda r: r.status == "BYE")
    assert bye is None and watch.closed_at is None, (
        f"session ended after {(watch.closed_at or case.transcript.now()) - start:.0f} s of silence "
        f"({bye.first_line if bye else watch.closed_reason}); RFC 9051 5.4 requires at least 30 minutes")
    res = imap.command("NOOP", timeout=10)
    assert res.ok, f"NOOP after {silent_for:g} s of silence failed: {res.tagged.first_line!r}"
    case.measure("silent_s", round(case.transcript.now() - start, 1), "s")
    case.passed(f"session alive after {silent_for:g} s without a command")

