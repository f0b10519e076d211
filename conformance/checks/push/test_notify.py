"""IMAP NOTIFY (RFC 5465): NOTIFY SET semantics, event errors, and events for selected and other mailboxes."""

from __future__ import annotations

import re
import uuid

import pytest

from conformance.checks.support import ChangeMaker, Watch, select, untagged
from conformance.errors import NotApplicable
from conformance.protocols.imapwire import parse_fetch, quote
from conformance.protocols.members import Obj

from .timelines import longest_gap, timeline

SELECTED_ALL = "(selected (MessageNew (UID FLAGS) MessageExpunge FlagChange))"


def notify_session(case, label: str = "notified"):
    """A connection through the path on a target that advertises NOTIFY (not-applicable otherwise), and its
    capabilities."""
    imap = case.imap(label=label)
    caps = imap.capability()
    case.require_capability(caps, "NOTIFY")
    return imap, caps


def watch_selected(case, notify_args: str):
    """A NOTIFY session watching a fresh mailbox (one message in it) that it has selected, plus the second
    connection that changes it. Returns (watching connection, its ChangeMaker, mailbox)."""
    imap, _ = notify_session(case)
    other = ChangeMaker(case)
    box = other.scratch_mailbox(messages=1)
    select(imap, box)
    res = imap.command(f"NOTIFY SET {notify_args}", timeout=5)
    assert res.ok, f"NOTIFY SET refused: {res.tagged.first_line!r}"
    return imap, other, box


def status_items(line: str) -> Obj:
    """The numeric items of a STATUS response: '* STATUS x (MESSAGES 1 UIDNEXT 2)' -> {'MESSAGES': 1, 'UIDNEXT': 2}
    (read through ``Obj``: an item the response lacks fails naming it, RFC 9051 7.2.4)."""
    m = re.search(r"\(([^()]*)\)\s*$", line)
    parts = m.group(1).split() if m else []
    return Obj({k.upper(): int(v) for k, v in zip(parts[::2], parts[1::2]) if v.isdigit()},
               f"the STATUS response {line[:120]!r}", "RFC 9051 7.2.4")


def status_for(responses, mailbox: str) -> list[str]:
    """The first lines of the STATUS responses about ``mailbox``."""
    pat = re.compile(r"^\* STATUS (\"?)" + re.escape(mailbox) + r"\1 ", re.I)
    return [r.first_line for r in responses if pat.match(r.first_line)]


@pytest.mark.requirement("notify.set-implicit-noop")
def test_notify_set_returns_pending_changes(case):
    """A successful NOTIFY SET first reports what changed in the selected mailbox since the last command."""
    imap, _ = notify_session(case)
    other = ChangeMaker(case)
    box = other.scratch_mailbox(messages=1)
    select(imap, box)
    other.append(box, n=2)
    case.note("second connection APPENDed a message after the first selected the mailbox; no command since")
    res = imap.command(f"NOTIFY SET {SELECTED_ALL}", timeout=5)
    assert res.ok, f"NOTIFY SET refused: {res.tagged.first_line!r}"
    exists = [r.first_line for r in res.untagged if untagged.exists(2)(r)]
    assert exists, (f"NOTIFY SET returned no '* 2 EXISTS' for the message added since the last command "
                    f"(untagged before OK: {[r.first_line for r in res.untagged] or 'none'})")
    case.passed(f"pending change reported by NOTIFY SET itself: {exists[0]}")


@pytest.mark.requirement("notify.status-indicator")
def test_notify_status_indicator(case):
    """NOTIFY SET STATUS sends STATUS (MESSAGES UIDNEXT UIDVALIDITY [HIGHESTMODSEQ]) for each watched mailbox."""
    imap, caps = notify_session(case)
    other = ChangeMaker(case)
    box = other.scratch_mailbox(messages=1)
    condstore = "CONDSTORE" in caps and imap.command("ENABLE CONDSTORE").ok
    select(imap, "INBOX")
    res = imap.command(f"NOTIFY SET STATUS {SELECTED_ALL} (mailboxes {quote(box)} (MessageNew MessageExpunge "
                       "FlagChange))", timeout=5)
    assert res.ok, f"NOTIFY SET STATUS refused: {res.tagged.first_line!r}"
    lines = status_for(res.untagged, box)
    assert lines, f"no STATUS for the watched mailbox {box} before the OK (untagged: {res.lines()[:-1] or 'none'})"
    items = status_items(lines[0])
    want = ["MESSAGES", "UIDNEXT", "UIDVALIDITY"] + (["HIGHESTMODSEQ"] if condstore else [])
    missing = [k for k in want if k not in items]
    assert not missing, f"STATUS for {box} lacks {', '.join(missing)}: {lines[0]!r}"
    assert items["MESSAGES"] == 1, f"STATUS for {box} says MESSAGES {items['MESSAGES']}, the mailbox holds 1: {lines[0]!r}"
    case.passed(f"{lines[0]}" + (" (CONDSTORE enabled)" if condstore else ""))


