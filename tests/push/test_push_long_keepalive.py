"""The same push checks FAIL, with timeline evidence, against a Dovecot whose keepalive outlasts the NAT."""

from __future__ import annotations

import pytest

from conformance.providers.dovecot import DovecotProvider
from conformance.targets import write_target_file
from tests.push.support import by_case


@pytest.mark.proves("push/push_survives_idle_timeout", "mobile.push.survives-idle-timeout")
@pytest.mark.proves("push/push_survives_idle_timeout", "idle.keepalive")
@pytest.mark.proves("push/push_survives_idle_timeout", "nat.idle-timeouts")
@pytest.mark.proves("push/silent_drop_noticed", "mobile.push.silent-drop-noticed")
def test_long_keepalive_fails_with_timeline_evidence(lemonade, tmp_path, prove):
    """The same checks against a Dovecot whose keepalive is longer than the intermediary's timeout (3 s).

    Dovecot aligns the first keepalive of an IDLE to a slot derived from the clock and the client address, so it
    comes after a random 0..interval seconds; a 60 min interval keeps it out of the few observed seconds
    (a 20 s interval would let it land inside them now and then, and a quick observation would see a short gap).
    """
    prov = DovecotProvider("quick", settings={"imap_idle_notify_interval": "60 mins"})
    target = prov.start()
    try:
        f = write_target_file(target, tmp_path / "slow-keepalive.toml")
        run = lemonade("run", "--target", str(f), "-n", "2", "-k", "push_survives_idle_timeout or silent_drop_noticed",
                       "--scenario", "direct", "--scenario", "nat-idle:timeout=3,mode=rst",
                       "--scenario", "nat-idle:timeout=3,mode=silent")
    finally:
        prov.stop()
    results = by_case(run)
    assert run.rc == 1, run.out + run.err
    check = "push/push_survives_idle_timeout"
    for rid in ("mobile.push.survives-idle-timeout", "idle.keepalive", "nat.idle-timeouts"):
        prove(run, check, rid, "not below the idle timeout 3 s", scenario="direct")
        prove(run, check, rid, "did not survive an idle timeout of 3 s", scenario="nat-idle:timeout=3,mode=rst")
    rst = results["push/push_survives_idle_timeout|nat-idle:timeout=3,mode=rst"]
    tl = rst["evidence"]["timeline"]
    assert tl["verdict"] == "fail" and any(e["kind"] == "intermediary" for e in tl["events"])
    assert any(s["kind"] == "gap" and s["end"] - s["start"] >= 2.9 for s in tl["spans"])
    silent = results["push/push_survives_idle_timeout|nat-idle:timeout=3,mode=silent"]
    assert silent["verdict"] == "fail" and "silent black hole nobody noticed" in silent["message"], silent["message"]
    assert any(s["kind"] == "blackhole" for s in silent["evidence"]["timeline"]["spans"])
    prove(run, "push/silent_drop_noticed", "mobile.push.silent-drop-noticed", "fewer than two keepalives",
          scenario="nat-idle:timeout=3,mode=silent")
