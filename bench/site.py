#!/usr/bin/env python3
"""What adding one run to an interop-event site costs, against building the whole site again.

    .venv/bin/python bench/site.py [--runs 40] [--targets 8] [--results RUN_DIR_OR_RESULTS_JSON]

Makes N results files from one real results.json (default: a fresh `lemonade run` of the capability and push
checks against the embedded Dovecot): each copy gets its own target name (of --targets), start time and a
few verdicts flipped, so the site has histories, regressions and diffs. Then measures, in one sitting:
building the site of N runs from nothing, building it again with nothing new, adding run N+1, and building
all N+1 from nothing. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from conformance.site import build_site  # noqa: E402


def template(arg: str | None, work: Path) -> dict:
    if arg:
        p = Path(arg)
        return json.loads((p / "results.json" if p.is_dir() else p).read_text())
    out = work / "template-run"
    subprocess.run([str(ROOT / ".venv" / "bin" / "lemonade"), "run", "-n", "2", "-k", "capability or push",
                    "--output", str(out)], check=False, capture_output=True)
    return json.loads((out / "results.json").read_text())


def variant(doc: dict, i: int, targets: int, rng: random.Random) -> dict:
    d = copy.deepcopy(doc)
    name = f"server-{i % targets + 1:02d}"
    t = time.gmtime(1_800_000_000 + i * 3600)
    d["run"]["id"] = f"bench-{i:03d}"
    d["run"]["started"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", t)
    for tgt in d["run"].get("targets", []):
        tgt["name"], tgt["version"] = name, f"{name} 1.{i // targets}"
    for r in d["results"]:
        r["target"] = name
        if rng.random() < 0.03:
            r["verdict"] = "fail" if r["verdict"] == "pass" else "pass"
    return d


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--targets", type=int, default=8)
    ap.add_argument("--results", help="results.json or run directory to vary (default: a fresh small run)")
    args = ap.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="lemonade-bench-site-") as tmp:
        work = Path(tmp)
        doc = template(args.results, work)
        files = []
        for i in range(args.runs + 1):
            f = work / "inputs" / f"run-{i:03d}.json"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps(variant(doc, i, args.targets, rng)))
            files.append(str(f))
        site = work / "site"
        first, t_first = timed(lambda: build_site(files[:-1], site))
        again, t_again = timed(lambda: build_site(files[:-1], site))
        added, t_add = timed(lambda: build_site(files[-1:], site))
        full, t_full = timed(lambda: build_site(files, work / "site-full"))
        rows = [("build N runs from nothing", t_first, first), ("same N runs again", t_again, again),
                ("add run N+1", t_add, added), ("build N+1 runs from nothing", t_full, full)]
        print(f"site of {args.runs} runs over {args.targets} targets, {len(doc['results'])} results per run")
        print(f"{'step':32} {'seconds':>8} {'pages written':>14} {'unchanged':>10}")
        for name, secs, o in rows:
            print(f"{name:32} {secs:8.2f} {len(o.written):14d} {o.skipped:10d}")
        print(json.dumps({"runs": args.runs, "targets": args.targets, "results_per_run": len(doc["results"]),
                          **{name: {"s": round(secs, 2), "written": len(o.written), "unchanged": o.skipped}
                             for name, secs, o in rows}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
