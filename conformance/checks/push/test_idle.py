"""IMAP IDLE (RFC 2177, RFC 9051 6.3.13, RFC 5550 5.4.1): continuation, DONE, prompt change reports, autologout."""

from __future__ import annotations

import time

import pytest

from conformance.checks.support import ChangeMaker, Watch, examine, search_uids, select, untagged
from conformance.errors import ConformanceFailure, NotApplicable, ProtocolViolation, ServerTimeout
from conformance.protocols.imapwire import parse_fetch, quote

from .idling import idle_then_append
from .timelines import longest_gap, timeline


@pytest.mark.requirement("idle.continuation", "idle.done")
def test_idle_continuation_and_done(case):
    """IDLE is answered with '+' (idle.continuation); DONE ends it with a tagged OK, and a command sent instead of DONE
    ends it too instead of leaving the session hanging (idle.done)."""
    imap = case.imap(label="idler")
    box = case.scratch_mailbox(imap)
    select(imap, box)
    started = time.monotonic()
    try:
        tag = imap.idle(timeout=5)
    except (ServerTimeout, ProtocolViolation) as e:
        raise ConformanceFailure(f"IDLE was not answered with a '+' continuation: {e}",
                                 requirement="idle.continuation") from e
    case.require("idle.continuation", True, "")
    case.measure("continuation_s", round(time.monotonic() - started, 3), "s")
    try:
        res = imap.done(tag, timeout=3)
    except ServerTimeout as e:
        raise ConformanceFailure(f"DONE was not answered with a tagged reply within 3 s: {e}",
                                 requirement="idle.done") from e
    if not case.require("idle.done", res.tagged.status == "OK",
                        f"expected '{tag} OK' after DONE, saw {res.tagged.first_line!r}"):
        return
    case.measure("done_s", round(res.elapsed, 3), "s")
    # robustness (idle.done's test): something other than DONE while idling must end IDLE (BAD, NO or OK), not hang
    tag = imap.idle(timeout=5)
    imap.send_raw(b"x NOOP\r\n")
    try:
        ended = imap.wait_tagged(tag, timeout=3)
    except ServerTimeout:
        case.require("idle.done", False, "a command sent instead of DONE left IDLE hanging: no tagged reply to the "
                     "IDLE within 3 s (the server must end IDLE, e.g. with BAD, not hang)")
        return
    case.note(f"server answered a command sent instead of DONE with {ended.tagged.first_line!r}")
    try:
        noop = imap.command("NOOP", timeout=3)
    except ServerTimeout:
        case.require("idle.done", False, f"IDLE ended ({ended.tagged.first_line!r}), but the session then hung: no "
                     "reply to NOOP within 3 s")
        return
    if not noop.ok:
        case.note(f"after IDLE ended without DONE, NOOP gave {noop.tagged.first_line!r} (answered, not hung)")
    case.passed(f"'+' then OK after DONE ({res.elapsed:.3f} s); 'x NOOP' instead of DONE ended IDLE with "
                f"{ended.tagged.first_line!r}")


@pytest.mark.requirement("lemonade.store.idle-timely", "idle.continuation", "mobile.push.prompt-through-intermediary")
@pytest.mark.scenarios("direct", "nat-idle:mode=rst")
def test_idle_reports_new_mail_promptly(case, scenario):
    """A message APPENDed by a second connection is reported to the idling client (idle.continuation: untagged data
    flows during IDLE), within each promptness requirement's max_latency."""
    limits = {rid: case.param("max_latency", requirement=rid)
              for rid in ("lemonade.store.idle-timely", "mobile.push.prompt-through-intermediary")}
    wait = 2 * max(limits.values())
    run = idle_then_append(case, observe=0.3, wait=wait)  # 0.3 s: let the IDLE settle first
    imap, watch, got, latency, end = run.imap, run.watch, run.got, run.latency, run.end
    case.measure("notification_latency", latency, "s", threshold=min(limits.values()))
    gap = longest_gap(case, imap.label, run.idle_from, end)
    case.measure("longest_gap", gap[0], "s")
    tl = timeline(case, imap.label, f"new mail during IDLE ({scenario})", start=max(0.0, run.idle_from - 0.5),
                  end=end + 0.2, idle_from=run.idle_from, change_at=run.change_at,
                  change_label="second connection APPENDed a message", closed_at=watch.closed_at, gap=gap,
                  thresholds={"max latency": min(limits.values())})
    ok = got is not None and all(latency <= limit for limit in limits.values())
    case.attach("timeline", tl.as_dict("pass" if ok else "fail"))
    if watch.closed_at is not None and got is None:
        raise ConformanceFailure(f"the idling connection ended before the change was reported: {watch.closed_reason}")
    if got is None:
        raise ConformanceFailure(f"no '* n EXISTS' within {wait:g} s of the APPEND from a second connection "
                                 f"(saw {watch.saw()})")
    case.require("idle.continuation", True, "")
    for rid, limit in limits.items():
        case.require(rid, latency <= limit, f"new mail reported after {latency:.3f} s, expected within {limit:g} s "
                                            f"(RFC 5550 5.4.1 'promptly', profile threshold)")
    imap.done(run.tag, timeout=3)
    case.passed(f"'{got.first_line}' {latency:.3f} s after the APPEND (threshold {min(limits.values()):g} s)")


