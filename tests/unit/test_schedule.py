"""The case schedule: expected durations, the longest-first rule with xdist's look-ahead of one, `-n auto`."""

from __future__ import annotations

import json

from conformance.plugin.schedule import (
    Lanes,
    auto_workers,
    case_key,
    expected_s,
    load_durations,
    lower_bound,
    makespan,
    store_durations,
)


def test_case_key_leaves_the_target_out():
    assert case_key("push/test_idle.py::test_x[dovecot|nat-idle:timeout=3,mode=rst]") == \
        "push/test_idle.py::test_x[nat-idle:timeout=3,mode=rst]"
    assert case_key("reconnect/test_upload.py::test_cut[my-server@2|kill-literal+]") == \
        "reconnect/test_upload.py::test_cut[kill-literal+]"
    assert case_key("plain/test_a.py::test_b") == "plain/test_a.py::test_b"


def test_the_shipped_durations_name_cases_of_the_default_run():
    d = load_durations()
    assert len(d) >= 100 and all(v >= 0 for v in d.values())
    assert expected_s("push/test_intermediary.py::test_push_survives_idle_timeout[dovecot|lifetime:max=5,mode=fin]") > 1
    assert expected_s("nowhere/test_x.py::test_unknown[dovecot|direct]") < 1


def test_a_free_worker_gets_the_longest_a_busy_one_the_shortest():
    lanes = Lanes([0.1, 5.0, 0.2, 3.0, 0.05], pending=[0, 1, 2, 3, 4])
    assert lanes.take(None) == 1  # free: the longest
    assert lanes.take(5.0) == 4  # committed behind a long case: the shortest
    assert lanes.take(0.05) == 3  # behind a short case: the longest left
    assert lanes.pending == [0, 2]


def test_the_rule_comes_close_to_the_lower_bound_on_the_default_run():
    expected = list(load_durations().values())
    for workers in (2, 4, 8, 12):
        assert makespan(expected, workers) <= 1.1 * lower_bound(expected, workers)
    # collection order with xdist's two-at-a-time hand-out can pair two long waits on one worker; this cannot
    assert abs(makespan([5, 5, 0.1, 0.1, 0.1, 0.1], 2) - 5.2) < 1e-9


def test_auto_runs_a_single_case_in_process_and_many_waits_on_more_workers_than_cores():
    assert auto_workers([5.6], ["dovecot"], cpus=2) == 0
    assert auto_workers([0.1, 0.1], ["dovecot"], cpus=2) == 0  # the waits do not add up to more than the longest
    default = list(load_durations().values())
    n = auto_workers(default, ["dovecot"], cpus=2)
    assert 2 < n <= 16
    assert auto_workers(default, ["cyrus-push"], cpus=2) <= n  # each worker starts its own, slower, server
    assert auto_workers(default, ["dovecot"], cpus=8) >= n


def test_stored_durations_keep_the_longest_seen(tmp_path):
    f = tmp_path / "durations.json"
    results = [{"nodeid": "a/test_a.py::test_x[t|direct]", "duration_s": 1.0},
               {"nodeid": "a/test_a.py::test_x[u|direct]", "duration_s": 2.5},
               {"nodeid": "a/test_a.py::test_y[t|kill]", "duration_s": 0.3}]
    assert store_durations(results, f, keep_old=False) == 2
    assert json.loads(f.read_text())["cases"] == {"a/test_a.py::test_x[direct]": 2.5, "a/test_a.py::test_y[kill]": 0.3}
    store_durations([{"nodeid": "a/test_a.py::test_x[t|direct]", "duration_s": 0.5}], f)
    assert load_durations(f)["a/test_a.py::test_x[direct]"] == 2.5
