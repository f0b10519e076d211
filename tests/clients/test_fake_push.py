"""The push checks fail against a client that never notices a dropped connection (no read timeout, no
re-IDLE, no reconnect): after an RST it delivers nothing more, after a black hole it stays deaf."""

from __future__ import annotations

from pathlib import Path

import pytest

FAKE = Path(__file__).resolve().parents[1] / "fakes" / "clients" / "fake-deaf"
pytestmark = pytest.mark.slow


def test_deaf_client_fails_push_checks(lemonade):
    run = lemonade("run", "--client", str(FAKE), "-n", "2", "-k", "push_delivery or silent_drop",
                   "--scenario", "direct", "--scenario", "nat-idle:mode=rst", "--scenario", "nat-idle:mode=silent",
                   timeout=240)
    got = {(r["check"], r["scenario"].split(",mode=")[-1]): r for r in run.results["results"]}
    assert got[("client/push_delivery", "direct")]["verdict"] == "pass"  # it does push while nothing breaks
    rst = got[("client/push_delivery", "rst")]
    assert rst["verdict"] == "fail" and "was not delivered" in rst["message"], rst["message"]
    silent = got[("client/silent_drop_recovery", "silent")]
    assert silent["verdict"] == "fail" and "still deaf" in silent["message"], silent["message"]
    m = silent["evidence"]["measurements"]
    assert m["recovered_after"]["value"] is None and m["deaf_for_at_least"]["value"] >= 60
    tl = silent["evidence"]["timeline"]
    assert any(s["kind"] == "blackhole" for s in tl["spans"]) and any(e["kind"] == "change" for e in tl["events"])
