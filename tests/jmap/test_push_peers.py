"""The JMAP push checks against scripted peers: each check passes against the conformant peer and fails
against the peer that breaks its rule (ignores ping, never ends closeafter=state, pushes unrequested types)."""

from __future__ import annotations

import pytest

from tests.fakes.jmap import FakeJmapServer

PUSH_CHECKS = ("state_event_on_change or types_filter or ping_interval or ping_zero or closeafter or "
               "last_event_id or ws_ or buffering_proxy")


def _run(lemonade, tmp_path, behaviour: str, k: str):
    with FakeJmapServer(behaviour) as fake:
        run = lemonade("run", "--target", str(fake.target_file(tmp_path)), "--profile", "jmap",
                       "--profile", "mobile-intermediary", "--scenario", "direct", "-n", "2", "-k", k)
    return run, run.verdicts()


def test_conformant_peer_passes_every_push_check(lemonade, tmp_path):
    run, v = _run(lemonade, tmp_path, "conformant", PUSH_CHECKS)
    expected = {"jmap/state_event_on_change", "jmap/types_filter", "jmap/ping_interval", "jmap/ping_zero_means_none",
                "jmap/closeafter_state_ends_response", "jmap/last_event_id_resume", "jmap/ws_discovery_and_handshake",
                "jmap/ws_request_ids_and_errors", "jmap/ws_fragmented_request", "jmap/ws_push_enable_datatypes",
                "jmap/ws_push_enable_null_means_all", "jmap/ws_push_state_catchup", "jmap/ws_push_disable",
                "jmap/ws_ping_pong_keepalive", "jmap/push_through_buffering_proxy"}
    got = {k.split("|")[0]: verdict for k, verdict in v.items()}
    assert expected <= set(got), f"missing results: {expected - set(got)}\n{run.out}\n{run.err}"
    bad = {k: got[k] for k in expected if got[k] != "pass"}
    assert not bad, f"{bad}\n{run.out}"
    timeline = run.result("jmap/state_event_on_change")["evidence"]["timeline"]
    assert timeline["version"] == 1 and any(e["kind"] == "notification" for e in timeline["events"])
    assert run.result("jmap/ping_interval")["evidence"]["measurements"]["ping_error_max"]["value"] < 0.5


@pytest.mark.parametrize("behaviour,k,failing", [
    ("ignore-ping", "ping_interval or ws_ping_pong", {"jmap/ping_interval", "jmap/ws_ping_pong_keepalive"}),
    ("never-close", "closeafter", {"jmap/closeafter_state_ends_response"}),
    ("extra-types", "types_filter or ws_push_enable_datatypes", {"jmap/types_filter", "jmap/ws_push_enable_datatypes"}),
    ("silent-push", "ws_push_enable or ws_push_state", {"jmap/ws_push_enable_datatypes",
                                                        "jmap/ws_push_enable_null_means_all",
                                                        "jmap/ws_push_state_catchup"}),
])
def test_misbehaving_peer_fails_the_matching_check(lemonade, tmp_path, behaviour, k, failing):
    run, v = _run(lemonade, tmp_path, behaviour, k)
    got = {key.split("|")[0]: verdict for key, verdict in v.items()}
    assert failing <= set(got), f"missing results: {failing - set(got)}\n{run.out}\n{run.err}"
    wrong = {c: got[c] for c in failing if got[c] not in ("fail", "non-strict")}
    assert not wrong, f"expected failures, got {wrong}\n{run.out}"
    for c in failing:
        r = run.result(c)
        assert r["message"] and r["evidence"]["transcript"], r
    # a SHOULD-level failure is non-strict and leaves the exit status 0 (jmapws.push-enable is SHOULD in the catalog)
    assert run.rc == (1 if any(got[c] == "fail" for c in failing) else 0)


def test_late_pings_fail_on_their_gaps(lemonade, tmp_path):
    """Pings that say interval N but come 2N apart fail ping_interval on the gaps (not on missing pings)."""
    run, _ = _run(lemonade, tmp_path, "late-ping", "ping_interval")
    r = run.result("jmap/ping_interval")
    assert r["verdict"] == "fail" and "exceed interval 2 s" in r["message"], r["message"]


def _clamp_run(lemonade, tmp_path, behaviour: str, depth: str):
    # eager_ping: the peer sends its first ping at once, so the interval is read without waiting 30 s
    with FakeJmapServer(behaviour, eager_ping=True) as fake:
        run = lemonade("run", "--target", str(fake.target_file(tmp_path)), "--profile", "jmap", "--scenario", "direct",
                       "--depth", depth, "-k", "ping_clamp")
    return run, run.result("jmap/ping_clamp")


def test_ping_clamp_passes_against_a_peer_honouring_ping_30(lemonade, tmp_path):
    run, r = _clamp_run(lemonade, tmp_path, "conformant", "full")
    assert r["verdict"] == "pass", f"{r['message']}\n{run.out}"
    m = r["evidence"]["measurements"]
    assert m["interval_for_ping_5"]["value"] == 5 and m["interval_for_ping_3600"]["value"] == 3600, m


def test_ping_clamp_fails_against_a_peer_clamping_30_to_60(lemonade, tmp_path):
    run, r = _clamp_run(lemonade, tmp_path, "clamp-ping", "full")
    assert r["verdict"] == "fail", f"{r['message']}\n{run.out}"
    assert "ping=30 answered with interval 60" in r["message"] and "ping=5 clamped to 60" in r["message"], r["message"]
    assert r["evidence"]["transcript"] and run.rc == 1


def test_ping_clamp_is_skipped_in_quick_depth(lemonade, tmp_path):
    run, r = _clamp_run(lemonade, tmp_path, "conformant", "quick")
    assert r["verdict"] not in ("pass", "fail") and "--depth full" in r["message"], r
