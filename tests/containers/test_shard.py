"""--shard i/n: deterministic, every selected case in exactly one shard; shards' results = unsharded run's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conformance import checks


class _Collector:
    def __init__(self) -> None:
        self.ids: list[str] = []

    def pytest_collection_finish(self, session) -> None:
        self.ids = [item.nodeid for item in session.items]


def collected(tmp_path: Path, *extra: str) -> list[str]:
    """The case ids `lemonade run` would run (the real plugin's selection and sharding), collected in-process."""
    out = tmp_path / f"collect{len(list(tmp_path.iterdir()))}"
    col = _Collector()
    rc = pytest.main([str(checks.CHECKS_DIR), "-p", "conformance.plugin", "-p", "no:cacheprovider", "-p", "no:terminal",
                      "--rootdir", str(checks.CHECKS_DIR), "-c", os.devnull, "--collect-only",
                      "--lemonade-output", str(out), "--lemonade-target", "dovecot", "--lemonade-target", "dovecot-2.4",
                      *extra], plugins=[col])
    assert rc in (0, 5), f"collection failed with {rc}"
    return col.ids


def test_shards_partition_every_selected_case_exactly_once(tmp_path):
    everything = collected(tmp_path)
    assert len(everything) > 10 and len(set(everything)) == len(everything)
    first: list[str] = []
    for n in (2, 3):
        shards = [collected(tmp_path, "--lemonade-shard", f"{i}/{n}") for i in range(1, n + 1)]
        joined = [case for s in shards for case in s]
        assert sorted(joined) == sorted(everything), f"{n} shards do not partition the cases"
        sizes = [len(s) for s in shards]
        assert max(sizes) - min(sizes) <= 1, f"unbalanced shards: {sizes}"
        first = first or shards[0]
    assert collected(tmp_path, "--lemonade-shard", "1/2") == first, "sharding is not deterministic"
    # sharding applies after -k, so shards stay balanced under any selection
    subset = collected(tmp_path, "-k", "capability")
    halves = [collected(tmp_path, "-k", "capability", "--lemonade-shard", f"{i}/2") for i in (1, 2)]
    assert sorted(halves[0] + halves[1]) == sorted(subset) and abs(len(halves[0]) - len(halves[1])) <= 1, halves


def test_bad_shard_is_a_usage_error(tmp_path):
    for bad in ("3/2", "0/2", "x"):
        col = _Collector()
        rc = pytest.main([str(checks.CHECKS_DIR), "-p", "conformance.plugin", "-p", "no:terminal", "-c", os.devnull,
                          "--rootdir", str(checks.CHECKS_DIR), "--collect-only", "--lemonade-output",
                          str(tmp_path / "bad"), "--lemonade-shard", bad], plugins=[col])
        assert rc == pytest.ExitCode.USAGE_ERROR, bad


def test_sharded_runs_together_equal_the_unsharded_run(lemonade):
    k = ("-k", "capabilit or ehlo or burl")
    whole = lemonade("run", *k)
    parts = [lemonade("run", "--shard", f"{i}/2", *k) for i in (1, 2)]
    key = lambda r: (r["check"], r["target"], r["scenario"], r["verdict"], tuple(r["requirements"]))  # noqa: E731
    for p in (whole, *parts):
        assert p.rc in (0, 1), p.out + p.err
    shard_sets = [sorted(key(r) for r in p.results["results"]) for p in parts]
    assert shard_sets[0] and shard_sets[1], "a shard ran nothing; choose a wider -k"
    assert not set(shard_sets[0]) & set(shard_sets[1])
    assert sorted(shard_sets[0] + shard_sets[1]) == sorted(key(r) for r in whole.results["results"])

