"""`lemonade load` end to end: real sessions against the embedded Dovecot through a real nat-idle path, a control
group, a reconnect storm; proof that each requirement can fail (a server that refuses sessions, a resync that
forgets changes); load checks never run in `lemonade run`. Sizes are small (tens of sessions, seconds); no
test asserts a timing figure, only that the figures are there and consistent."""

from __future__ import annotations

import os

import pytest

from conformance.targets import write_target_file
from tests.reconnect.rewriter import rewriting_target

CHECK = "scale/push_at_scale"
REQS = ("scale.push.every-session-notified", "scale.push.sessions-kept", "scale.reconnect.storm-recovers",
        "scale.reconnect.storm-no-loss")


def load_results(run) -> list[dict]:
    results = [r for r in run.results["results"] if r["check"] == CHECK]
    assert results, f"no load result\n{run.out}\n{run.err}"
    return results


def test_a_small_load_run_measures_every_session_and_the_storm(lemonade):
    run = lemonade("load", "--sessions", "20", "--control", "6", "--duration", "4", "--rate", "2")
    assert run.rc == 0, run.out + run.err
    (r,) = load_results(run)
    assert r["verdict"] == "pass", r["message"]
    assert {k: v["verdict"] for k, v in r["requirement_verdicts"].items()} == dict.fromkeys(REQS, "pass")
    load = r["evidence"]["load"]
    path, control = load["groups"]["path"], load["groups"]["control"]
    assert (path["sessions"], control["sessions"]) == (20, 6)
    made = load["changes"]["made"]
    assert made >= 3 * 2, load["changes"]  # three accounts, two changes a second, at least a second of changes
    per_session = made / load["changes"]["mailboxes"]
    # every change was seen by every session: timed as a notification, or reported by the storm's resync
    timed = sum(path["latency"][p]["n"] for p in ("before", "storm", "after"))
    assert timed + load["storm"]["messages_reported"] >= 20 * per_session - 20, (timed, load["storm"])
    for group in (path, control):
        lat = group["latency"]["before"]
        assert lat["n"] > 0 and 0 < lat["p50_s"] <= lat["p95_s"] <= lat["p99_s"] <= lat["max_s"] < 10, lat
        assert lat["ci95"]["p99_s"][0] <= lat["p99_s"] <= lat["ci95"]["p99_s"][1]
        assert 0 < group["keepalive_gap"]["max_s"] < 45
    storm = load["storm"]
    assert storm["connections_cut"] == 20 and storm["resynchronised"] == 20 and storm["not_back"] == 0
    assert storm["changes_lost"] == 0 and storm["octets"] > 0 and storm["methods"] == ["qresync"]
    assert set(load["added_latency"]) >= {"p50_s", "p95_s", "p99_s", "ci95"}
    m = r["evidence"]["measurements"]
    for name in ("latency.path.p99", "latency.control.p99", "latency.added.p99", "storm.all_back", "storm.octets",
                 "suite.cpu_s", "suite.max_rss_mb", "keepalive_gap.path.max", "sessions.lost"):
        assert name in m, (name, sorted(m))
    assert m["sessions.lost"]["value"] == 0 and m["suite.max_rss_mb"]["value"] > 0
    assert r["rerun"].startswith("lemonade load ")
    agg = run.results["run"]["load"]["aggregate"]["imap"]
    assert agg["shards"] == 1 and agg["groups"]["path"]["latency"]["before"]["n"] == path["latency"]["before"]["n"]
    html = (run.dir / "index.html").read_text()
    assert "imap notification latency" in html and "sessions idling; the storm" in html
    assert "added by the path" in run.out


def test_two_workers_each_run_a_shard_against_one_server(lemonade):
    run = lemonade("load", "--sessions", "12", "--control", "4", "--duration", "3", "--workers", "2", "--no-storm")
    assert run.rc == 0, run.out + run.err
    results = load_results(run)
    assert sorted(r["nodeid"].rsplit("-", 2)[-2] for r in results) == ["1/2", "2/2"]
    assert len({r["worker"] for r in results}) == 2, [r["worker"] for r in results]
    assert {r["requirement_verdicts"]["scale.reconnect.storm-recovers"]["verdict"] for r in results} == {
        "not-applicable"}
    agg = run.results["run"]["load"]["aggregate"]["imap"]
    assert agg["shards"] == 2 and agg["groups"]["path"]["sessions"] == 12 and "storm" not in agg
    assert "2 shards joined" in (run.dir / "index.html").read_text()


@pytest.mark.proves("scale/push_at_scale", "scale.push.sessions-kept")
def test_a_server_that_refuses_sessions_fails_sessions_kept(lemonade, dovecot, tmp_path, prove):
    """The reference Dovecot with its default limits (10 connections per user and address) cannot hold 40."""
    target = write_target_file(dovecot, tmp_path / "default-limits.toml")
    run = lemonade("load", "--target", str(target), "--sessions", "40", "--control", "3", "--duration", "2",
                   "--no-storm", "--protocol", "imap")
    assert run.rc == 1, run.out + run.err
    (r,) = load_results(run)
    prove(run, CHECK, "scale.push.sessions-kept", "refusals")
    assert r["evidence"]["measurements"]["sessions.refused"]["value"] > 0


@pytest.mark.proves("scale/push_at_scale", "scale.reconnect.storm-no-loss")
def test_a_resync_that_forgets_changes_fails_no_loss(lemonade, tmp_path, prove):
    with rewriting_target(tmp_path, drop_fetch=True) as target:
        run = lemonade("load", "--target", str(target), "--sessions", "6", "--control", "3", "--duration", "4",
                       "--rate", "2", "--protocol", "imap")
    assert run.rc == 1, run.out + run.err
    (r,) = load_results(run)
    prove(run, CHECK, "scale.reconnect.storm-no-loss", "missing")
    assert r["evidence"]["load"]["storm"]["changes_lost"] > 0
    assert r["requirement_verdicts"]["scale.reconnect.storm-recovers"]["verdict"] == "pass"


def test_lemonade_run_never_runs_a_load_check(lemonade):
    run = lemonade("run", "-k", "push_at_scale")
    assert run.rc == 2 and "nothing was selected" in run.err, run.out + run.err


@pytest.mark.parametrize("args, problem", [
    (["--sessions", "0"], "--sessions"), (["--rate", "0"], "--rate"), (["--storm-at", "1.5"], "--storm-at"),
    (["--scenario", "teleport"], "unknown intermediary"), (["--target", "nowhere.toml"], "does not exist")])
def test_bad_input_is_named_before_anything_starts(lemonade, args, problem):
    run = lemonade("load", *args)
    assert run.rc == 2 and problem in run.err, run.out + run.err


@pytest.mark.skipif(os.geteuid() != 0, reason="the Cyrus targets need root (master drops to user cyrus)")
def test_eventsource_streams_against_the_push_capable_cyrus(lemonade):
    """JMAP push at (small) scale: EventSource streams through nat-idle, resynchronised with Email/changes."""
    run = lemonade("load", "--target", "cyrus-push", "--protocol", "eventsource", "--sessions", "10",
                   "--control", "4", "--duration", "4", "--rate", "2")
    assert run.rc == 0, run.out + run.err
    (r,) = load_results(run)
    assert r["verdict"] == "pass", r["message"]
    load = r["evidence"]["load"]
    assert load["plan"]["protocol"] == "eventsource"
    assert load["groups"]["path"]["latency"]["before"]["n"] > 0
    assert load["storm"]["methods"] == ["Email/changes"] and load["storm"]["changes_lost"] == 0
    assert "eventsource notification latency" in (run.dir / "index.html").read_text()
