"""The JMAP push checks against scripted peers (tests/fakes/jmap.py): each check passes against the conformant peer and
fails against the peer that breaks its rule, for that rule's reason; a lawful ping clamp is no failure."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest

from tests.conftest import run_cli
from tests.fakes.jmap import FakeJmapServer
from tests.proving import find_result

PUSH_CHECKS = ("state_event_on_change or types_filter or ping_interval or ping_zero or closeafter or "
               "last_event_id or ws_ or buffering_proxy")
RUNS = {  # behaviour -> -k
    "conformant": PUSH_CHECKS,
    "ignore-ping": "ping_interval or ws_ping_pong",
    "never-close": "closeafter",
    "extra-types": "types_filter or ws_push_enable_datatypes",
    "silent-push": "ws_push_enable or ws_push_state",
    "quiet-stream": "state_event_on_change or types_filter or closeafter or buffering_proxy or last_event_id",
    "late-ping": "ping_interval",
    "clamp-ping-30": "ping_interval",
    "wrong-ctype": "state_event_on_change",
    "bad-utf8": "state_event_on_change",
    "unterminated": "closeafter",
}
# more peers (name -> faults) as targets of a behaviour's run: no start-up of their own
EXTRA = {"unterminated": {"tls-unclean": ("tls-unclean-close",), "tls-clean": ("close-delimited",)}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One `lemonade run` per peer behaviour, concurrently."""
    tmp = tmp_path_factory.mktemp("jmap-push")
    with ExitStack() as stack:
        jobs = {}
        for behaviour, k in RUNS.items():
            fake = stack.enter_context(FakeJmapServer(behaviour))
            jobs[behaviour] = ["run", "--target", str(fake.target_file(tmp)), "--profile", "jmap", "--profile",
                               "mobile-intermediary", "--scenario", "direct", "-k", k]
            for name, faults in EXTRA.get(behaviour, {}).items():
                extra = stack.enter_context(FakeJmapServer(faults=faults))
                jobs[behaviour] += ["--target", str(extra.target_file(tmp, name))]
            if behaviour == "conformant":  # the long one; the others run one check or two
                jobs[behaviour] += ["-n", "2"]
        with ThreadPoolExecutor(3) as pool:
            done = {b: pool.submit(run_cli, tmp / b, *a) for b, a in jobs.items()}
            yield {b: f.result() for b, f in done.items()}


def test_conformant_peer_passes_every_push_check(runs):
    run = runs["conformant"]
    expected = {"jmap/state_event_on_change", "jmap/types_filter", "jmap/ping_interval", "jmap/ping_zero_means_none",
                "jmap/closeafter_state_ends_response", "jmap/last_event_id_resume", "jmap/ws_discovery_and_handshake",
                "jmap/ws_request_ids_and_errors", "jmap/ws_fragmented_request", "jmap/ws_push_enable_datatypes",
                "jmap/ws_push_enable_null_means_all", "jmap/ws_push_state_catchup", "jmap/ws_push_disable",
                "jmap/ws_ping_pong_keepalive", "jmap/push_through_buffering_proxy"}
    got = {k.split("|")[0]: verdict for k, verdict in run.verdicts().items()}
    assert expected <= set(got), f"missing results: {expected - set(got)}\n{run.out}\n{run.err}"
    bad = {k: got[k] for k in expected if got[k] != "pass"}
    assert not bad, f"{bad}\n{run.out}"
    timeline = run.result("jmap/state_event_on_change")["evidence"]["timeline"]
    assert timeline["version"] == 1 and any(e["kind"] == "notification" for e in timeline["events"])
    assert run.result("jmap/ping_interval")["evidence"]["measurements"]["ping_error_max"]["value"] < 0.5
    # the client's rule of resuming (sse.reconnect-resume) is not judged against a server any more
    assert run.result("jmap/last_event_id_resume")["requirements"] == ["jmap.eventsource.resume"]


@pytest.mark.proves("jmap/ws_ping_pong_keepalive", "ws.ping-pong")
@pytest.mark.proves("jmap/closeafter_state_ends_response", "jmap.eventsource.closeafter-state")
@pytest.mark.proves("jmap/types_filter", "jmap.eventsource.types")
@pytest.mark.proves("jmap/ws_push_enable_datatypes", "jmapws.push-enable")
@pytest.mark.proves("jmap/ws_push_enable_null_means_all", "jmapws.push-enable")
@pytest.mark.proves("jmap/ws_push_state_catchup", "jmapws.push-enable")
@pytest.mark.proves("jmap/ping_interval", "jmap.eventsource.ping")
def test_each_misbehaving_peer_fails_its_check(runs, prove):
    prove(runs["ignore-ping"], "jmap/ws_ping_pong_keepalive", "ws.ping-pong", "no Pong within 3 s of Ping 1")
    prove(runs["never-close"], "jmap/closeafter_state_ends_response", "jmap.eventsource.closeafter-state",
          "the response did not end within")
    prove(runs["extra-types"], "jmap/types_filter", "jmap.eventsource.types",
          "types=Mailbox but the server pushed state for other types")
    prove(runs["extra-types"], "jmap/ws_push_enable_datatypes", "jmapws.push-enable", "but the StateChange names")
    for check in ("jmap/ws_push_enable_datatypes", "jmap/ws_push_enable_null_means_all", "jmap/ws_push_state_catchup"):
        prove(runs["silent-push"], check, "jmapws.push-enable", "within")
    # pings that say interval N but come 2N apart fail on the gaps (not on missing pings)
    prove(runs["late-ping"], "jmap/ping_interval", "jmap.eventsource.ping", "exceed interval 2 s")


