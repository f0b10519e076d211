"""idle.reissue-29 (full depth: 35 min watched, 29 min bound) judged on a compressed time scale: the bounds are
requirement parameters, set with --param, so a client that IDLEs once and never writes again (fake-deaf) fails
within seconds, with the silence it kept as evidence."""

from __future__ import annotations

from pathlib import Path

import pytest

FAKE = Path(__file__).resolve().parents[1] / "fakes" / "clients" / "fake-deaf"
pytestmark = pytest.mark.slow


@pytest.mark.proves("client/idle_reissued_within_29_minutes", "idle.reissue-29")
def test_client_that_never_reissues_idle_fails(lemonade, prove):
    run = lemonade("run", "--client", str(FAKE), "--depth", "full", "-k", "idle_reissued",
                   "--param", "idle.reissue-29:max_gap=3", "--param", "idle.reissue-29:observe=6", timeout=120)
    (r,) = run.results["results"]
    assert r["check"] == "client/idle_reissued_within_29_minutes" and r["subject"] == "fake-deaf"
    # a SHOULD: its failure is non-strict
    assert r["verdict"] == r["requirement_verdicts"]["idle.reissue-29"]["verdict"] == "non-strict", r["message"]
    prove(run, "client/idle_reissued_within_29_minutes", "idle.reissue-29",
          "the client wrote nothing on its idling connection")
    assert "wrote nothing on its idling connection" in r["message"] and "more than max_gap 3.0 s" in r["message"]
    m = r["evidence"]["measurements"]
    assert m["longest_client_silence"]["value"] >= 5 and m["longest_client_silence"]["threshold"] == 3
    assert m["param.observe"]["value"] == 6
