"""IMAP NOTIFY (RFC 5465): MailboxName LIST events, IDLE sends only the chosen events, MessageNew in the selected
mailbox (EXISTS then FETCH with the requested attributes), SELECTED-DELAYED holding expunges."""

from __future__ import annotations

import re
import uuid

import pytest

from conformance.checks.support import Blame, ChangeMaker, Watch, append, select, untagged
from conformance.protocols.imapwire import Response, parse_fetch, quote

from .test_notify import notify_session, watch_selected
from .timelines import longest_gap, timeline

LIST_RE = re.compile(r'^\* LIST \(([^()]*)\) (?:"(?:[^"\\]|\\.)*"|NIL) ("(?:[^"\\]|\\.)*"|[^\s()]+)(.*)$', re.I)


def list_event(resp: Response) -> tuple[str, set[str], str] | None:
    """(mailbox name, lower-cased attributes, extended data) of an untagged LIST response, else None."""
    m = LIST_RE.match(resp.first_line)
    if not m:
        return None
    name = m.group(2)
    if name.startswith('"'):
        name = re.sub(r"\\(.)", r"\1", name[1:-1])
    return name, {a.lower() for a in m.group(1).split()}, m.group(3).strip()


def wait_param(case) -> float:
    """How long a NOTIFY check waits for an event: the wait of notify.between-commands."""
    return case.param("wait", requirement="notify.between-commands")


@pytest.mark.requirement("notify.mailboxname")
def test_notify_mailboxname_list_events(case):
    """With MailboxName watched, CREATE/RENAME/DELETE on a second connection give unsolicited LIST responses;
    the LIST for the deleted name carries \\NonExistent."""
    wait = wait_param(case)
    imap, _ = notify_session(case)
    other = ChangeMaker(case)
    base = f"lemonade-mbn-{uuid.uuid4().hex[:8]}"
    created, renamed = f"{base}-a", f"{base}-b"
    case.delete_at_end(created, renamed)
    select(imap, "INBOX")
    res = imap.command("NOTIFY SET (selected (MessageNew MessageExpunge)) (personal (MailboxName))", timeout=5)
    assert res.ok, f"NOTIFY SET with MailboxName for personal refused: {res.tagged.first_line!r}"
    tag = imap.idle(timeout=5)
    idle_from = case.transcript.now()
    watch = Watch(case, imap)
    got: dict[str, tuple[str, set[str], str] | None] = {}
    change_at = case.transcript.now()
    for step, command, name in (("CREATE", f"CREATE {quote(created)}", created),
                                ("RENAME", f"RENAME {quote(created)} {quote(renamed)}", renamed),
                                ("DELETE", f"DELETE {quote(renamed)}", renamed)):
        other.command(command)
        hit = watch.until(wait, lambda resp, n=name: (ev := list_event(resp)) is not None and ev[0] == n)
        got[step] = list_event(hit) if hit is not None else None
        if hit is None:
            break
    end = case.transcript.now()
    ok = all(got.get(s) for s in ("CREATE", "RENAME", "DELETE")) and "\\nonexistent" in got["DELETE"][1]
    tl = timeline(case, imap.label, "NOTIFY MailboxName during IDLE", start=max(0.0, idle_from - 0.3), end=end + 0.2,
                  idle_from=idle_from, change_at=change_at, change_label=f"second connection CREATE {created}",
                  gap=longest_gap(case, imap.label, idle_from, end))
    case.attach("timeline", tl.as_dict("pass" if ok else "fail"))
    for step, name in (("CREATE", created), ("RENAME", renamed), ("DELETE", renamed)):
        assert got.get(step) is not None, (f"no unsolicited LIST for {name} within {wait:g} s of {step} on a second "
                                           f"connection with MailboxName watched (RFC 5465 5.4); saw {watch.saw()}")
    assert "\\nonexistent" not in got["CREATE"][1], f"the LIST for the created {created} says \\NonExistent: {got['CREATE']}"
    assert "\\nonexistent" not in got["RENAME"][1], (f"the LIST for the new name {renamed} says \\NonExistent: "
                                                     f"{got['RENAME']}")
    assert "\\nonexistent" in got["DELETE"][1], (f"the LIST for the deleted {renamed} must carry \\NonExistent "
                                                  f"(RFC 5465 5.4), attributes were ({' '.join(sorted(got['DELETE'][1]))})")
    if "OLDNAME" not in got["RENAME"][2].upper():
        case.note(f"the LIST after RENAME carries no OLDNAME extended data: {got['RENAME']}")
    imap.done(tag, timeout=3)
    case.passed("LIST for CREATE, RENAME and DELETE; the deleted name carries \\NonExistent")


