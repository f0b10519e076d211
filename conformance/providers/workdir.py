"""What every provider does the same way: end the process group it started, tail its logs, keep the logs
with the run's output and remove its private directory."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path


def stop_process_group(proc: subprocess.Popen | None, grace: float = 8.0) -> None:
    """SIGTERM the process group we started (``start_new_session=True``): the server's master and its children at
    once (Dovecot's master, signalled alone, waits a full second for its children); if it does not end in time,
    or left children behind, SIGKILL that group. Touches no other process."""
    if proc is None:
        return
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


def log_tail(log_dir: Path | None, names: tuple[str, ...], n: int = 8) -> str:
    """The last ``n`` lines of the named log files, joined on one line for an error message."""
    text = ""
    for name in names:
        p = log_dir / name if log_dir else None
        if p and p.exists():
            text += p.read_text(errors="replace")
    return " | ".join(text.strip().splitlines()[-n:])


def keep_logs_and_remove(directory: Path | None, keep_logs: Path | None, prefix: str, pattern: str = "*.log") -> None:
    """Copy ``directory/log/<pattern>`` to ``keep_logs`` as ``<prefix>-<name>``, then remove ``directory``."""
    if not directory or not directory.exists():
        return
    if keep_logs:
        keep_logs.mkdir(parents=True, exist_ok=True)
        for f in (directory / "log").glob(pattern):
            if f.is_file():
                shutil.copy(f, keep_logs / f"{prefix}-{f.name}")
    shutil.rmtree(directory, ignore_errors=True)
