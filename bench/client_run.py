"""Measure a client run: wall time of `lemonade run --client ...` at quick depth, with the machine's load.

    .venv/bin/python bench/client_run.py [-n 8] [--target dovecot --target cyrus-push] [--client NAME ...]

Prints wall time, the sum of case durations, the longest case, verdict counts, and the load average before
and after (the machine may be shared: the figures mean little without it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", default="8", help="workers (the cases mostly wait: more than the cores helps)")
    ap.add_argument("--target", action="append", default=[])
    ap.add_argument("--client", action="append", default=[])
    ap.add_argument("--output")
    args = ap.parse_args()
    clients = args.client or ["curl", "fetchmail", "getmail6", "imapfilter", "interimap", "mbsync", "offlineimap3", "jmapc"]
    targets = args.target or ["dovecot", "cyrus-push"]
    out = args.output or tempfile.mkdtemp(prefix="lemonade-client-bench-")
    cmd = [sys.executable, "-m", "conformance.cli", "run", "-n", args.n, "--output", out]
    for c in clients:
        cmd += ["--client", c]
    for t in targets:
        cmd += ["--target", t]
    load0 = os.getloadavg()
    t0 = time.monotonic()
    rc = subprocess.run(cmd, cwd=ROOT).returncode
    wall = time.monotonic() - t0
    load1 = os.getloadavg()
    doc = json.loads((Path(out) / "results.json").read_text())
    durations = [r["duration_s"] for r in doc["results"]]
    longest = max(doc["results"], key=lambda r: r["duration_s"])
    print(f"\nclients={','.join(clients)} targets={','.join(targets)} -n {args.n} exit {rc}")
    print(f"wall {wall:.1f} s; sum of case durations {sum(durations):.1f} s over {len(durations)} cases; "
          f"longest {longest['duration_s']:.1f} s ({longest['check']} {longest['subject']}@{longest['target']} "
          f"{longest['scenario']})")
    print("verdicts:", dict(Counter(r["verdict"] for r in doc["results"])))
    print(f"load average before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}; after {load1[0]:.2f} {load1[1]:.2f} "
          f"{load1[2]:.2f} ({os.cpu_count()} cores); results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
