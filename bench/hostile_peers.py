"""Hostile peers x the suite's own clients: how each ends, how long it takes, the client's maximum resident memory.

Each (protocol, behaviour) of ``tests/fakes/hostile.py`` runs the client flow in a process of its own (so the
memory figure is that client's alone) against a scripted peer in this process; the deadline is 5 s. With
``--run``, also a whole ``lemonade run --profile imap-push`` against the IMAP flood and the endless EHLO reply,
with the run's wall time, the maximum resident memory of its processes and its verdicts.

    .venv/bin/python bench/hostile_peers.py [--run]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.hostile import BEHAVIOURS, PASSWORD, target_file  # noqa: E402
from tests.fakes.scripted import ScriptedPeer  # noqa: E402


def one(protocol: str, behaviour: str) -> dict:
    with ScriptedPeer(BEHAVIOURS[protocol][behaviour]) as peer:
        p = subprocess.run([sys.executable, "-m", "tests.fakes.hostile", protocol, str(peer.port)], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    if p.returncode != 0 or not p.stdout.strip():
        return {"verdict": "crash", "message": p.stderr[-300:], "seconds": 0, "max_rss_mb": 0}
    return json.loads(p.stdout.strip().splitlines()[-1])


def whole_run(behaviour: dict[str, str]) -> dict:
    """``lemonade run --profile imap-push`` against hostile IMAP (and submission) peers."""
    with tempfile.TemporaryDirectory(prefix="lemonade-hostile-") as d, \
            ScriptedPeer(BEHAVIOURS["imap"][behaviour["imap"]]) as imap, \
            ScriptedPeer(BEHAVIOURS["smtp"][behaviour["smtp"]]) as smtp:
        target = target_file(Path(d), imap.port, smtp.port)
        t0 = time.monotonic()
        # /usr/bin/time measures the run's own process tree (a child exec'd from this process would inherit this
        # process's peak in ru_maxrss)
        cmd = ["/usr/bin/time", "-f", "maxrss_kib=%M", sys.executable, "-m", "conformance.cli", "run", "--target",
               str(target), "--profile", "imap-push", "--output", f"{d}/run", "-n", "2"]
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                           env=dict(os.environ, COLUMNS="200"))
        wall = time.monotonic() - t0
        rss = int(next((line.split("=")[1] for line in reversed(p.stderr.splitlines())
                        if line.startswith("maxrss_kib=")), "0"))
        results = json.loads(Path(f"{d}/run/results.json").read_text())["results"] if \
            Path(f"{d}/run/results.json").exists() else []
        leaked = [f.name for f in Path(f"{d}/run").rglob("*") if f.is_file() and PASSWORD.encode() in f.read_bytes()]
        sizes = {f.name: f.stat().st_size for f in Path(f"{d}/run").glob("*") if f.is_file()}
    return {"rc": p.returncode, "seconds": round(wall, 1), "max_rss_mb": round(rss / 1024, 1),
            "verdicts": dict(collections.Counter(r["verdict"] for r in results)), "password_in": leaked,
            "sizes": sizes}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="store_true", help="also whole runs against hostile IMAP/submission peers")
    ap.add_argument("--runs-only", action="store_true", help="only the whole runs")
    a = ap.parse_args()
    if a.runs_only:
        a.run = True
        BEHAVIOURS_SHOWN = {}
    else:
        BEHAVIOURS_SHOWN = BEHAVIOURS
    print(f"{'protocol':<12} {'behaviour':<28} {'verdict':<8} {'exception':<18} {'s':>6} {'RSS MB':>7}  message")
    for protocol, behaviours in BEHAVIOURS_SHOWN.items():
        for name in behaviours:
            r = one(protocol, name)
            leak = "  PASSWORD LEAKED" if r.get("password_leaked") else ""
            print(f"{protocol:<12} {name:<28} {r['verdict']:<8} {r.get('exception', ''):<18} {r['seconds']:>6} "
                  f"{r['max_rss_mb']:>7}  {r['message'][:90]}{leak}")
    if a.run:
        for behaviour in ({"imap": "untagged-flood", "smtp": "endless-ehlo"},
                          {"imap": "idle-without-continuation", "smtp": "stall-after-ehlo"}):
            print(f"lemonade run --profile imap-push against {behaviour}: {json.dumps(whole_run(behaviour))}")


if __name__ == "__main__":
    main()