@pytest.mark.requirement("notify.unsupported-event")
def test_notify_unsupported_event_is_no_badevent(case):
    """An unsupported event gives tagged NO (not BAD); its BADEVENT code (SHOULD) lists the supported events."""
    imap, caps = notify_session(case)
    if any(c.startswith("ANNOTATE") for c in caps):
        raise NotApplicable("the target supports ANNOTATE, so AnnotationChange is no unsupported event to ask for")
    select(imap, "INBOX")
    base = imap.command("NOTIFY SET (selected (MessageNew MessageExpunge))", timeout=5)
    res = imap.command("NOTIFY SET (selected (MessageNew MessageExpunge AnnotationChange))", timeout=5)
    assert res.tagged.status == "NO", (f"NOTIFY SET with the unsupported event AnnotationChange (no ANNOTATE "
                                       f"capability) must be answered with tagged NO, saw {res.tagged.first_line!r}")
    code = res.code or ""
    if not code.upper().startswith("BADEVENT"):
        case.non_strict(f"tagged NO without a BADEVENT response code: {res.tagged.first_line!r}")
        case.passed(res.tagged.first_line)
        return
    case.measure("badevent", code)
    listed = re.fullmatch(r"BADEVENT \(([^()]*)\)", code, re.I)
    assert listed, (f"BADEVENT must carry a parenthesized list of the events the server supports (RFC 5465 3.1, "
                    f"ABNF in 8), saw [{code}]")
    events = {e.lower() for e in listed.group(1).split()}
    wrong = [e for e in ("MessageNew", "MessageExpunge") if base.ok and e.lower() not in events]
    assert not wrong and "annotationchange" not in events, (
        f"BADEVENT must list every supported event and only those: [{code}] "
        f"{'omits ' + ', '.join(wrong) + ' (accepted by the NOTIFY SET before)' if wrong else 'names AnnotationChange'}")
    case.passed(res.tagged.first_line)


@pytest.mark.requirement("notify.event-pairing")
def test_notify_invalid_event_pairs_are_bad(case):
    """FlagChange without MessageNew+MessageExpunge, or MessageNew without MessageExpunge, is a tagged BAD."""
    imap, _ = notify_session(case)
    select(imap, "INBOX")
    seen = {}
    for events in ("FlagChange", "MessageNew", "MessageExpunge"):
        res = imap.command(f"NOTIFY SET (selected ({events}))", timeout=5)
        seen[events] = res.tagged.first_line
        assert res.tagged.status == "BAD", (f"NOTIFY SET (selected ({events})) is an invalid combination "
                                            f"(RFC 5465 5) and must get tagged BAD, saw {res.tagged.first_line!r}")
    case.passed("BAD for " + ", ".join(seen))


@pytest.mark.requirement("notify.ignore-unknown-mailbox")
def test_notify_ignores_unknown_mailboxes(case):
    """A mailbox name that does not exist is ignored silently: OK, and no STATUS about it."""
    imap, _ = notify_session(case)
    box = ChangeMaker(case).scratch_mailbox()
    ghost = f"lemonade-nonexistent-{uuid.uuid4().hex[:8]}"
    select(imap, "INBOX")
    res = imap.command(f"NOTIFY SET STATUS (mailboxes ({quote(ghost)} {quote(box)}) (MessageNew MessageExpunge))",
                       timeout=5)
    assert res.ok, f"NOTIFY SET naming a non-existent mailbox must succeed (name ignored), saw {res.tagged.first_line!r}"
    leaked = [r.first_line for r in res.untagged if ghost.lower() in r.first_line.lower()]
    assert not leaked, f"the server said something about the non-existent mailbox {ghost}: {leaked}"
    assert status_for(res.untagged, box), f"no STATUS for the existing watched mailbox {box}: {res.lines()[:-1]}"
    case.passed(f"OK; STATUS only for {box}, nothing about {ghost}")


@pytest.mark.requirement("notify.flagchange-fetch")
def test_notify_flag_change_fetch_has_uid_and_flags(case):
    """With FlagChange watched, a flag change in the selected mailbox arrives as FETCH with UID and FLAGS.

    The change is made while the client idles, so only the content of the FETCH is judged here; whether events
    also flow with no command in progress is notify.between-commands.
    """
    wait = case.param("wait", requirement="notify.between-commands")
    imap, other, box = watch_selected(case, SELECTED_ALL)
    other.select(box)
    tag = imap.idle(timeout=5)
    idle_from = case.transcript.now()
    watch = Watch(case, imap)
    change_at = case.transcript.now()
    other.store(1, "+FLAGS (\\Flagged)")
    fetch = watch.until(wait, untagged.fetch())
    end = case.transcript.now()
    items: dict = {}
    if fetch is not None:
        parsed = parse_fetch(fetch)
        items = parsed[1] if parsed else {}
    missing = [k for k in ("UID", "FLAGS") if k not in items]
    tl = timeline(case, imap.label, "NOTIFY FlagChange during IDLE", start=max(0.0, idle_from - 0.3), end=end + 0.2,
                  idle_from=idle_from, change_at=change_at, change_label="second connection set \\Flagged",
                  gap=longest_gap(case, imap.label, idle_from, end))
    case.attach("timeline", tl.as_dict("pass" if fetch is not None and not missing else "fail"))
    assert fetch is not None, (f"no FETCH within {wait:g} s of a flag change in the selected mailbox with FlagChange "
                               f"watched, during IDLE (saw {watch.saw()})")
    assert not missing, (f"FlagChange FETCH must carry UID and FLAGS (RFC 5465 5.1); {', '.join(missing)} missing "
                         f"in {fetch.first_line!r}")
    imap.done(tag, timeout=3)
    case.passed(f"{fetch.first_line}")


