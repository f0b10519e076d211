"""The reconnect checks against the embedded Dovecot behind a test-only response-rewriting intermediary: each
rewrite makes the matching checks fail, and the evidence is the rewritten exchange the client saw."""

from __future__ import annotations

import pytest

from tests.reconnect.rewriter import rewriting_target


def texts(result: dict) -> str:
    return "\n".join(e["text"] for e in result["evidence"]["transcript"])


@pytest.fixture(scope="module")
def dropping_vanished(tmp_path_factory):
    with rewriting_target(tmp_path_factory.mktemp("drop-vanished"), drop_vanished=True) as f:
        yield f


@pytest.fixture(scope="module")
def stripping_modseq(tmp_path_factory):
    with rewriting_target(tmp_path_factory.mktemp("strip-modseq"), strip_modseq=True, strip_highestmodseq=True) as f:
        yield f


@pytest.mark.proves("reconnect/resync_after_drop", "qresync.select.vanished-earlier")
@pytest.mark.proves("reconnect/resync_after_drop", "mobile.reconnect.resync-after-drop")
@pytest.mark.proves("reconnect/old_modseq_reports_every_expunge", "qresync.old-modseq")
@pytest.mark.proves("reconnect/uid_fetch_changedsince_vanished", "qresync.uid-fetch-vanished")
@pytest.mark.proves("reconnect/vanished_not_expunge_and_uid_modseq", "qresync.vanished-not-expunge")
@pytest.mark.proves("reconnect/flaky_link_converges", "mobile.reconnect.flaky-convergence")
@pytest.mark.proves("reconnect/flaky_link_converges", "qresync.resync-equivalence")
@pytest.mark.proves("reconnect/flaky_link_converges", "qresync.no-lost-changes")
@pytest.mark.proves("reconnect/known_uids_and_sequence_match", "qresync.select-scope")
def test_dropped_vanished_lines_fail_the_resync_checks(lemonade, dropping_vanished, prove):
    run = lemonade("run", "--target", str(dropping_vanished), "-k",
                   "resync_after_drop or old_modseq or uid_fetch_changedsince or vanished_not_expunge or flaky_link "
                   "or known_uids")
    got = {f"{r['check']}|{r['scenario']}": r for r in run.results["results"]}
    assert set(got) >= {"reconnect/resync_after_drop|kill", "reconnect/old_modseq_reports_every_expunge|direct",
                        "reconnect/uid_fetch_changedsince_vanished|direct",
                        "reconnect/vanished_not_expunge_and_uid_modseq|direct",
                        "reconnect/flaky_link_converges|flaky:reset_every=1,seed=7",
                        "reconnect/known_uids_and_sequence_match|direct"}, run.out
    for key, r in got.items():
        assert r["verdict"] == "fail", f"{key}: {r['verdict']} {r['message']}\n{run.out}"
        # the evidence is the rewritten exchange: the client never saw a VANISHED line
        assert "* VANISHED" not in texts(r), key
    for check, rid, words in [
        ("resync_after_drop", "qresync.select.vanished-earlier", "were not reported in VANISHED (EARLIER)"),
        ("resync_after_drop", "mobile.reconnect.resync-after-drop", "reconstructed state differs from a fresh full sync"),
        ("old_modseq_reports_every_expunge", "qresync.old-modseq", "must report every expunged UID"),
        ("uid_fetch_changedsince_vanished", "qresync.uid-fetch-vanished", "missing from VANISHED"),
        ("vanished_not_expunge_and_uid_modseq", "qresync.vanished-not-expunge", "expected VANISHED for UIDs"),
        ("flaky_link_converges", "mobile.reconnect.flaky-convergence", "the client's state differs from the server"),
        ("flaky_link_converges", "qresync.resync-equivalence", "UIDs the client still has but the server expunged"),
        ("flaky_link_converges", "qresync.no-lost-changes", "the client's state differs from the server"),
        ("known_uids_and_sequence_match", "qresync.select-scope", "was expunged, but VANISHED (EARLIER) reported"),
    ]:
        prove(run, f"reconnect/{check}", rid, words, scenario="kill" if check == "resync_after_drop" else None)
    assert run.rc == 1


