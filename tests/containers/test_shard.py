"""--shard i/n: deterministic, every selected case in exactly one shard; shards' results = unsharded run's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conformance import checks

ROOT = Path(__file__).resolve().parents[2]


def collected(tmp_path: Path, *extra: str) -> list[str]:
    out = tmp_path / f"collect{len(list(tmp_path.iterdir()))}"
    cmd = [sys.executable, "-m", "pytest", str(checks.CHECKS_DIR), "-p", "conformance.plugin", "-p", "no:cacheprovider",
           "--rootdir", str(checks.CHECKS_DIR), "-c", "/dev/null", "--collect-only", "-q",
           "--lemonade-output", str(out), "--lemonade-target", "dovecot", "--lemonade-target", "dovecot-2.4", *extra]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode in (0, 5), p.stdout + p.stderr
    return [line for line in p.stdout.splitlines() if "::" in line]


def test_shards_partition_every_selected_case_exactly_once(tmp_path):
    everything = collected(tmp_path)
    assert len(everything) > 10 and len(set(everything)) == len(everything)
    for n in (2, 3):
        shards = [collected(tmp_path, "--lemonade-shard", f"{i}/{n}") for i in range(1, n + 1)]
        joined = [case for s in shards for case in s]
        assert sorted(joined) == sorted(everything), f"{n} shards do not partition the cases"
        assert all(shards), f"an empty shard among {n}: {[len(s) for s in shards]}"
    assert collected(tmp_path, "--lemonade-shard", "1/2") == collected(tmp_path, "--lemonade-shard", "1/2")


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


def test_bad_shard_is_a_usage_error(lemonade):
    run = lemonade("run", "--shard", "3/2")
    assert run.rc == 2, run.out + run.err
