"""The push checks fail against a client that never notices a dropped connection (no read timeout, no
re-IDLE, no reconnect): after an RST it delivers nothing more, after a black hole it stays deaf."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conformance.catalog import PROFILES_DIR

FAKE = Path(__file__).resolve().parents[1] / "fakes" / "clients" / "fake-deaf"
pytestmark = pytest.mark.slow


@pytest.mark.proves("client/push_delivery", "client.push.delivery")
@pytest.mark.proves("client/silent_drop_recovery", "client.push.silent-drop-recovery")
def test_deaf_client_fails_push_checks(lemonade, prove):
    run = lemonade("run", "--client", str(FAKE), "-n", "2", "-k", "push_delivery or silent_drop",
                   "--scenario", "direct", "--scenario", "nat-idle:mode=rst", "--scenario", "nat-idle:mode=silent",
                   timeout=240)
    got = {(r["check"], r["scenario"].split(",mode=")[-1]): r for r in run.results["results"]}
    assert got[("client/push_delivery", "direct")]["verdict"] == "pass"  # it does push while nothing breaks
    rst = got[("client/push_delivery", "rst")]
    prove(rst, "client/push_delivery", "client.push.delivery", "was not delivered")
    silent = got[("client/silent_drop_recovery", "silent")]
    prove(silent, "client/silent_drop_recovery", "client.push.silent-drop-recovery", "still deaf")
    m = silent["evidence"]["measurements"]
    assert m["recovered_after"]["value"] is None and m["deaf_for_at_least"]["value"] >= 60
    tl = silent["evidence"]["timeline"]
    assert any(s["kind"] == "blackhole" for s in tl["spans"]) and any(e["kind"] == "change" for e in tl["events"])


@pytest.mark.proves("client/idle_reissued_within_29_minutes", "idle.reissue-29")
def test_client_that_never_reissues_idle_is_non_strict(lemonade, tmp_path, prove):
    """The deaf client IDLEs once and writes nothing more: the 29-minute rule (a SHOULD) is non-strict. The check runs
    at full depth only; a copy of the catalog shortens max_gap to 3 s and observe to 8 s so the proof takes seconds."""
    profiles = tmp_path / "profiles"
    shutil.copytree(PROFILES_DIR, profiles)
    client_yaml = profiles / "requirements" / "client.yaml"
    text = client_yaml.read_text()
    for old, new in (("quick: 1740, full: 1740", "quick: 1740, full: 3"),
                     ("quick: 2100, full: 2100", "quick: 2100, full: 8")):
        assert old in text
        text = text.replace(old, new)
    client_yaml.write_text(text)
    run = lemonade("run", "--client", str(FAKE), "--depth", "full", "--scenario", "direct",
                   "-k", "idle_reissued_within_29_minutes", timeout=180,
                   prelude=f"import pathlib, conformance.catalog as c; c.PROFILES_DIR = pathlib.Path({str(profiles)!r})")
    r = prove(run, "client/idle_reissued_within_29_minutes", "idle.reissue-29",
              "the client wrote nothing on its idling connection")
    assert r["evidence"]["measurements"]["longest_client_silence"]["value"] > 3
