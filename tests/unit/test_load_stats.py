"""The load run's arithmetic with plain numbers: percentiles and their intervals, mergeable histograms, shards
joined per protocol, and the report's load figures (escaped, drawn from the numbers alone)."""

from __future__ import annotations

import random

from conformance.load.stats import Distribution, Histogram, merged_summary, percentile, percentile_interval
from conformance.load.summary import aggregate, lines
from conformance.report.figures import load as figure


def test_percentiles_are_nearest_rank_with_an_interval_around_them():
    values = [i / 1000 for i in range(1, 1001)]  # 1 ms .. 1 s
    assert percentile(values, 50) == 0.5 and percentile(values, 99) == 0.99 and percentile([], 99) == 0.0
    lo, hi = percentile_interval(values, 99)
    assert lo < 0.99 < hi and hi - lo < 0.02
    lo, hi = percentile_interval(values[:20], 50)
    assert lo <= percentile(values[:20], 50) <= hi


def test_merged_histograms_give_percentiles_within_a_bucket():
    rng = random.Random(7)
    a, b = Distribution(), Distribution()
    for _ in range(5000):
        a.add(rng.lognormvariate(-3, 1))
        b.add(rng.lognormvariate(-2, 0.5))
    exact = sorted(a.samples + b.samples)
    merged = merged_summary([a.summary(), b.summary()])
    assert merged["n"] == 10000
    for p in (50, 95, 99):
        assert abs(merged[f"p{p}_s"] / percentile(exact, p) - 1) <= 0.021
    h = Histogram.from_dict(Histogram().merge(Histogram.from_dict(a.summary()["histogram"])).as_dict())
    assert h.n == 5000 and h.max_s == round(max(a.samples), 6)


def shard(protocol: str, index: str, latencies: list[float], storm: bool = True) -> dict:
    dist = Distribution()
    dist.extend(latencies)
    lat = dist.summary()
    empty = Distribution().summary()
    group = {"sessions": 10, "latency": {"before": lat, "storm": empty, "after": empty},
             "keepalive_gap": {"max_s": 2.0}}
    out = {"plan": {"protocol": protocol, "shard": index}, "groups": {"path": group, "control": group},
           "changes": {"made": 5}, "resources": {"cpu_s": 1.0, "proxy_cpu_s": 0.5, "load_client_cpu_s": 0.4,
                                                  "max_rss_mb": 100},
           "timeline": {"columns": ["t_s", "path_idle", "path_octets", "control_idle", "control_octets"],
                        "rows": [[0, 0, 0, 0, 0], [1, 10, 100, 10, 100], [2, 0, 200, 10, 150], [3, 10, 900, 10, 200]]}}
    if storm:
        out["storm"] = {"at_s": 1.5, "all_back_s": 1.2, "connections_cut": 10, "sessions": 10, "not_back": 0,
                        "octets": 700, "octets_per_session": 70, "attempts": 10, "refusals": {}, "changes_lost": 0}
    return out


def test_shards_are_joined_per_protocol():
    results = [{"evidence": {"load": shard("imap", "1/2", [0.1] * 50)}},
               {"evidence": {"load": shard("imap", "2/2", [0.3] * 50)}},
               {"evidence": {"load": shard("eventsource", "1/1", [0.5] * 10, storm=False)}},
               {"evidence": {}}]
    agg = aggregate(results)
    assert set(agg) == {"imap", "eventsource"}
    imap = agg["imap"]
    assert imap["shards"] == 2 and imap["groups"]["path"]["sessions"] == 20
    assert imap["groups"]["path"]["latency"]["before"]["n"] == 100
    assert imap["storm"]["connections_cut"] == 20 and imap["storm"]["all_back_s"] == 1.2
    assert "storm" not in agg["eventsource"]
    text = "\n".join(lines(agg))
    assert "load, imap (2 shards)" in text and "all 20 sessions back" in text
    assert aggregate([{"evidence": {}}]) is None


def test_the_figures_draw_numbers_and_escape_the_rest():
    data = shard("imap", "1/1", [0.01, 0.02, 0.5, 1.0] * 20)
    data["plan"]["shard"] = "<script>1</script>"
    html = figure.render({"evidence": {"load": data}})
    assert html.count("<svg") == 2 and "<script>" not in html and "&lt;script&gt;" in html
    assert "all back +1.2 s" in html and "cut" in html
    assert figure.render({"evidence": {}}) is None
    run = figure.render_run({"results": [{"evidence": {"load": shard("imap", "1/2", [0.1] * 5)}},
                                         {"evidence": {"load": shard("imap", "2/2", [0.2] * 5)}}]})
    assert "2 shards joined" in run
    assert figure.render_run({"results": [{"evidence": {"load": data}}]}) is None


def test_results_a_remote_worker_sends_back_are_kept_once(tmp_path):
    """A load shard on another host (xdist --tx ssh=...) wrote its results file there: the controller keeps the
    copy that came back with the report; a local worker's own file is not duplicated."""
    from types import SimpleNamespace

    from conformance.load.command import RemoteResults
    from conformance.results import ResultsWriter, read_partial

    ResultsWriter(tmp_path / "results.d", "gw0").append({"check": "scale/push_at_scale", "nodeid": "local"})
    remote = RemoteResults(tmp_path)
    for worker, nodeid in (("gw0", "local"), ("gw1", "far")):
        remote.pytest_runtest_logreport(SimpleNamespace(user_properties=[
            ("lemonade_result", {}), ("lemonade_load_result", {"nodeid": nodeid, "worker": worker})]))
    assert remote.keep() == 1
    assert sorted(r["nodeid"] for r in read_partial(tmp_path / "results.d")) == ["far", "local"]
    assert {r["worker"] for r in read_partial(tmp_path / "results.d")} == {"gw0", "remote-gw1"}
