"""The helper layer for checks (conformance/checks/support/) against the real embedded Dovecot: what select and
append report, who is blamed when a step is refused, the change-maker seen from an idling connection, the ground
truth."""

from __future__ import annotations

import pytest

from conformance.case import CaseContext
from conformance.catalog import load_catalog
from conformance.checks.support import (
    Blame,
    ChangeMaker,
    Watch,
    append,
    examine,
    fetch_uid,
    full_sync,
    ground_truth,
    search_uids,
    select,
    untagged,
    wait_for_untagged,
)
from conformance.errors import ConformanceFailure, HarnessError, NotApplicable
from conformance.intermediaries.scenario import parse_scenario


@pytest.fixture
def case(dovecot):
    ctx = CaseContext(target=dovecot, scenario=parse_scenario("direct"), catalog=load_catalog(),
                      requirements=["idle.continuation"], profiles=[], depth="quick", check="tests/support").start()
    yield ctx
    ctx.close()


def test_select_and_append_report_what_the_server_said(case):
    imap = case.imap(label="client")
    box = case.scratch_mailbox(imap)
    empty = select(imap, box, condstore=True)
    assert empty.ok and empty.exists == 0 and empty.uidvalidity and empty.uidnext == 1
    assert empty.highestmodseq is not None and not empty.nomodseq
    assert empty.flags and "\\Seen" in empty.flags and empty.permanentflags is not None
    message = b"Subject: support\r\n\r\nhello\r\n"
    done = [append(imap, box, message, flags="\\Flagged"), append(imap, box, message, literal="non-sync"),
            append(imap, box, message, literal="literal8")]
    assert all(d.ok and d.uidvalidity == empty.uidvalidity for d in done)
    assert [d.uid for d in done] == [1, 2, 3], "APPENDUID names each new message"
    assert not any(r.is_continuation for r in done[1].result.untagged), "LITERAL+ is sent without waiting for '+'"
    again = examine(imap, box)
    assert again.exists == 3 and again.uidnext == 4
    assert search_uids(imap) == [1, 2, 3]
    assert fetch_uid(imap, 1, "FLAGS", "BODY.PEEK[]") == {"UID": 1, "FLAGS": ["\\Flagged"], "BODY[]": message}


def test_a_refused_step_is_blamed_as_the_caller_chose(case):
    imap = case.imap(label="client")
    ghost = "lemonade-no-such-mailbox"
    with pytest.raises(HarnessError, match="SELECT lemonade-no-such-mailbox refused"):
        select(imap, ghost)  # a set-up step: the harness's
    with pytest.raises(NotApplicable):
        select(imap, ghost, blame=Blame.PREREQUISITE)
    with pytest.raises(ConformanceFailure, match="EXAMINE"):
        examine(imap, ghost, blame=Blame.SERVER)
    refused = select(imap, ghost, blame=None)  # no judgement: the caller reads the answer
    assert not refused.ok and refused.result.status == "NO" and refused.exists is None
    with pytest.raises(ConformanceFailure, match="APPEND of 5 octets"):
        append(imap, ghost, b"x\r\n\r\n", blame=Blame.SERVER)


def test_change_maker_changes_reach_an_idling_connection(case):
    changer = ChangeMaker(case)
    box = changer.scratch_mailbox(messages=2)
    assert changer.label == "changer" and changer.select(box).exists == 2
    imap = case.imap(label="idler")
    select(imap, box)
    tag = imap.idle(timeout=5)
    watch = Watch(case, imap)
    changer.append(box, n=3)
    assert watch.until(5, untagged.exists(3)) is not None, watch.saw()
    changer.store(1, "+FLAGS (\\Flagged)")
    fetched = watch.until(5, untagged.fetch(1))
    assert fetched is not None and "\\Flagged" in fetched.first_line, watch.saw()
    changer.expunge(2)
    assert watch.until(5, untagged.expunge_or_vanished()) is not None, watch.saw()
    assert watch.until(0.2) is None and watch.closed_at is None
    imap.done(tag, timeout=3)
    changer.append(box, n=4)
    assert wait_for_untagged(imap, untagged.exists(), 0.5) is None, "no untagged data between commands"
    with pytest.raises(ConformanceFailure, match="idler: no EXISTS within 0.2 s"):
        wait_for_untagged(imap, untagged.exists(), 0.2, blame=Blame.SERVER, expected="EXISTS")
    assert any(untagged.exists(3)(r) for r in imap.command("NOOP").untagged)
    assert {e.conn for e in case.transcript.entries} >= {"changer", "idler"}, "both connections are evidence"


def test_ground_truth_is_a_full_sync_on_an_undisturbed_connection(case):
    changer = ChangeMaker(case)
    box = changer.scratch_mailbox(messages=3)
    changer.select(box)
    changer.store(2, "+FLAGS (\\Seen $Lemonade)")
    changer.expunge(3)
    truth = ground_truth(case, box)
    assert sorted(truth.flags) == [1, 2] and truth.flags[2] == frozenset({"\\Seen", "$Lemonade"})
    client = case.imap(label="client")
    view, _ = full_sync(client, box)
    assert not view.diff(truth) and view.uidvalidity == truth.uidvalidity
    assert "truth" in {e.conn for e in case.transcript.entries}
