"""A pytest worker that dies while it runs a case (killed, out of memory, a crash in native code) leaves no silent
gap: the case gets an `error` result saying its worker ended, the run says so on the console, every other case
keeps its result, and the server the dead worker started is ended by the run's sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conformance.schema import validate_results

ROOT = Path(__file__).resolve().parents[2]


def _worker_pids(run: Path) -> dict[str, int]:
    out = {}
    for f in (run / "processes.d").glob("*.jsonl"):
        for line in f.read_text().split("\n"):
            if '"pytest worker' in line:
                rec = json.loads(line)
                out[rec["what"].split()[-1]] = rec["pid"]
    return out


def test_a_case_whose_worker_is_killed_gets_an_error_result(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "conformance.cli", "run", "--output", str(run), "-n", "2", "-k",
           "push_survives_idle_timeout", "--scenario", "direct", "--scenario", "lifetime:max=5,mode=fin"]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, LEMONADE_REPORTS=str(tmp_path / "reports")))
    try:
        deadline = time.monotonic() + 60
        victim = None
        while victim is None and time.monotonic() < deadline and p.poll() is None:
            # a worker whose target answers is in its first case (each case waits about 5 s)
            started = {f.stem.rsplit("-", 1)[-1] for f in (run / "results.d").glob("target-*.json")} \
                if (run / "results.d").is_dir() else set()
            pids = _worker_pids(run) if (run / "processes.d").is_dir() else {}
            victim = next((pids[w] for w in sorted(started) if w in pids), None)
            time.sleep(0.1)
        assert victim is not None, "no worker started a case within 60 s"
        time.sleep(1.0)
        os.kill(victim, signal.SIGKILL)
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    doc = json.loads((run / "results.json").read_text())
    assert not validate_results(doc)
    errors = [r for r in doc["results"] if r["verdict"] == "error"]
    assert len(errors) == 1, [(r["nodeid"], r["verdict"], r["message"][:100]) for r in doc["results"]]
    assert "the pytest worker running this case ended before the case did" in errors[0]["message"]
    assert "crashed while running" in errors[0]["message"]
    assert errors[0]["rerun"].endswith("-k test_push_survives_idle_timeout")
    assert len(doc["results"]) == 2 and not doc["run"]["not_run"]  # the other case kept its result
    assert "went down" in err
    assert p.returncode == 2  # an error verdict: harness trouble, not the server's fault
