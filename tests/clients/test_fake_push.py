"""The push checks fail against a client that never notices a dropped connection (no read timeout, no
re-IDLE, no reconnect): after an RST it delivers nothing more, after a black hole it stays deaf."""

from __future__ import annotations

from pathlib import Path

import pytest

FAKE = Path(__file__).resolve().parents[1] / "fakes" / "clients" / "fake-deaf"
pytestmark = pytest.mark.slow


@pytest.mark.proves("client/push_delivery", "client.push.delivery")
@pytest.mark.proves("client/silent_drop_recovery", "client.push.silent-drop-recovery")
def test_deaf_client_fails_push_checks(lemonade, prove):
    run = lemonade("run", "--client", str(FAKE), "-n", "2", "-k", "push_delivery or silent_drop",
                   "--scenario", "direct", "--scenario", "nat-idle:mode=rst", "--scenario", "nat-idle:mode=silent",
                   # the judging on a compressed time scale: a black hole observed 12 s (quick depth: 75 s)
                   "--param", "client.push.silent-drop-recovery:observe=12",
                   "--param", "client.push.silent-drop-recovery:recover_within=8",
                   "--param", "client.push.delivery:max_latency=5",  # the undelivered message is waited for 10 s
                   timeout=240)
    got = {(r["check"], r["scenario"].split(",mode=")[-1]): r for r in run.results["results"]}
    assert got[("client/push_delivery", "direct")]["verdict"] == "pass"  # it does push while nothing breaks
    rst = got[("client/push_delivery", "rst")]
    prove(rst, "client/push_delivery", "client.push.delivery", "was not delivered")
    silent = got[("client/silent_drop_recovery", "silent")]
    prove(silent, "client/silent_drop_recovery", "client.push.silent-drop-recovery", "still deaf")
    m = silent["evidence"]["measurements"]
    assert m["recovered_after"]["value"] is None and m["deaf_for_at_least"]["value"] >= 12
    assert m["param.observe"]["value"] == 12 and m["param.recover_within"]["value"] == 8
    assert "observed 12 s, bound 8 s" in silent["message"], silent["message"]
    tl = silent["evidence"]["timeline"]
    assert any(s["kind"] == "blackhole" for s in tl["spans"]) and any(e["kind"] == "change" for e in tl["events"])

