#!/usr/bin/env python3
"""Wall time of the quick default run (README command 1: `lemonade run`, embedded Dovecot, every profile,
quick depth) with one xdist worker and with `-n auto`, measured in one sitting, and their ratio.

    .venv/bin/python bench/quick_run.py [--repeat 2] [--workers auto] [-- extra lemonade run args]

Each run writes into a temporary directory (not reports/latest). Runs alternate serial/parallel so a
changing machine load affects both alike; the load average is printed with the figures because this
machine is shared. Prints a table and one JSON line (for the final report).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(workers: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="lemonade-bench-") as tmp:
        out = Path(tmp) / "run"
        cmd = [str(ROOT / ".venv" / "bin" / "lemonade"), "run", "--output", str(out), "-n", workers, *extra]
        t0 = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=1800,
                           env=dict(os.environ, LEMONADE_REPORTS=tmp))
        wall = time.monotonic() - t0
        results = 0
        try:
            doc = json.loads((out / "results.json").read_text())
            results = len(doc["results"])
            verdicts: dict[str, int] = {}
            for r in doc["results"]:
                verdicts[r["verdict"]] = verdicts.get(r["verdict"], 0) + 1
        except (OSError, ValueError, KeyError):
            verdicts = {}
        if p.returncode not in (0, 1):
            print(p.stdout[-2000:], p.stderr[-2000:], file=sys.stderr)
            raise SystemExit(f"bench: `{' '.join(cmd)}` exited {p.returncode}")
        return {"workers": workers, "wall_s": round(wall, 2), "results": results, "verdicts": verdicts,
                "load1": round(os.getloadavg()[0], 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1, help="pairs of runs (default 1)")
    ap.add_argument("--workers", default="auto", help="parallel worker count (default auto)")
    ap.add_argument("extra", nargs="*", help="extra `lemonade run` arguments (after --)")
    args = ap.parse_args()
    serial, parallel = [], []
    print(f"bench: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start", flush=True)
    for i in range(args.repeat):
        for workers, bucket in (("1", serial), (args.workers, parallel)):
            r = one_run(workers, args.extra)
            bucket.append(r)
            print(f"  run {i + 1}: -n {workers:>4}: {r['wall_s']:6.1f} s, {r['results']} results, "
                  f"load {r['load1']}", flush=True)
    s = statistics.median(r["wall_s"] for r in serial)
    p = statistics.median(r["wall_s"] for r in parallel)
    if serial[0]["results"] != parallel[0]["results"]:
        print(f"bench: WARNING serial and parallel runs produced {serial[0]['results']} and "
              f"{parallel[0]['results']} results", file=sys.stderr)
    summary = {"serial_s": s, "parallel_s": p, "ratio_serial_over_parallel": round(s / p, 2),
               "workers": args.workers, "results": serial[0]["results"], "repeat": args.repeat,
               "cpus": os.cpu_count(), "load1_end": round(os.getloadavg()[0], 2)}
    print(f"quick run: serial (-n 1) {s:.1f} s, parallel (-n {args.workers}) {p:.1f} s, "
          f"speed-up x{s / p:.2f}, {summary['results']} results")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
