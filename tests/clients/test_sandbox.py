"""The sandbox bounds a hostile client program: deadline, forks that leave the group, an output flood, stray
files, the unprivileged user, secrets scrubbed from its log (issue 20, hostile clients)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from conformance.subjects.sandbox import Limits, SandboxedProcess, client_identity, make_dirs, play_root


def play(tmp_script: str, limits: Limits, scrub=None) -> tuple[SandboxedProcess, Path]:
    root = play_root("sandbox-test")
    dirs = make_dirs(root, ("output", "state"))
    script = root / "run"
    script.write_text("#!/bin/sh\n" + tmp_script)
    script.chmod(0o755)
    proc = SandboxedProcess([str(script)], {"PATH": "/usr/bin:/bin", "OUT": str(dirs["output"])}, root, limits,
                            dirs["output"], scrub=scrub)
    return proc.start(), root


def test_never_exits_is_stopped_at_its_deadline():
    proc, _ = play("echo started; exec sleep 600\n", Limits(wall_s=1.0))
    t0 = time.monotonic()
    proc.wait()
    assert time.monotonic() - t0 < 8
    assert proc.stopped_by == "deadline" and proc.returncode != 0


def test_forked_child_that_left_the_group_is_ended():
    proc, root = play(f"setsid sh -c 'echo $$ > {'$OUT'}/../state/child; exec sleep 600' &\nsleep 0.3\nexit 0\n",
                      Limits(wall_s=10))
    assert proc.wait() == 0
    pid = int((root / "state" / "child").read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists(), "a child that called setsid outlived the play"


def test_output_flood_hits_the_cap():
    proc, _ = play("while :; do head -c 1048576 /dev/zero > $OUT/$(date +%s%N).eml; done\n",
                   Limits(wall_s=30, output_mib=4))
    proc.wait()
    assert proc.stopped_by == "output cap"


def test_memory_and_file_limits_apply():
    proc, _ = play("head -c 3000000 /dev/zero > $OUT/big.eml; echo rc=$?\n", Limits(wall_s=10, file_size_mib=1))
    proc.wait()
    assert os.path.getsize(next(Path(proc.output).glob("big.eml"))) <= 1024 * 1024
    assert "rc=" in proc.log() and "rc=0" not in proc.log()


@pytest.mark.skipif(os.geteuid() != 0, reason="stray files are looked for only when clients run as their own user")
def test_runs_unprivileged_and_stray_files_are_reported():
    uid, _, name = client_identity()
    assert uid != 0
    marker = f"/tmp/lemonade-stray-{os.getpid()}"
    proc, _ = play(f"id -u; touch {marker}\n", Limits(wall_s=10))
    proc.wait()
    assert proc.log().split()[0] == str(uid)
    assert marker in proc.stray_files
    Path(marker).unlink()


def test_log_is_a_ring_and_scrubbed():
    proc, _ = play("i=0; while [ $i -lt 4000 ]; do echo 'line with s3cret-pw inside'; i=$((i+1)); done\n",
                   Limits(wall_s=10, log_kib=16), scrub=lambda s: s.replace("s3cret-pw", "<redacted>"))
    proc.wait()
    log = proc.log()
    assert "s3cret-pw" not in log and "<redacted>" in log
    assert proc.ring.dropped > 0 and len(proc.ring.data) <= 16 * 1024
