"""The reconnect checks end to end against real and fake servers: they all pass against the embedded Dovecot,
and fail, with the truncated or misanswered exchange as evidence, against fakes that misbehave on purpose."""

from __future__ import annotations

import pytest

from tests.fakes.imap import FakeImapServer
from tests.fakes.reconnect import (
    BufferingCompressSession,
    DeflatingStore,
    EagerVanishedSession,
    HalfSentRelay,
    MisbehavingStoreSession,
    StoredBlocksCompressStore,
)
from tests.proving import run_check

ALL_CHECKS = {
    "reconnect/enable_reports_enabled|direct", "reconnect/qresync_before_enable_is_bad|direct",
    "reconnect/stale_uidvalidity_ignored|direct", "reconnect/resync_after_drop|kill",
    "reconnect/resync_after_drop|nat-idle:timeout=1,mode=silent", "reconnect/old_modseq_reports_every_expunge|direct",
    "reconnect/uid_fetch_changedsince_vanished|direct", "reconnect/vanished_not_expunge_and_uid_modseq|direct",
    "reconnect/store_unchangedsince_modified|direct", "reconnect/highestmodseq_on_select|direct",
    "reconnect/quick_resync_cost_follows_changes|kill", "reconnect/append_cut_midway|kill",
    "reconnect/submission_cut_midway|kill", "reconnect/compress_full_sync_through_path|kill",
    "reconnect/compress_full_sync_through_path|nat-idle:timeout=30,mode=silent",
    "reconnect/flaky_link_converges|flaky:reset_every=1,seed=7", "reconnect/known_uids_and_sequence_match|direct",
    "reconnect/closed_code_between_mailboxes|direct", "reconnect/expunge_codes_and_close|direct",
    "reconnect/compress_refusals|direct", "reconnect/compress_idle_push_decodes_promptly|direct",
    "reconnect/store_modseq_grows|direct", "reconnect/vanished_only_when_allowed|direct",
}


def test_every_reconnect_check_passes_against_dovecot(lemonade):
    run = lemonade("run", "-k", "reconnect", timeout=400)
    verdicts = {}
    for r in run.results["results"]:
        if not r["check"].startswith("reconnect/"):
            continue
        verdicts.setdefault(f"{r['check']}|{r['scenario']}", set()).add(r["verdict"])
    missing = ALL_CHECKS - set(verdicts)
    assert not missing, f"checks that did not run: {missing}\n{run.out}"
    bad = {k: v for k, v in verdicts.items() if v != {"pass"}}
    assert not bad, f"{bad}\n{run.out}"
    cost = run.result("reconnect/quick_resync_cost_follows_changes")
    data = cost["evidence"]["resync_cost"]
    assert data["sizes"] == [50, 200] and all(q <= data["bound"] for q in data["quick"])
    assert data["full"][1] > data["full"][0] * 2, data  # a full resync grows with the mailbox, the quick one does not
    html = (run.dir / "index.html").read_text()
    assert "quick vs full resync bytes" in html
    comp = run.result("reconnect/compress_full_sync_through_path")["evidence"]["measurements"]
    assert comp["full_sync_bytes.compressed"]["value"] < comp["full_sync_bytes.plain"]["value"]
    push = run.result("reconnect/compress_idle_push_decodes_promptly")["evidence"]["measurements"]
    assert push["compressed_push_latency"]["value"] <= push["compressed_push_latency"]["budget"], push


@pytest.mark.proves("reconnect/append_cut_midway", "mobile.upload.no-partial-message")
@pytest.mark.proves("reconnect/qresync_before_enable_is_bad", "qresync.select-preconditions")
@pytest.mark.proves("reconnect/stale_uidvalidity_ignored", "qresync.select-baseline")
@pytest.mark.proves("reconnect/compress_full_sync_through_path", "compress.start-point")
@pytest.mark.proves("reconnect/closed_code_between_mailboxes", "qresync.closed-code")
@pytest.mark.proves("reconnect/expunge_codes_and_close", "qresync.expunge-modseq")
@pytest.mark.proves("reconnect/compress_refusals", "compress.capability")
@pytest.mark.proves("reconnect/compress_refusals", "compress.failure-modes")
def test_misbehaving_store_fails_the_upload_precondition_baseline_and_compress_checks(lemonade, tmp_path, prove):
    with FakeImapServer(MisbehavingStoreSession, timeout=1.0) as fake:
        run = lemonade("run", "--target", str(fake.target_file(tmp_path)), "-k",
                       "append_cut_midway or before_enable or stale_uidvalidity or compress_full_sync or closed_code "
                       "or expunge_codes or compress_refusals",
                       "--scenario", "kill")
    appends = [r for r in run.results["results"] if r["check"] == "reconnect/append_cut_midway"]
    assert len(appends) == 3, run.out
    for r in appends:  # literal, LITERAL+ and CATENATE: the truncated part was stored
        prove(r, "reconnect/append_cut_midway", "mobile.upload.no-partial-message", "not the one sent")
        assert any("cut" in e["text"] for e in r["evidence"]["transcript"])
    prove(run, "reconnect/qresync_before_enable_is_bad", "qresync.select-preconditions", "must be BAD")
    prove(run, "reconnect/stale_uidvalidity_ignored", "qresync.select-baseline", "VANISHED (EARLIER)")
    # its replies stay uncompressed after COMPRESS: they do not inflate
    prove(run, "reconnect/compress_full_sync_through_path", "compress.start-point", "does not decode as raw DEFLATE")
    prove(run, "reconnect/closed_code_between_mailboxes", "qresync.closed-code", "no OK [CLOSED]")
    prove(run, "reconnect/expunge_codes_and_close", "qresync.expunge-modseq", "[HIGHESTMODSEQ n]")
    prove(run, "reconnect/compress_refusals", "compress.capability", "COMPRESS before authentication must be refused")
    prove(run, "reconnect/compress_refusals", "compress.failure-modes", "COMPRESS with an unknown mechanism must be refused")
    assert run.rc == 1