@pytest.mark.requirement("notify.between-commands")
def test_notify_events_between_commands(case):
    """After NOTIFY SET, an event for a watched mailbox arrives with no command in progress (no IDLE, no NOOP)."""
    wait = case.param("wait")
    imap, _ = notify_session(case)
    other = ChangeMaker(case)
    box = other.scratch_mailbox()
    select(imap, "INBOX")
    res = imap.command(f"NOTIFY SET (mailboxes {quote(box)} (MessageNew MessageExpunge))", timeout=5)
    assert res.ok, f"NOTIFY SET refused: {res.tagged.first_line!r}"
    start = case.transcript.now()
    change_at = case.transcript.now()
    other.append(box, n=1)
    watch = Watch(case, imap)
    got = watch.until(wait, lambda r: bool(status_for([r], box)))
    end = case.transcript.now()
    tl = timeline(case, imap.label, "NOTIFY event with no command in progress", start=max(0.0, start - 0.3),
                  end=end + 0.2, change_at=change_at, change_label=f"second connection APPENDed to {box}",
                  gap=longest_gap(case, imap.label, start, end), thresholds={"wait": wait})
    case.attach("timeline", tl.as_dict("pass" if got else "fail"))
    assert got is not None, (f"no unsolicited STATUS for the watched mailbox {box} within {wait:g} s of an APPEND, "
                             f"with no command in progress (saw {watch.saw()})")
    latency = round(watch.seen[-1][0] - change_at, 3)
    case.measure("notification_latency", latency, "s")
    case.passed(f"{got.first_line} after {latency:.3f} s without a command")


@pytest.mark.requirement("notify.other-mailbox-status")
def test_notify_other_mailbox_status_during_idle(case):
    """New mail and expunges in a watched, non-selected mailbox give STATUS (MESSAGES UIDNEXT [HIGHESTMODSEQ])."""
    wait = case.param("wait", requirement="notify.between-commands")
    imap, caps = notify_session(case)
    other = ChangeMaker(case)
    box = other.scratch_mailbox()
    condstore = "CONDSTORE" in caps and imap.command("ENABLE CONDSTORE").ok
    select(imap, "INBOX")
    res = imap.command(f"NOTIFY SET (selected (MessageNew MessageExpunge)) (mailboxes {quote(box)} "
                       "(MessageNew MessageExpunge))", timeout=5)
    assert res.ok, f"NOTIFY SET refused: {res.tagged.first_line!r}"
    tag = imap.idle(timeout=5)
    idle_from = case.transcript.now()
    watch = Watch(case, imap)
    change_at = case.transcript.now()
    other.append(box, n=1)
    new = watch.until(wait, lambda r: bool(status_for([r], box)))
    latency = round(watch.seen[-1][0] - change_at, 3) if new is not None else None
    gone = None
    if new is not None:
        other.select(box)
        other.expunge(1, uid=False)
        gone = watch.until(wait, lambda r: bool(status_for([r], box)) and status_items(r.first_line).get("MESSAGES") == 0)
    end = case.transcript.now()
    tl = timeline(case, imap.label, "NOTIFY STATUS for a watched mailbox during IDLE", start=max(0.0, idle_from - 0.3),
                  end=end + 0.2, idle_from=idle_from, change_at=change_at,
                  change_label=f"second connection APPENDed to {box}", gap=longest_gap(case, imap.label, idle_from, end))
    case.attach("timeline", tl.as_dict("pass" if new is not None and gone is not None else "fail"))
    case.measure("notification_latency", latency, "s")
    assert new is not None, (f"no STATUS for the watched mailbox {box} within {wait:g} s of an APPEND during IDLE "
                             f"(saw {watch.saw()})")
    items = status_items(new.first_line)
    want = ["MESSAGES", "UIDNEXT"] + (["HIGHESTMODSEQ"] if condstore else [])
    missing = [k for k in want if k not in items]
    assert not missing, f"STATUS after new mail lacks {', '.join(missing)}: {new.first_line!r}"
    assert items["MESSAGES"] == 1, f"STATUS after one APPEND says MESSAGES {items['MESSAGES']}: {new.first_line!r}"
    assert gone is not None, f"no STATUS with MESSAGES 0 within {wait:g} s of the expunge in {box}"
    imap.done(tag, timeout=3)
    case.passed(f"{new.first_line} after {latency:.3f} s; {gone.first_line} after the expunge")
