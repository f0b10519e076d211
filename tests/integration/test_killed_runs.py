"""A run stopped from outside can be read, resumed, and leaves no process behind (issue 20).

A real ``lemonade run`` (two workers, each with its embedded Dovecot) is stopped while cases are running: with
kill -9 (nothing of it can clean up: the reaper must), SIGTERM, and Ctrl-C (SIGINT to the whole foreground
process group, as a terminal sends it). Then: the partial report is rendered, a resume completes the run, and
no process of the run is left, checked here independently of the suite's own sweep: by the PIDs the run
recorded in processes.d (same start time), by the members of the process groups and sessions it recorded, and
by a scan of /proc for processes whose environment carries the run's marker.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.runscan import run_processes

ROOT = Path(__file__).resolve().parents[2]
# two quick NOTIFY cases and five that each wait ~4.6 s (scheduled first): cases are running at any moment
SELECTION = ["--profile", "imap-push", "-k", "notify_status or notify_set or push_survives_idle_timeout", "-n", "2"]
GONE_WITHIN_S = 10.0  # the sweep's design: workers SIGTERM, 3 s grace, the rest SIGTERM, 3 s grace, SIGKILL
pytestmark = pytest.mark.slow


def lemonade(*args: str) -> list[str]:
    return [sys.executable, "-m", "conformance.cli", *args]


def start(out: Path) -> subprocess.Popen:
    """The run in a session of its own (its process group is the one a terminal's Ctrl-C would reach); its output
    in files beside the run directory (``said``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{out}.stdout", "w") as so, open(f"{out}.stderr", "w") as se:
        return subprocess.Popen(lemonade("run", *SELECTION, "--output", str(out)), cwd=ROOT, start_new_session=True,
                                stdout=so, stderr=se, env=dict(os.environ, LEMONADE_PROGRESS="lines"))


def said(out: Path) -> tuple[str, str]:
    return Path(f"{out}.stdout").read_text(), Path(f"{out}.stderr").read_text()


def results_so_far(out: Path) -> list[dict]:
    lines = [line for f in (out / "results.d").glob("*.jsonl") for line in f.read_text().splitlines()]
    return [json.loads(line) for line in lines if line.strip()]


def wait_for_results(out: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(results_so_far(out)) < n:
        assert proc.poll() is None, f"the run ended early: {said(out)}"
        assert time.monotonic() < deadline, "no result appeared in time"
        time.sleep(0.1)


def seconds_until_none_left(out: Path, since: float, limit: float = 60.0) -> float:
    while run_processes(out):
        if time.monotonic() - since > limit:
            break
        time.sleep(0.05)
    left = run_processes(out)
    assert not left, f"processes of the run still alive {limit:.0f} s after it was stopped: {left}"
    return time.monotonic() - since


def assert_alive_before(out: Path) -> None:
    alive = run_processes(out).values()
    assert any("pytest worker" in w for w in alive), alive
    assert any("dovecot server" in w for w in alive), alive  # the workers' own targets, in sessions of their own


def assert_partial(out: Path, by: str) -> dict:
    doc = json.loads((out / "results.json").read_text())
    run = doc["run"]
    assert run["interrupted"]["by"] == by, run["interrupted"]
    assert run["planned"] == 7 and run["not_run"], run
    done = {r["nodeid"] for r in doc["results"]}
    assert done and not done & {c["nodeid"] for c in run["not_run"]}
    assert len(done) + len(run["not_run"]) == run["planned"]
    assert doc["summary"]["interrupted"] == by and doc["summary"]["not_run"] == len(run["not_run"])
    html = (out / "index.html").read_text()
    assert "interrupted" in html and "did not run" in html and run["not_run"][0]["check"] in html
    junit = (out / "junit.xml").read_text()
    assert 'testsuite name="not run"' in junit
    return doc


def test_kill_9_leaves_nothing_behind_its_report_is_assembled_and_resume_completes_it(tmp_path, capsys):
    out = tmp_path / "run"
    proc = start(out)
    wait_for_results(out, 1, proc)
    assert_alive_before(out)
    t0 = time.monotonic()
    proc.kill()
    proc.wait(timeout=30)
    gone = seconds_until_none_left(out, t0)
    assert gone < GONE_WITHIN_S, f"the run's processes outlived kill -9 by {gone:.1f} s"
    assert not (out / "results.json").exists()
    assert "ended without finishing" in (out / "processes.d" / "reaper.log").read_text()

    report = subprocess.run(lemonade("report", str(out)), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    assert "has no results.json" in report.stderr and "planned case(s) without a result" in report.stderr
    first = assert_partial(out, "unknown")

    resumed = subprocess.run(lemonade("run", "--resume", str(out)), cwd=ROOT, capture_output=True, text=True,
                             timeout=300, env=dict(os.environ, LEMONADE_PROGRESS="lines"))
    assert resumed.returncode in (0, 1), resumed.stdout + resumed.stderr
    doc = json.loads((out / "results.json").read_text())
    nodeids = [r["nodeid"] for r in doc["results"]]
    assert len(nodeids) == len(set(nodeids)) == doc["run"]["planned"] == 7, nodeids
    assert not doc["run"]["not_run"] and "interrupted" not in doc["run"]
    assert len(doc["run"]["segments"]) == 2 and doc["run"]["resumed"]
    assert {r["nodeid"] for r in first["results"]} <= set(nodeids)
    assert all(r["verdict"] != "error" for r in doc["results"]), [r["message"] for r in doc["results"]]
    assert not run_processes(out)
    with capsys.disabled():
        print(f"\nkill -9: no process of the run left {gone:.2f} s after the kill; "
              f"{len(first['results'])} results kept, {len(first['run']['not_run'])} run by --resume")


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_sigterm_and_ctrl_c_finalise_what_was_done(tmp_path, how, capsys):
    out = tmp_path / "run"
    proc = start(out)
    wait_for_results(out, 1, proc)
    assert_alive_before(out)
    t0 = time.monotonic()
    if how == "SIGTERM":
        proc.send_signal(signal.SIGTERM)
    else:
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal does: the whole foreground process group
    # the run itself lives on to finalise (and its reaper with it); everything it started must end meanwhile
    started = None
    while started is None or proc.poll() is None:
        left = {p: w for p, w in run_processes(out).items() if p != proc.pid and "reaper" not in w}
        if not left and started is None:
            started = time.monotonic() - t0
        assert time.monotonic() - t0 < 120, f"still alive: {left}, run ended: {proc.poll()}"
        time.sleep(0.05)
    ended = time.monotonic() - t0
    gone = seconds_until_none_left(out, t0)
    stdout, stderr = said(out)
    assert proc.returncode == 2, stdout + stderr
    by = "SIGTERM" if how == "SIGTERM" else "SIGINT"
    assert f"interrupted by {by}" in stderr and "--resume" in stderr, stderr
    assert_partial(out, by)
    assert started < GONE_WITHIN_S, f"workers and servers outlived {how} by {started:.1f} s"
    with capsys.disabled():
        print(f"\n{how}: workers, servers and proxies gone {started:.2f} s after the signal; lemonade run finalised "
              f"and exited (2) after {ended:.2f} s; no process of the run left after {gone:.2f} s")