@pytest.mark.requirement("notify.idle-consistency")
def test_notify_idle_sends_only_chosen_events(case):
    """NOTIFY SET without FlagChange: during IDLE a flag change by another connection gives no FETCH.

    A later APPEND on the second connection is a sentinel: once its EXISTS has arrived, the server has had its chance
    to report the earlier flag change, so its silence about message 1 is not just slowness.
    """
    wait = wait_param(case)
    imap, other, box = watch_selected(case, "(selected (MessageNew MessageExpunge))")
    other.select(box)
    tag = imap.idle(timeout=5)
    idle_from = case.transcript.now()
    watch = Watch(case, imap)
    change_at = case.transcript.now()
    other.store(1, "+FLAGS (\\Flagged)", uid=False)
    other.append(box, n=2)
    sentinel = watch.until(wait, untagged.exists(2))
    if sentinel is not None:
        watch.until(0.5)  # a FETCH queued just behind the EXISTS still counts
    end = case.transcript.now()
    fetches = [r.first_line for _, r in watch.seen if untagged.fetch(1)(r)]
    tl = timeline(case, imap.label, "NOTIFY without FlagChange: flag change during IDLE", idle_from=idle_from,
                  start=max(0.0, idle_from - 0.3), end=end + 0.2, change_at=change_at,
                  change_label="second connection set \\Flagged, then APPENDed a sentinel",
                  gap=longest_gap(case, imap.label, idle_from, end))
    case.attach("timeline", tl.as_dict("fail" if fetches or sentinel is None else "pass"))
    assert not fetches, (f"NOTIFY SET chose only MessageNew and MessageExpunge for the selected mailbox, yet during "
                         f"IDLE a flag change on another connection was reported: {fetches} (RFC 5465 4)")
    assert sentinel is not None, (f"NOTIFY SET chose MessageNew for the selected mailbox, yet during IDLE no "
                                  f"'* 2 EXISTS' came within {wait:g} s of another connection's APPEND: the server did "
                                  f"not send a chosen event (RFC 5465 4: exactly the chosen events); saw {watch.saw()}")
    imap.done(tag, timeout=3)
    case.passed(f"no FETCH for the flag change; sentinel {sentinel.first_line} arrived")