@pytest.mark.requirement("lemonade.store.idle-timely")
@pytest.mark.uses("imap", "submission")
def test_idle_reports_submitted_mail(case):
    """Mail submitted to the account's own address is reported during IDLE, where submission delivers locally.

    When no EXISTS comes, the INBOX is searched for the message on a second connection: found there, the server
    delivered it without telling the idling client (fail); not found, this target's submission does not deliver
    locally and promptness via submission cannot be measured (not-applicable).
    """
    max_latency = case.param("max_latency")
    acct = case.account(0)
    address = acct.username if "@" in acct.username else f"{acct.username}@localhost"
    marker = f"{case.unique('submitted')}@lemonade.test"
    imap = case.imap(label="idler")
    select(imap, "INBOX")
    tag = imap.idle(timeout=5)
    smtp = case.submission(via_path=False)
    case.expunge_at_end("INBOX", f"<{marker}>")  # where it lands: the user's INBOX, so exactly it is removed
    change_at = case.transcript.now()
    smtp.sendmail(address, [address], (b"From: " + address.encode() + b"\r\nTo: " + address.encode()
                                       + b"\r\nSubject: lemonade push via submission\r\nMessage-ID: <"
                                       + marker.encode() + b">\r\n\r\nhello\r\n"))
    watch = Watch(case, imap)
    bound = max(4.0, 2 * max_latency)
    got = watch.until(bound, untagged.exists())
    if got is None:
        looker = case.imap(via_path=False, label="inbox-search")
        examine(looker, "INBOX")
        found = search_uids(looker, f"HEADER Message-ID {quote(marker)}")
        if found:
            raise ConformanceFailure(
                f"the message submitted to {address} was delivered to the INBOX (UID {found[-1]}), but the client "
                f"idling on the INBOX was not told within {bound:g} s (saw {watch.saw()})")
        raise NotApplicable(
            f"a message submitted to {address} did not reach the INBOX within {bound:g} s (searched for its "
            f"Message-ID on a second connection): this target's submission service does not deliver into its own "
            "mailboxes (the embedded Dovecot relays every submission to the harness's SMTP sink), so promptness via "
            "submission cannot be measured")
    latency = round(watch.seen[-1][0] - change_at, 3)
    case.measure("notification_latency", latency, "s")
    imap.done(tag, timeout=3)
    assert latency <= max_latency, f"submitted mail reported after {latency:.3f} s, expected within {max_latency:g} s"
    case.passed(f"submitted mail reported after {latency:.3f} s")


@pytest.mark.requirement("idle.fetch-has-uid", "idle.expunge-rules")
def test_idle_reports_flag_changes_and_expunges(case):
    """During IDLE a flag change arrives as FETCH with the new FLAGS, with UID once QRESYNC is enabled
    (idle.fetch-has-uid); without a command in progress no EXPUNGE or VANISHED is sent, and the next command
    reports it (idle.expunge-rules; during IDLE one is allowed)."""
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
    if case.require("idle.fetch-has-uid", fetch is not None,
                    f"no unsolicited FETCH within 5 s of another session setting \\Flagged during IDLE "
                    f"(saw {watch.saw()})"):
        parsed = parse_fetch(fetch)
        items = parsed[1] if parsed else {}
        case.require("idle.fetch-has-uid", "FLAGS" in items and "\\FLAGGED" in str(items.get("FLAGS")).upper(),
                     f"the FETCH during IDLE does not carry the new flag set with \\Flagged: {fetch.first_line!r}")
        if uid_required:
            case.require("idle.fetch-has-uid", "UID" in items,
                         f"{uid_required} requires UID in every FETCH, saw {fetch.first_line!r}")
    # 2. an expunge while idling: allowed (IDLE is a command in progress), not required at once
    other.expunge(2)
    during = watch.until(5, untagged.expunge_or_vanished())
    imap.done(tag, timeout=3)
    # 3. no command in progress: an expunge elsewhere must not be announced until the next command
    other.expunge(3)
    quiet = Watch(case, imap)
    early = quiet.until(1.5, untagged.expunge_or_vanished())
    case.require("idle.expunge-rules", early is None,
                 f"EXPUNGE sent with no command in progress (RFC 9051 7.5.1): {early.first_line if early else ''!r}")
    noop = imap.command("NOOP", timeout=5)
    late = [r.first_line for r in noop.untagged if untagged.expunge_or_vanished()(r)]
    case.require("idle.expunge-rules", late or early is not None,
                 f"the expunge made while no command was in progress was not reported by the next command (NOOP: "
                 f"{[r.first_line for r in noop.untagged] or 'nothing'})")
    case.measure("uid_rule", uid_required or "none (QRESYNC not available)")
    case.passed(f"flag change as {fetch.first_line!r}"
                + (f", expunge as {during.first_line!r} during IDLE" if during is not None else
                   ", the expunge during IDLE held for the next command")
                + f"; none sent between commands{', then with NOOP: ' + late[0] if late else ''}")


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