@pytest.mark.proves("reconnect/vanished_not_expunge_and_uid_modseq", "qresync.fetch-uid-modseq-always")
@pytest.mark.proves("reconnect/store_unchangedsince_modified", "condstore.unchangedsince")
@pytest.mark.proves("reconnect/highestmodseq_on_select", "condstore.highestmodseq")
def test_stripped_modseq_fails_the_modseq_checks(lemonade, stripping_modseq, prove):
    run = lemonade("run", "--target", str(stripping_modseq), "-k",
                   "resync_after_drop or vanished_not_expunge or unchangedsince or highestmodseq_on")
    got = {f"{r['check']}|{r['scenario']}": r for r in run.results["results"]}
    for key in ("reconnect/resync_after_drop|kill", "reconnect/vanished_not_expunge_and_uid_modseq|direct",
                "reconnect/store_unchangedsince_modified|direct", "reconnect/highestmodseq_on_select|direct"):
        r = got[key]
        assert r["verdict"] == "fail" and "MODSEQ" in r["message"], f"{key}: {r['verdict']} {r['message']}"
        assert "MODSEQ (" not in texts(r), key
    prove(run, "reconnect/vanished_not_expunge_and_uid_modseq", "qresync.fetch-uid-modseq-always",
          "FETCH data without UID and MODSEQ")
    prove(run, "reconnect/store_unchangedsince_modified", "condstore.unchangedsince", "MODSEQ")
    prove(run, "reconnect/highestmodseq_on_select", "condstore.highestmodseq", "exactly one of HIGHESTMODSEQ or NOMODSEQ")


@pytest.mark.proves("reconnect/resync_after_drop", "qresync.vanished-before-fetch")
@pytest.mark.proves("reconnect/expunge_codes_and_close", "qresync.close-no-highestmodseq")
def test_vanished_after_fetch_fails_the_order_check(lemonade, tmp_path, prove):
    with rewriting_target(tmp_path, vanished_last=True, close_highestmodseq=True) as f:
        run = lemonade("run", "--target", str(f), "-k", "resync_after_drop or expunge_codes_and_close",
                       "--scenario", "kill", "--scenario", "direct")
    r = prove(run, "reconnect/resync_after_drop", "qresync.vanished-before-fetch", "VANISHED (EARLIER) after a FETCH",
              scenario="kill")
    assert r["requirement_verdicts"]["mobile.reconnect.resync-after-drop"]["verdict"] == "pass", r
    r = prove(run, "reconnect/expunge_codes_and_close", "qresync.close-no-highestmodseq",
              "CLOSE must not carry HIGHESTMODSEQ", scenario="direct")
    assert r["requirement_verdicts"]["qresync.expunge-modseq"]["verdict"] == "pass", r


@pytest.mark.proves("reconnect/enable_reports_enabled", "enable.enabled-response")
@pytest.mark.proves("reconnect/enable_reports_enabled", "qresync.enable")
@pytest.mark.proves("reconnect/quick_resync_cost_follows_changes", "mobile.reconnect.cost-follows-changes")
def test_missing_enabled_and_growing_select_fail_the_enable_and_cost_checks(lemonade, tmp_path, prove):
    with rewriting_target(tmp_path, drop_enabled=True, pad_exists=True) as f:
        run = lemonade("run", "--target", str(f), "-k", "enable_reports or quick_resync_cost")
    r = prove(run, "reconnect/enable_reports_enabled", "enable.enabled-response", "expected '* ENABLED QRESYNC'")
    prove(run, "reconnect/enable_reports_enabled", "qresync.enable", "did not enable QRESYNC")
    assert "* ENABLED" not in texts(r)
    r = prove(run, "reconnect/quick_resync_cost_follows_changes", "mobile.reconnect.cost-follows-changes",
              "over the bound: N=200")
    assert r["evidence"]["resync_cost"]["quick"][1] > r["evidence"]["resync_cost"]["bound"]


@pytest.mark.proves("reconnect/store_modseq_grows", "condstore.modseq-order")
@pytest.mark.proves("reconnect/uid_fetch_changedsince_vanished", "condstore.changedsince")
def test_modseqs_that_do_not_grow_fail_the_order_check(lemonade, tmp_path, prove):
    with rewriting_target(tmp_path, constant_modseq=True) as f:
        run = lemonade("run", "--target", str(f), "-k", "store_modseq_grows or uid_fetch_changedsince")
    r = prove(run, "reconnect/store_modseq_grows", "condstore.modseq-order", "got MODSEQ 1, expected more than")
    prove(run, "reconnect/uid_fetch_changedsince_vanished", "condstore.changedsince",
          "returned messages with MODSEQ not above it")
    assert "MODSEQ (1)" in texts(r)
