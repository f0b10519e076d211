#!/usr/bin/env python3
"""Wall time of the quick default run against what it waits for, old and new settings in one sitting.

For each setting, each run of README command 1's `lemonade run` (embedded Dovecot, every profile, quick depth):
wall time, the sum of the cases' durations, the longest case, CPU seconds of the run and everything it waited
for, and the ratios wall/sum and wall/longest. The longest dependency chain is measured too: the longest
case of the run alone, with the same command (interpreter, plugin, server start, the case, the report).
The verdicts of every run are compared (a concurrency change that makes a verdict flip is a regression).

    .venv/bin/python bench/quick_run.py [--repeat 3] [--setting old='-n 2 --schedule collection'] \\
        [--setting new=''] [--store-durations] [-- extra lemonade run args]

A setting named ``NAME@DIR`` runs the code of another source tree with this virtualenv, e.g. main before a
change: ``git archive main | tar -x -C /tmp/main`` then ``--setting 'old@/tmp/main=-n 2' --setting new=``.

Settings alternate inside each round so a changing machine load affects them alike; the load average is
printed beside each figure because the machine is shared. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_SETTINGS = [("old", "-n 2 --schedule collection"), ("new", "")]


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def one_run(args: list[str], tree: Path | None = None) -> dict:
    """One `lemonade run`; from another source tree (``tree``: e.g. an export of main) when given, with the same
    virtualenv, so old and new code are compared in one sitting."""
    with tempfile.TemporaryDirectory(prefix="lemonade-bench-") as tmp:
        out = Path(tmp) / "run"
        cmd = [str(ROOT / ".venv" / "bin" / "python"), "-m", "conformance.cli", "run", "--output", str(out), *args]
        load0 = os.getloadavg()[0]
        cpu0, t0 = children_cpu(), time.monotonic()
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=tree or ROOT, timeout=1800,
                           env=dict(os.environ, LEMONADE_REPORTS=tmp, PYTHONPATH=str(tree or ROOT)))
        wall, cpu = time.monotonic() - t0, children_cpu() - cpu0
        doc = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else None
        if p.returncode not in (0, 1):
            kept = Path(tempfile.mkdtemp(prefix="lemonade-bench-kept-"))
            shutil.copytree(out, kept / "run")
            (kept / "stdout").write_text(p.stdout)
            (kept / "stderr").write_text(p.stderr)
            print(p.stdout[-1500:], p.stderr[-1500:], file=sys.stderr)
            not_run = [r["nodeid"] for r in (doc or {}).get("run", {}).get("not_run", [])]
            raise SystemExit(f"bench: `{shlex.join(cmd)}` exited {p.returncode}"
                             + (f"; planned cases without a result: {not_run}" if not_run else "")
                             + f"; the run directory and its output are kept in {kept}")
        rs = doc["results"]
        longest = max(rs, key=lambda r: r["duration_s"])
        workers = next((line.split()[1] for line in p.stdout.splitlines() if line.startswith("workers:")), "")
        return {"args": args, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "results": len(rs),
                "sum_s": round(sum(r["duration_s"] for r in rs), 2), "longest_s": longest["duration_s"],
                "longest": {"nodeid": longest["nodeid"], "scenario": longest["scenario"],
                            "check": longest["check"]},
                "workers": workers or "?", "load1": round((load0 + os.getloadavg()[0]) / 2, 2),
                "verdicts": {r["nodeid"]: r["verdict"] for r in rs}, "durations": rs}


def chain_args(longest: dict, extra: list[str]) -> list[str]:
    """The command that runs only the longest case: its function name and scenario."""
    name = longest["nodeid"].split("::")[-1].split("[")[0]
    return ["-k", name, "--scenario", longest["scenario"], *extra]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1, help="rounds (each runs every setting once; default 1)")
    ap.add_argument("--setting", action="append", default=[], metavar="NAME=ARGS",
                    help="a named set of `lemonade run` arguments (repeatable; default: old and new)")
    ap.add_argument("--no-chain", action="store_true", help="do not measure the longest case alone")
    ap.add_argument("--store-durations", action="store_true",
                    help="write the last setting's measured durations into conformance/plugin/durations.json")
    ap.add_argument("extra", nargs="*", help="extra `lemonade run` arguments for every setting (after --)")
    args = ap.parse_args()
    settings = [tuple(s.split("=", 1)) for s in args.setting] or list(DEFAULT_SETTINGS)
    trees = {}  # NAME@DIR=ARGS: that setting runs the code in DIR
    for i, (name, text) in enumerate(settings):
        if "@" in name:
            name, tree = name.split("@", 1)
            trees[name] = Path(tree)
            settings[i] = (name, text)
    runs: dict[str, list[dict]] = {name: [] for name, _ in settings}
    print(f"bench: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start, "
          f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}", flush=True)
    for i in range(args.repeat):
        for name, text in settings:
            r = one_run([*shlex.split(text), *args.extra], trees.get(name))
            runs[name].append(r)
            print(f"  round {i + 1} {name:>6} (-n {r['workers']}): wall {r['wall_s']:6.1f} s, cases {r['results']}, "
                  f"sum {r['sum_s']:5.1f} s, longest {r['longest_s']:4.1f} s, cpu {r['cpu_s']:5.1f} s, "
                  f"load {r['load1']}", flush=True)
    last = runs[settings[-1][0]]
    chain = []
    if not args.no_chain:
        longest = max(last, key=lambda r: r["longest_s"])["longest"]
        for _ in range(max(1, min(3, args.repeat))):
            chain.append(one_run(chain_args(longest, args.extra)))
        print(f"  chain: {longest['check']} under {longest['scenario']} alone: "
              + ", ".join(f"{c['wall_s']:.1f} s (case {c['longest_s']:.1f} s)" for c in chain), flush=True)
    chain_s = statistics.median(c["wall_s"] for c in chain) if chain else None

    # verdicts: identical over every run of every setting? (settings running other trees may differ by design:
    # their differences are listed, the verdict identity asked of a setting is within its own runs)
    all_runs = [r for rs in runs.values() for r in rs]
    first = all_runs[0]["verdicts"]
    differing = sorted({k for r in all_runs for k in set(first) | set(r["verdicts"])
                        if r["verdicts"].get(k) != first.get(k)})
    within = {name: sorted({k for r in rs for k in set(rs[0]["verdicts"]) | set(r["verdicts"])
                            if r["verdicts"].get(k) != rs[0]["verdicts"].get(k)}) for name, rs in runs.items()}
    summary = {"cpus": os.cpu_count(), "repeat": args.repeat, "chain_wall_s": chain_s,
               "chain_case": chain[0]["longest"]["nodeid"] if chain else None,
               "verdicts_identical": not differing, "differing": differing[:20], "runs": len(all_runs),
               "load1_end": round(os.getloadavg()[0], 2), "settings": {}}
    print(f"\n{'setting':>8} {'-n':>4} {'wall s':>7} {'sum s':>7} {'longest':>8} {'cpu s':>6} {'wall/sum':>9} "
          f"{'wall/longest':>13} {'wall/chain':>11} {'load':>5}")
    for name, text in settings:
        rs = runs[name]
        med = {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "sum_s", "longest_s", "cpu_s", "load1")}
        row = {**med, "args": text, "workers": rs[0]["workers"], "walls": [r["wall_s"] for r in rs],
               "wall_over_sum": round(med["wall_s"] / med["sum_s"], 2),
               "wall_over_longest": round(med["wall_s"] / med["longest_s"], 2),
               "wall_over_chain": round(med["wall_s"] / chain_s, 2) if chain_s else None}
        summary["settings"][name] = row
        print(f"{name:>8} {row['workers']:>4} {med['wall_s']:7.1f} {med['sum_s']:7.1f} {med['longest_s']:8.1f} "
              f"{med['cpu_s']:6.1f} {row['wall_over_sum']:9.2f} {row['wall_over_longest']:13.2f} "
              f"{row['wall_over_chain'] if row['wall_over_chain'] is not None else '-':>11} {med['load1']:5.1f}")
    print(f"verdicts: {'identical' if not differing else 'DIFFERENT'} over {len(all_runs)} runs"
          + (f" ({len(differing)} cases differ: {', '.join(differing[:5])})" if differing else ""))
    for name, diff in within.items():
        print(f"  within {name}: {'identical' if not diff else 'DIFFERENT: ' + ', '.join(diff[:5])} over "
              f"{len(runs[name])} runs")
    summary["within"] = within
    if args.store_durations:
        from conformance.plugin.schedule import store_durations

        n = store_durations([r for run in last for r in run["durations"]], keep_old=False)
        print(f"durations: {n} cases written to conformance/plugin/durations.json")
    print(json.dumps(summary))
    return 0 if not any(within.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