@pytest.mark.proves("jmap/state_event_on_change", "jmap.eventsource.state-event")
@pytest.mark.proves("jmap/push_through_buffering_proxy", "mobile.push.buffering-proxy")
@pytest.mark.proves("jmap/types_filter", "jmap.eventsource.types")
@pytest.mark.proves("jmap/last_event_id_resume", "jmap.eventsource.resume")
def test_a_stream_that_pushes_nothing_fails_every_push_check(runs, prove):
    """200 text/event-stream with pings and never a state event: types_filter used to pass it (silence looked like a
    filter at work); with a Mailbox change as sentinel it fails too."""
    run = runs["quiet-stream"]
    r = prove(run, "jmap/state_event_on_change", "jmap.eventsource.state-event", "no state event naming a new Email state")
    assert r["requirement_verdicts"]["sse.content-type"]["verdict"] == "pass"
    prove(run, "jmap/types_filter", "jmap.eventsource.types", ["no StateChange naming Mailbox", "pushed nothing"])
    prove(run, "jmap/push_through_buffering_proxy", "mobile.push.buffering-proxy", "no state event reached the client")
    prove(run, "jmap/last_event_id_resume", "jmap.eventsource.resume", "no state event within")
    r = run.result("jmap/closeafter_state_ends_response")
    assert r["requirement_verdicts"]["jmap.eventsource.closeafter-state"]["verdict"] == "fail"
    assert r["requirement_verdicts"]["http.tls-closure"]["verdict"] == "skipped", r["requirement_verdicts"]


def test_a_lawful_ping_clamp_is_no_failure_at_quick_depth(runs):
    """ping=2 raised to 30 (RFC 8620 7.3 allows a minimum up to 30): its first ping comes after the quick observation
    window, so ping_interval cannot judge it there (skipped, with the command to judge it), instead of failing."""
    for behaviour in ("clamp-ping-30", "ignore-ping"):
        r = runs[behaviour].result("jmap/ping_interval")
        assert r["verdict"] == "skipped" and "may raise ping to a minimum of up to 30 s" in r["message"], (behaviour, r)


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


@pytest.mark.proves("jmap/ping_clamp", "jmap.eventsource.ping-clamp")
def test_ping_clamp_fails_against_a_peer_clamping_30_to_60(lemonade, tmp_path, prove):
    run, r = _clamp_run(lemonade, tmp_path, "clamp-ping", "full")
    prove(run, "jmap/ping_clamp", "jmap.eventsource.ping-clamp",
          ["ping=30 answered with interval 60", "ping=5 clamped to 60"])
    assert r["evidence"]["transcript"] and run.rc == 1


def test_ping_clamp_is_skipped_in_quick_depth(lemonade, tmp_path):
    run, r = _clamp_run(lemonade, tmp_path, "conformant", "quick")
    assert r["verdict"] not in ("pass", "fail") and "--depth full" in r["message"], r


@pytest.mark.proves("jmap/state_event_on_change", "sse.content-type")
@pytest.mark.proves("jmap/state_event_on_change", "sse.utf8-lines")
@pytest.mark.proves("jmap/closeafter_state_ends_response", "sse.utf8-lines")
def test_event_stream_framing_faults_fail_the_sse_rules(runs, prove):
    r = prove(runs["wrong-ctype"], "jmap/state_event_on_change", "sse.content-type",
              "expected 200 with Content-Type text/event-stream")
    assert r["requirement_verdicts"]["sse.utf8-lines"]["verdict"] == "skipped", r["requirement_verdicts"]
    r = prove(runs["bad-utf8"], "jmap/state_event_on_change", "sse.utf8-lines", "not valid UTF-8")
    assert r["requirement_verdicts"]["jmap.eventsource.state-event"]["verdict"] == "pass", r["requirement_verdicts"]
    r = prove(runs["unterminated"], "jmap/closeafter_state_ends_response", "sse.utf8-lines", "unterminated event",
              target="fake-jmap-unterminated")
    assert r["requirement_verdicts"]["jmap.eventsource.closeafter-state"]["verdict"] == "pass", r["requirement_verdicts"]


@pytest.mark.proves("jmap/closeafter_state_ends_response", "http.tls-closure")
def test_a_close_delimited_stream_ended_without_close_notify_fails_tls_closure(runs, prove):
    """Over https, a closeafter=state body framed by the close (no length, not chunked) is complete only with a TLS
    close_notify (RFC 9112 9.8): a bare TCP close fails http.tls-closure; the same body ended by close_notify passes."""
    run = runs["unterminated"]
    r = prove(run, "jmap/closeafter_state_ends_response", "http.tls-closure", "ended without a TLS close_notify",
              target="fake-jmap-tls-unclean")
    assert r["requirement_verdicts"]["jmap.eventsource.closeafter-state"]["verdict"] == "pass", r["requirement_verdicts"]
    assert r["evidence"]["measurements"]["framing"]["value"] == "close-delimited", r["evidence"]["measurements"]
    clean = find_result(run, "jmap/closeafter_state_ends_response", target="fake-jmap-tls-clean")
    assert clean["verdict"] == "pass", clean["message"]
    assert clean["evidence"]["measurements"]["framing"]["value"] == "close-delimited", clean["evidence"]
