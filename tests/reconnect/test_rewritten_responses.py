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


def test_dropped_vanished_lines_fail_the_resync_checks(lemonade, dropping_vanished):
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


def test_vanished_after_fetch_fails_the_order_check(lemonade, tmp_path):
    with rewriting_target(tmp_path, vanished_last=True) as f:
        run = lemonade("run", "--target", str(f), "-k", "resync_after_drop", "--scenario", "kill")
    r = run.result("reconnect/resync_after_drop")
    assert r["verdict"] == "fail" and "VANISHED (EARLIER) after a FETCH" in r["message"], r["message"]


def test_missing_enabled_and_growing_select_fail_the_enable_and_cost_checks(lemonade, tmp_path):
    with rewriting_target(tmp_path, drop_enabled=True, pad_exists=True) as f:
        run = lemonade("run", "--target", str(f), "-k", "enable_reports or quick_resync_cost")
    r = run.result("reconnect/enable_reports_enabled")
    assert r["verdict"] == "fail" and "ENABLED QRESYNC" in r["message"], r["message"]
    assert "* ENABLED" not in texts(r)
    r = run.result("reconnect/quick_resync_cost_follows_changes")
    assert r["verdict"] == "fail" and "over the bound: N=200" in r["message"], r["message"]
    assert r["evidence"]["resync_cost"]["quick"][1] > r["evidence"]["resync_cost"]["bound"]


def test_modseqs_that_do_not_grow_fail_the_order_check(lemonade, tmp_path):
    with rewriting_target(tmp_path, constant_modseq=True) as f:
        run = lemonade("run", "--target", str(f), "-k", "store_modseq_grows")
    r = run.result("reconnect/store_modseq_grows")
    assert r["verdict"] == "fail" and "got MODSEQ 1, expected more than" in r["message"], (r["verdict"], r["message"])
    assert "MODSEQ (1)" in texts(r)
