"""A verdict per requirement, shown on envelope/signed_append_fetch_byte_exact (eight requirements): a server
without UIDPLUS fails uidplus.appenduid only; the octets still decide the seven others (issue 13 section 1)."""

from __future__ import annotations

import pytest

from tests.conftest import CliRun, run_cli

CHECK = "envelope/signed_append_fetch_byte_exact"
OTHERS = {"imap.msg.append-roundtrip", "mobile.envelope.signed-byte-exact", "smime.part-headers-covered",
          "smime.canonical-text", "smime.binary-capable", "smime.signed-7bit", "imap.msg.size-matches"}


def run_without_uidplus(tmp_path, name: str, *args: str) -> CliRun:
    """`lemonade run` in a process that first registers the test-only strip-uidplus intermediary (run_cli keeps the
    run in that one process: the workers would not know the addon)."""
    return run_cli(tmp_path / name, "run", "--scenario", "strip-uidplus", "-k", "signed_append_fetch_byte_exact", *args,
                   prelude="import tests.envelope.strip_uidplus_addon")


@pytest.mark.proves("envelope/signed_append_fetch_byte_exact", "uidplus.appenduid")
def test_a_server_without_uidplus_fails_only_uidplus_appenduid(tmp_path, prove):
    run = run_without_uidplus(tmp_path, "all-profiles")  # lemonade's capability table requires UIDPLUS
    r = run.result(CHECK)
    rv = r["requirement_verdicts"]
    assert set(rv) == OTHERS | {"uidplus.appenduid"}, rv
    prove(r, CHECK, "uidplus.appenduid", "UIDPLUS is required by the selected profile")
    assert {rid: v["verdict"] for rid, v in rv.items() if rid in OTHERS} == dict.fromkeys(OTHERS, "pass"), rv
    assert r["verdict"] == "fail" and r["message"].startswith("UIDPLUS is required") and run.rc == 1, run.out
    actions = [e["text"] for e in r["evidence"]["transcript"] if e["direction"] == "I"]
    assert any("removed" in a and "UIDPLUS" in a for a in actions), actions
    # coverage reads the requirement verdicts: six verified, one failed
    cov = run.results["coverage"]["envelope-security"]
    assert "uidplus.appenduid" in cov["failed"] and {"smime.canonical-text", "smime.binary-capable"} <= set(cov["verified"])
    # so does the per-profile verdict: mobile-intermediary holds only mobile.envelope.signed-byte-exact of this check
    profiles = run.results["summary"]["profiles"]
    assert profiles["mobile-intermediary"]["verdict"] == "pass" and profiles["lemonade"]["verdict"] == "fail"
    # the report's matrix and result card, and JUnit, carry the requirement verdicts
    html = (run.dir / "index.html").read_text()
    assert "verdict per requirement" in html
    junit = (run.dir / "junit.xml").read_text()
    assert 'name="verdict:uidplus.appenduid" value="fail"' in junit
    assert 'name="verdict:smime.canonical-text" value="pass"' in junit


def test_without_a_profile_requiring_uidplus_it_is_not_applicable(tmp_path):
    run = run_without_uidplus(tmp_path, "envelope-only", "--profile", "envelope-security")
    r = run.result(CHECK)
    rv = r["requirement_verdicts"]
    assert rv["uidplus.appenduid"] == {"verdict": "not-applicable", "message": "target does not advertise UIDPLUS"}
    assert all(rv[rid]["verdict"] == "pass" for rid in OTHERS), rv
    assert r["verdict"] == "pass" and run.rc == 0, (r, run.out, run.err[-2000:])
