"""A target that stops answering mid-run: the remaining cases end within seconds as errors naming it (issue 20).

A real Dovecot, described by a target file, is frozen with SIGSTOP once the run has results: the kernel still
accepts connections for it, but nothing answers, the way a hung server looks from outside. Without the probe
every remaining case would wait out its own deadline and end as a ``fail`` of the server.
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

from conformance.providers.dovecot import DovecotProvider
from conformance.targets import write_target_file

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 3.0
pytestmark = pytest.mark.slow


def results(out: Path) -> list[dict]:
    lines = [line for f in (out / "results.d").glob("*.jsonl") for line in f.read_text().splitlines()]
    return [json.loads(line) for line in lines if line.strip()]


def test_remaining_cases_end_at_once_as_errors_after_the_probe_fails_too(tmp_path, capsys):
    prov = DovecotProvider(name="freezing", keep_logs=tmp_path / "logs")
    target = prov.start()
    try:
        target_file = write_target_file(target, tmp_path / "freezing.toml")
        out = tmp_path / "run"
        cmd = [sys.executable, "-m", "conformance.cli", "run", "--target", str(target_file), "--profile", "imap-push",
               "--deadline", str(DEADLINE), "-n", "2", "--output", str(out)]
        with open(tmp_path / "stdout", "w") as so, open(tmp_path / "stderr", "w") as se:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=so, stderr=se, start_new_session=True,
                                    env=dict(os.environ, LEMONADE_PROGRESS="lines"))
        deadline = time.monotonic() + 120
        while not (out / "results.d").is_dir() or not results(out):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "stderr").read_text()
            time.sleep(0.05)
        before = len(results(out))
        os.killpg(prov.proc.pid, signal.SIGSTOP)
        frozen = time.time()
        t0 = time.monotonic()
        rc = proc.wait(timeout=300)
        after_s = time.monotonic() - t0
    finally:
        os.killpg(prov.proc.pid, signal.SIGCONT)
        prov.stop()
    assert rc == 2, (tmp_path / "stderr").read_text()
    doc = json.loads((out / "results.json").read_text())
    late = [r for r in doc["results"] if r["started"] >= frozen - 0.5]
    stopped = [r for r in late if "stopped answering" in r["message"]]
    others = [r for r in late if r not in stopped]
    # each worker waits out one deadline (the case it was in), probes, and ends every later case at once
    assert len(others) <= 2 + 2, [(r["check"], r["verdict"], r["message"][:80]) for r in others]
    assert len(stopped) >= len(doc["results"]) - before - 4 and len(stopped) >= 10, len(stopped)
    for r in stopped:
        assert r["verdict"] == "error" and r["duration_s"] < 1.0, (r["verdict"], r["duration_s"])
        assert {v["verdict"] for v in r["requirement_verdicts"].values()} == {"error"}
        assert "target freezing stopped answering at" in r["message"] and "timed out" in r["message"]
        probe = r["evidence"]["target_probe"]
        assert probe["endpoint"] == "imap" and "no answer within" in probe["endpoints"]["imap"], probe
    assert any("target_probe" in r["evidence"] and "after" in r["evidence"]["target_probe"] for r in others)
    assert not [r for r in stopped if r["verdict"] == "fail"]
    # bounded: one deadline and one probe per worker, then finalisation; not len(stopped) deadlines
    assert after_s < 2 * DEADLINE + 5 + 30, after_s
    with capsys.disabled():
        print(f"\nstopped target: {len(stopped)} cases ended as errors without waiting; the run ended {after_s:.1f} s "
              f"after the freeze (without the probe: about {len(stopped)} x {DEADLINE:g} s / 2 workers = "
              f"{len(stopped) * DEADLINE / 2:.0f} s more)")
