"""What the suite's tests use to watch a whole `lemonade run` from outside: which of its processes live (found
independently of the suite's own sweep) and how much memory and time the run took.

``run_processes(out)`` finds the living processes of the run in ``out`` three ways: the PIDs it recorded in
processes.d (same start time), every member of a process group or session it recorded as started in one of its
own, and every process whose environment carries one of its markers; zombies hold nothing and do not count.
``measured(cmd)`` runs a command under a small wrapper process and returns its exit code, wall time and the
maximum resident memory of the command's process tree (``getrusage(RUSAGE_CHILDREN)`` of the wrapper: the
largest single process among the waited-for descendants, not a sum).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MARKER = b"LEMONADE_RUN_MARKER="
# the wrapper: a fresh small interpreter, so the figure never includes the test process's own memory (a child's
# ru_maxrss counts what it had before exec)
WRAPPER = """
import json, resource, subprocess, sys, time
t0 = time.monotonic()
with open(sys.argv[1], "w") as so, open(sys.argv[2], "w") as se:
    rc = subprocess.call(sys.argv[3:], stdout=so, stderr=se)
print(json.dumps({"rc": rc, "wall_s": time.monotonic() - t0,
                  "max_rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def records(out: Path) -> list[dict]:
    return [json.loads(line) for f in sorted((out / "processes.d").glob("*.jsonl"))
            for line in f.read_text().splitlines() if line.strip()]


def run_processes(out: Path) -> dict[int, str]:
    recs = records(out)
    markers = {r["marker"].encode() for r in recs}
    recorded = {(r["pid"], r["start"]): r["what"] for r in recs if "pid" in r}
    leaders = {r["pid"]: r["what"] for r in recs if r.get("leads")}
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if fields[0] in ("Z", "X"):
            continue
        pid, pgid, sid, started = int(entry), int(fields[2]), int(fields[3]), int(fields[19])
        words = {w for e in environ.split(b"\0") if e.startswith(MARKER) for w in e[len(MARKER):].split()}
        if (pid, started) in recorded:
            found[pid] = f"recorded: {recorded[(pid, started)]}"
        elif pgid in leaders or sid in leaders:
            found[pid] = f"group or session of {leaders.get(pgid) or leaders.get(sid)}"
        elif markers & words:
            found[pid] = "carries the run's marker"
    return found


@dataclass
class Measured:
    rc: int
    wall_s: float
    max_rss_mb: float
    stdout: str
    stderr: str


def measured(cmd: list[str], workdir: Path, *, cwd: Path, timeout: float, env: dict | None = None) -> Measured:
    so, se = workdir / "measured.stdout", workdir / "measured.stderr"
    p = subprocess.run([sys.executable, "-c", WRAPPER, str(so), str(se), *cmd], cwd=cwd, capture_output=True,
                       text=True, timeout=timeout, env=env)
    figures = json.loads(p.stdout.strip().splitlines()[-1])
    return Measured(figures["rc"], figures["wall_s"], figures["max_rss_kib"] / 1024, so.read_text(), se.read_text())
