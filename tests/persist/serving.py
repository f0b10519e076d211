"""`lemonade serve` as the tests use it: a separate process started with a target, waited for until it prints
``# ready``, stopped with SIGTERM by its PID (and its process group ended if it does not stop in time)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from conformance.serve import READY
from conformance.targets import Target, load_target_file
from tests.conftest import ROOT


@dataclass
class ServeProcess:
    proc: subprocess.Popen
    target_file: Path
    stdout: list[str] = field(default_factory=list)
    stderr_file: Path | None = None
    returncode: int | None = None

    @property
    def target(self) -> Target:
        return load_target_file(self.target_file)

    @property
    def text(self) -> str:
        return "".join(self.stdout)

    def stderr(self) -> str:
        return self.stderr_file.read_text(errors="replace") if self.stderr_file and self.stderr_file.exists() else ""


def _pump(stream, lines: list[str], q: queue.Queue) -> None:
    for line in stream:
        lines.append(line)
        q.put(line)
    q.put(None)


@contextmanager
def lemonade_serve(tmp_path: Path, *args: str, name: str = "serve", ready_within: float = 180.0):
    """``lemonade serve ARGS --write FILE``, up until the block ends; yields the ServeProcess (``target_file``)."""
    target_file = tmp_path / f"{name}.toml"
    err = tmp_path / f"{name}.stderr"
    cmd = [sys.executable, "-m", "conformance.cli", "serve", *args, "--write", str(target_file)]
    with open(err, "wb") as err_out:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err_out, text=True, cwd=ROOT,
                                start_new_session=True)
    served = ServeProcess(proc, target_file, stderr_file=err)
    q: queue.Queue = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, served.stdout, q), daemon=True).start()
    try:
        deadline = time.monotonic() + ready_within
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"lemonade serve {' '.join(args)} not ready within {ready_within} s:\n"
                                     f"{served.text}\n{served.stderr()}")
            try:
                line = q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"lemonade serve {' '.join(args)} ended (rc {proc.wait(5)}) before it was "
                                     f"ready:\n{served.text}\n{served.stderr()}")
            if line.startswith(READY):
                break
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the group we started, nothing else
                proc.wait(10)
        served.returncode = proc.returncode