@pytest.mark.filterwarnings("ignore::pytest.PytestUnknownMarkWarning")
def test_a_cut_that_did_not_happen_is_an_error_not_a_pass(lemonade):
    """An intermediary that arms cuts and never makes them (tests/reconnect/missing_kill_addon.py): the uploads go
    through whole and used to pass; the path's record has no cut, so the cut-midway checks now say error."""
    run = lemonade("run", "--scenario", "kill-that-misses", "-k", "append_cut_midway or submission_cut_midway",
                   prelude="import tests.reconnect.missing_kill_addon")
    results = [r for r in run.results["results"] if r["check"] in ("reconnect/append_cut_midway",
                                                                   "reconnect/submission_cut_midway")]
    assert len(results) == 5, run.out + run.err
    for r in results:
        assert r["verdict"] == "error" and "did not cut" in r["message"] and "no cut in the path's record" in r["message"], r
    assert run.rc == 2


@pytest.mark.filterwarnings("ignore::pytest.PytestUnknownMarkWarning")  # the check module uses lemonade markers
@pytest.mark.proves("reconnect/submission_cut_midway", "mobile.upload.no-partial-message")
def test_half_sent_submission_relayed_fails_the_check(tmp_path, prove):
    from conformance.case import CaseContext
    from conformance.catalog import load_catalog
    from conformance.checks.reconnect.test_upload import test_submission_cut_midway
    from conformance.intermediaries.scenario import parse_scenario
    from conformance.targets import Account, Endpoint, Target

    relay = HalfSentRelay().start()
    target = Target(name="half-sent-relay", accounts=[Account("alice", "pw-not-used")], sink=relay,
                    endpoints={"submission": Endpoint("submission", "smtp", "127.0.0.1", relay.port)})
    case = CaseContext(target=target, scenario=parse_scenario("kill"), catalog=load_catalog(),
                       requirements=["mobile.upload.no-partial-message"], profiles=["mobile-intermediary"],
                       depth="quick", check="reconnect/submission_cut_midway").start()
    try:
        result = run_check(case, test_submission_cut_midway, "DATA")
        prove(result, "reconnect/submission_cut_midway", "mobile.upload.no-partial-message", "relayed truncated")
        assert relay.messages and len(relay.messages[0].data) < 65536
        assert any("cut" in e["text"] for e in case.transcript.as_list())
    finally:
        case.close()
        relay.stop()


@pytest.mark.proves("reconnect/compress_idle_push_decodes_promptly", "compress.interactive-flush")
def test_push_held_in_the_compressor_fails_the_interactive_flush_check(lemonade, tmp_path, prove):
    with FakeImapServer(BufferingCompressSession, timeout=5.0) as fake:
        run = lemonade("run", "--target", str(fake.target_file(tmp_path)), "-k", "compress_idle_push")
    r = prove(run, "reconnect/compress_idle_push_decodes_promptly", "compress.interactive-flush",
              "held it in the compressor")
    assert r["evidence"]["measurements"]["compressed_push_latency"]["value"] >= 2, r["evidence"]["measurements"]
    assert "reply to DONE ('* 2 EXISTS')" in r["message"]  # decoded, but only once DONE's reply flushed it
    assert run.rc == 1


@pytest.mark.filterwarnings("ignore::pytest.PytestUnknownMarkWarning")  # the check module uses lemonade markers
@pytest.mark.proves("reconnect/compress_full_sync_through_path", "mobile.compress.through-intermediaries")
def test_compress_that_saves_nothing_fails_the_full_sync_check(prove):
    """A store whose DEFLATE stream decodes but is made of stored blocks (level 0) fails for the octets, not for the
    stream's start; the same store compressing at the default level passes. Both run in this process."""
    from conformance.checks.reconnect.test_compress import test_compress_full_sync_through_path as check
    from conformance.targets import Account, Endpoint, Target
    from tests.direct import assert_judged
    from tests.direct import run_check as run_direct
    from tests.fakes.imap import ACCOUNTS

    runs = {}
    for session in (StoredBlocksCompressStore, DeflatingStore):
        with FakeImapServer(session, timeout=5.0) as fake:
            target = Target(name=session.__name__, accounts=[Account(u, p) for u, p in ACCOUNTS],
                            endpoints={"imap": Endpoint("imap", "imap", "127.0.0.1", fake.port)})
            runs[session] = run_direct(check, target)
    check_id = "reconnect/compress_full_sync_through_path"
    r = prove(runs[StoredBlocksCompressStore], check_id, "mobile.compress.through-intermediaries",
              "COMPRESS=DEFLATE did not reduce the full sync of 300 messages")
    assert r["requirement_verdicts"]["compress.start-point"]["verdict"] == "pass", r["requirement_verdicts"]
    assert_judged(runs[DeflatingStore], check_id, "mobile.compress.through-intermediaries", "pass")


@pytest.mark.proves("reconnect/vanished_only_when_allowed", "qresync.vanished-visible-only")
def test_vanished_out_of_turn_fails_the_visible_only_check(lemonade, tmp_path, prove):
    with FakeImapServer(EagerVanishedSession, timeout=5.0) as fake:
        run = lemonade("run", "--target", str(fake.target_file(tmp_path)), "-k", "vanished_only_when")
    prove(run, "reconnect/vanished_only_when_allowed", "qresync.vanished-visible-only",
          ["sent '* VANISHED 4' while no command was in progress", "VANISHED during FETCH",
           "UID 99, never announced by EXISTS"])
    assert run.rc == 1
