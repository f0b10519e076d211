"""Client programs that misbehave against the suite itself are bounded: time, memory, files, processes (issue 20).

Each fake adapter (tests/fakes/clients/fake-flood, -hang, -fork, -stray, -hog) breaks one rule of the sandbox
rather than a protocol's, and plays ``fetch-once`` in a real ``lemonade run``: the run ends in bounded time with
its memory bounded, each misbehaviour is stopped and shown in the result, and nothing of any play outlives the
run, not even after a kill -9 of ``lemonade run`` in the middle of a play.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.runscan import measured, run_processes

ROOT = Path(__file__).resolve().parents[2]
FAKES = ROOT / "tests" / "fakes" / "clients"
CASE_TIMEOUT = 15.0  # a play may take 0.6 of it (9 s): the never-ending one is stopped there and judged
pytestmark = pytest.mark.slow


def notes(r: dict) -> str:
    return "\n".join(e["text"] for e in r["evidence"].get("transcript", []) if e["direction"] == "N")


def test_flood_hang_fork_stray_and_hog_are_each_stopped_and_shown(tmp_path, capsys):
    fakes = ["fake-flood", "fake-hang", "fake-fork", "fake-stray", "fake-hog"]
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "conformance.cli", "run", *[a for f in fakes for a in ("--client", str(FAKES / f))],
           "-k", "fetch_complete", "--case-timeout", str(CASE_TIMEOUT), "-n", "2", "--output", str(out)]
    run = measured(cmd, tmp_path, cwd=ROOT, timeout=300, env=dict(os.environ, LEMONADE_PROGRESS="lines"))
    assert run.rc in (1, 2), run.stdout + run.stderr
    got = {r["subject"]: r for r in json.loads((out / "results.json").read_text())["results"]}
    assert set(got) == set(fakes), got.keys()
    with capsys.disabled():
        print(f"\nhostile clients: run {run.wall_s:.1f} s, max RSS {run.max_rss_mb:.0f} MB; "
              + ", ".join(f"{s} {r['verdict']} {r['duration_s']:.1f} s" for s, r in sorted(got.items())))

    flood = got["fake-flood"]  # stopped at the output cap (files), its log kept as a bounded ring
    assert flood["verdict"] == "fail" and "was stopped (output cap)" in flood["message"], flood["message"][:300]
    assert "output cap" in notes(flood)
    assert len(flood["evidence"]["client_log"]) <= 61000 and "earlier characters cut" in flood["evidence"]["client_log"]

    hang = got["fake-hang"]  # stopped at its play's limit, within the case's: judged, not cut short
    assert hang["verdict"] == "fail" and "was stopped (deadline)" in hang["message"], hang["message"]
    assert hang["duration_s"] < CASE_TIMEOUT

    fork = got["fake-fork"]  # did its job, but its daemon is ended and named
    assert fork["verdict"] == "pass", fork["message"]
    assert "left 1 process(es) running after its play ended" in notes(fork)

    stray = got["fake-stray"]  # cannot write beside its folders; what it wrote in /tmp is listed
    log = stray["evidence"]["client_log"]
    assert "could not write" in log and "escape.txt: [Errno 13] Permission denied" in log, log
    if os.geteuid() == 0:  # plays run as the unprivileged lemonade-client user (stray files are looked for then)
        strays = [w for w in notes(stray).split() if w.startswith("/tmp/lemonade-stray-")]
        assert strays, notes(stray)
        for s in strays:
            assert Path(s.rstrip(",")).stat().st_uid != 0
            Path(s.rstrip(",")).unlink()

    hog = got["fake-hog"]  # the address-space limit refuses the memory
    assert hog["verdict"] == "fail" and "MemoryError: 4 GiB refused" in hog["evidence"]["client_log"]

    assert run.max_rss_mb < 300, run.max_rss_mb
    assert run.wall_s < 120, run.wall_s
    assert not run_processes(out), run_processes(out)


def test_kill_9_during_a_play_leaves_no_client_process(tmp_path, capsys):
    """A play runs in a process group of its own (and fake-hang's child in a session of its own): neither is a
    child of the workers' group, so only the run's marker and records find them after a kill -9."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "conformance.cli", "run", "--client", str(FAKES / "fake-hang"), "-k", "fetch_complete",
           "--output", str(out)]
    with open(tmp_path / "stderr", "w") as se:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=se, start_new_session=True)
    deadline = time.monotonic() + 120
    # the play (recorded, its own process group) and its child that left for a session of its own (the marker)
    while not {"recorded: client play fake-hang", "carries the run's marker"} <= set(run_processes(out).values()):
        assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "stderr").read_text()
        time.sleep(0.1)
    t0 = time.monotonic()
    proc.kill()
    proc.wait(30)
    while run_processes(out) and time.monotonic() - t0 < 60:
        time.sleep(0.05)
    gone = time.monotonic() - t0
    assert not run_processes(out), run_processes(out)
    assert gone < 10, gone
    with capsys.disabled():
        print(f"\nkill -9 during a client play: no process of the run left after {gone:.2f} s")