@pytest.mark.requirement("notify.selected-messagenew")
def test_notify_selected_messagenew_exists_then_fetch(case):
    """MessageNew (UID FLAGS) on the selected mailbox: another connection's APPEND gives EXISTS, then FETCH with UID
    and FLAGS; the client's own APPEND gives EXISTS but no FETCH."""
    wait = wait_param(case)
    imap, other, box = watch_selected(case, "(selected (MessageNew (UID FLAGS) MessageExpunge))")
    tag = imap.idle(timeout=5)
    idle_from = case.transcript.now()
    watch = Watch(case, imap)
    change_at = case.transcript.now()
    other.append(box, n=2)
    fetch = watch.until(wait, untagged.fetch(2))
    end = case.transcript.now()
    lines = [r.first_line for _, r in watch.seen]
    exists_i = next((i for i, (_, r) in enumerate(watch.seen) if untagged.exists(2)(r)), None)
    fetch_i = next((i for i, (_, r) in enumerate(watch.seen) if untagged.fetch(2)(r)), None)
    items: dict = {}
    if fetch is not None:
        parsed = parse_fetch(fetch)
        items = parsed[1] if parsed else {}
    missing = [k for k in ("UID", "FLAGS") if k not in items]
    ok = exists_i is not None and fetch_i is not None and exists_i < fetch_i and not missing
    tl = timeline(case, imap.label, "NOTIFY MessageNew (UID FLAGS) in the selected mailbox", idle_from=idle_from,
                  start=max(0.0, idle_from - 0.3), end=end + 0.2, change_at=change_at,
                  change_label=f"second connection APPENDed to {box}", gap=longest_gap(case, imap.label, idle_from, end))
    case.attach("timeline", tl.as_dict("pass" if ok else "fail"))
    assert exists_i is not None, (f"no '* 2 EXISTS' within {wait:g} s of another connection's APPEND to the selected "
                                  f"mailbox with MessageNew watched; saw {lines or 'nothing'}")
    assert fetch_i is not None, (f"'* 2 EXISTS' but no FETCH for the new message within {wait:g} s, though MessageNew "
                                 f"asked for (UID FLAGS) (RFC 5465 5.2); saw {lines}")
    assert exists_i < fetch_i, f"the FETCH for the new message came before its EXISTS: {lines}"
    assert not missing, f"the FETCH for the new message lacks the requested {', '.join(missing)}: {fetch.first_line!r}"
    imap.done(tag, timeout=3)
    data = b"From: push-check@example.test\r\nSubject: own append\r\n\r\nmine\r\n"
    own = append(imap, box, data, timeout=5, blame=Blame.HARNESS)
    responses = own.result.untagged + imap.command("NOOP", timeout=5).untagged
    own_fetch = [r.first_line for r in responses if untagged.fetch(3)(r)]
    assert not own_fetch, (f"a FETCH for the message this connection APPENDed itself (RFC 5465 5.2: SHOULD NOT, "
                           f"the client knows the message already): {own_fetch}")
    case.passed(f"{lines[exists_i]} then {fetch.first_line}; own APPEND without FETCH")


@pytest.mark.requirement("notify.selected-delayed")
def test_notify_selected_delayed_holds_expunges(case):
    """SELECTED-DELAYED: an expunge by another connection is not reported while no command is in progress, but the
    next NOOP reports it.

    The second connection APPENDs a sentinel after its EXPUNGE; MessageNew is not delayed, so once the sentinel's
    EXISTS has arrived the server has had its chance to (wrongly) send the expunge. Without that EXISTS the client
    waits the whole ``wait`` of notify.between-commands.
    """
    wait = wait_param(case)
    imap, _ = notify_session(case)
    other = ChangeMaker(case)
    box = other.scratch_mailbox(messages=2)
    select(imap, box)
    res = imap.command("NOTIFY SET (selected-delayed (MessageNew MessageExpunge))", timeout=5)
    assert res.ok, f"NOTIFY SET (selected-delayed ...) refused: {res.tagged.first_line!r}"
    other.select(box)
    start = case.transcript.now()
    watch = Watch(case, imap)
    change_at = case.transcript.now()
    other.expunge(1, uid=False)
    other.append(box, n=3)
    sentinel = watch.until(wait, untagged.exists())
    if sentinel is not None:
        watch.until(0.5)  # an expunge queued just behind the EXISTS still counts
    gone = untagged.expunge_or_vanished()
    early = [r.first_line for _, r in watch.seen if gone(r)]
    noop = imap.command("NOOP", timeout=5) if not early else None
    end = case.transcript.now()
    held = [r.first_line for r in (noop.untagged if noop else []) if gone(r)]
    tl = timeline(case, imap.label, "NOTIFY SELECTED-DELAYED: expunge held until NOOP", start=max(0.0, start - 0.3),
                  end=end + 0.2, change_at=change_at, change_label="second connection expunged message 1",
                  gap=longest_gap(case, imap.label, start, end))
    case.attach("timeline", tl.as_dict("pass" if not early and held else "fail"))
    assert not early, (f"with SELECTED-DELAYED the expunge must wait for a command that allows expunges (RFC 5465 "
                       f"selected-delayed), yet it arrived with no command in progress: {early}")
    assert held, (f"the NOOP after the held expunge reported no EXPUNGE or VANISHED "
                  f"(untagged: {[r.first_line for r in noop.untagged] or 'none'})")
    quiet = f"sentinel {sentinel.first_line} seen" if sentinel is not None else f"nothing at all in {wait:g} s"
    case.passed(f"no expunge while no command ran ({quiet}); NOOP gave {held[0]}")
