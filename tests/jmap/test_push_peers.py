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
    assert run.rc == 1
