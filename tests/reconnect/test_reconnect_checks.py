"""The reconnect checks end to end: they pass against the real embedded Dovecot, and fail, with the rewritten or
truncated exchange as evidence, when a rewriting intermediary or a fake makes the server misbehave."""

from __future__ import annotations

import pytest

from tests.fakes.imap import FakeImapServer
from tests.fakes.reconnect import HalfSentRelay, TruncatingAppendSession
from tests.reconnect.rewriter import rewriting_target

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
}


def texts(result: dict) -> str:
    return "\n".join(e["text"] for e in result["evidence"]["transcript"])


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


@pytest.fixture(scope="module")
def dropping_vanished(tmp_path_factory):
    with rewriting_target(tmp_path_factory.mktemp("drop-vanished"), drop_vanished=True) as f:
        yield f


@pytest.fixture(scope="module")
def stripping_modseq(tmp_path_factory):
    with rewriting_target(tmp_path_factory.mktemp("strip-modseq"), strip_modseq=True, strip_highestmodseq=True) as f:
        yield f


def test_dropped_vanished_lines_fail_the_resync_checks(lemonade, dropping_vanished):
    run = lemonade("run", "--target", str(dropping_vanished), "-k",
                   "resync_after_drop or old_modseq or uid_fetch_changedsince or vanished_not_expunge or flaky_link or known_uids")
    got = {f"{r['check']}|{r['scenario']}": r for r in run.results["results"]}
    assert set(got) >= {"reconnect/resync_after_drop|kill", "reconnect/old_modseq_reports_every_expunge|direct",
                        "reconnect/uid_fetch_changedsince_vanished|direct",
                        "reconnect/vanished_not_expunge_and_uid_modseq|direct",
                        "reconnect/flaky_link_converges|flaky:reset_every=1,seed=7",
                        "reconnect/known_uids_and_sequence_match|direct"}, run.out
    for key, r in got.items():
        assert r["verdict"] == "fail", f"{key}: {r['verdict']} {r['message']}\n{run.out}"
        assert "VANISHED" in r["message"] or "expunged" in r["message"], (key, r["message"])
        # the evidence is the rewritten exchange: the client never saw a VANISHED line
        assert "* VANISHED" not in texts(r), key
    assert run.rc == 1


def test_stripped_modseq_fails_the_modseq_checks(lemonade, stripping_modseq):
    run = lemonade("run", "--target", str(stripping_modseq), "-k",
                   "resync_after_drop or vanished_not_expunge or unchangedsince or highestmodseq_on")
    got = {f"{r['check']}|{r['scenario']}": r for r in run.results["results"]}
    for key in ("reconnect/resync_after_drop|kill", "reconnect/vanished_not_expunge_and_uid_modseq|direct",
                "reconnect/store_unchangedsince_modified|direct", "reconnect/highestmodseq_on_select|direct"):
        r = got[key]
        assert r["verdict"] == "fail" and "MODSEQ" in r["message"], f"{key}: {r['verdict']} {r['message']}"
        assert "MODSEQ (" not in texts(r), key


def test_truncated_append_fails_the_upload_check(lemonade, tmp_path):
    with FakeImapServer(TruncatingAppendSession, timeout=1.0) as fake:
        run = lemonade("run", "--target", str(fake.target_file(tmp_path)), "-k", "append_cut_midway")
    results = run.results["results"]
    assert len(results) == 3, run.out
    for r in results:
        assert r["verdict"] == "fail" and "not the one sent" in r["message"], (r["nodeid"], r["verdict"], r["message"])
        assert any("cut" in e["text"] for e in r["evidence"]["transcript"] if e.get("leg") != "proxy-server")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnknownMarkWarning")  # the check module uses lemonade markers
def test_half_sent_submission_relayed_fails_the_check(tmp_path):
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
        with pytest.raises(AssertionError, match="relayed truncated"):
            test_submission_cut_midway(case, "DATA")
        assert relay.messages and len(relay.messages[0].data) < 65536
        assert any("cut" in e["text"] for e in case.transcript.as_list())
    finally:
        case.close()
        relay.stop()


def test_vanished_after_fetch_fails_the_order_check(lemonade, tmp_path):
    with rewriting_target(tmp_path, vanished_last=True) as f:
        run = lemonade("run", "--target", str(f), "-k", "resync_after_drop", "--scenario", "kill")
    r = run.result("reconnect/resync_after_drop")
    assert r["verdict"] == "fail" and "VANISHED (EARLIER) after a FETCH" in r["message"], r["message"]


def test_select_cost_growing_with_the_mailbox_fails_the_cost_check(lemonade, tmp_path):
    with rewriting_target(tmp_path, pad_exists=True) as f:
        run = lemonade("run", "--target", str(f), "-k", "quick_resync_cost")
    r = run.result("reconnect/quick_resync_cost_follows_changes")
    assert r["verdict"] == "fail" and "over the bound: N=200" in r["message"], r["message"]
    assert r["evidence"]["resync_cost"]["quick"][1] > r["evidence"]["resync_cost"]["bound"]


def test_uncompressed_replies_fail_the_compress_check(lemonade, tmp_path):
    from tests.fakes.reconnect import UncompressedReplySession

    with FakeImapServer(UncompressedReplySession, timeout=1.0) as fake:
        run = lemonade("run", "--target", str(fake.target_file(tmp_path)), "-k", "compress_full_sync",
                       "--scenario", "kill")
    r = run.result("reconnect/compress_full_sync_through_path")
    assert r["verdict"] == "fail" and "compressed session broke" in r["message"], r["message"]


def test_missing_enabled_response_fails_the_enable_check(lemonade, tmp_path):
    with rewriting_target(tmp_path, drop_enabled=True) as f:
        run = lemonade("run", "--target", str(f), "-k", "enable_reports")
    r = run.result("reconnect/enable_reports_enabled")
    assert r["verdict"] == "fail" and "ENABLED QRESYNC" in r["message"], r["message"]
    assert "* ENABLED" not in texts(r)


def test_sloppy_qresync_server_fails_the_precondition_and_baseline_checks(lemonade, tmp_path):
    from tests.fakes.reconnect import SloppyQresyncSession

    with FakeImapServer(SloppyQresyncSession, timeout=1.0) as fake:
        run = lemonade("run", "--target", str(fake.target_file(tmp_path)), "-k", "before_enable or stale_uidvalidity")
    before = run.result("reconnect/qresync_before_enable_is_bad")
    assert before["verdict"] == "fail" and "must be BAD" in before["message"], before["message"]
    stale = run.result("reconnect/stale_uidvalidity_ignored")
    assert stale["verdict"] == "fail" and "VANISHED (EARLIER)" in stale["message"], stale["message"]
