"""The live progress display: drawn from the controller's hooks (plain report objects here), and the real
`lemonade run` in a pseudo-terminal (live), in a pipe and in CI (one line per result, no cursor movement)."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from rich.console import Console

from conformance.progress import LineProgress, LiveProgress, Tally, progress_for, short_name

ROOT = Path(__file__).resolve().parents[2]
HIDE_CURSOR = "\x1b[?25l"  # rich's Live hides the cursor while it draws
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def result(check: str, verdict: str, message: str = "") -> dict:
    return {"check": check, "target": "dovecot", "scenario": "direct", "verdict": verdict, "message": message,
            "duration_s": 0.5}


def finished(nodeid: str, r: dict) -> SimpleNamespace:
    return SimpleNamespace(when="teardown", nodeid=nodeid, user_properties=[("lemonade_result", r)])


def test_live_panel_shows_done_total_running_tallies_and_an_estimate():
    out = io.StringIO()
    con = Console(file=out, force_terminal=True, width=140, color_system=None)
    live = LiveProgress(con)
    live.tally = Tally(started=time.monotonic() - 10)
    live.pytest_collection_finish(SimpleNamespace(items=[1, 2, 3, 4]))
    a, b = "capability/test_x.py::test_store_capabilities[dovecot|direct]", "push/test_y.py::test_idle[dovecot|kill]"
    live.pytest_runtest_logstart(a, None)
    live.pytest_runtest_logstart(b, None)
    live.pytest_runtest_logreport(finished(a, result("capability/store_capabilities", "fail", "missing CONVERT")))
    con.print(live)
    text = out.getvalue()
    assert "1/4 checks" in text and "0:10 elapsed" in text and "about 0:30 left" in text, text
    assert "fail 1" in text and "running push/idle[dovecot|kill]" in text, text
    assert "running capability/store_capabilities" not in text  # finished: no longer listed as running
    assert text.count("missing CONVERT") == 2  # printed above the panel (kept in scrollback) and as the last result
    live.pytest_runtest_logreport(finished(b, result("push/idle", "pass")))
    assert live.tally.done == 2 and not live.tally.running and live.tally.verdicts == {"fail": 1, "pass": 1}


def test_xdist_total_and_names():
    live = LiveProgress(Console(file=io.StringIO()))
    live.pytest_xdist_node_collection_finished(node=None, ids=["a", "b", "c"])
    assert live.tally.total == 3 and live.tally.eta(time.monotonic()) is None
    assert short_name("reconnect/test_q.py::test_quick_resync[t|s]") == "reconnect/quick_resync[t|s]"


def test_choice_of_display(monkeypatch):
    tty = Console(file=io.StringIO(), force_terminal=True)
    pipe = Console(file=io.StringIO(), force_terminal=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("LEMONADE_PROGRESS", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert type(progress_for(tty)) is LiveProgress and type(progress_for(pipe)) is LineProgress
    monkeypatch.setenv("CI", "true")
    assert type(progress_for(tty)) is LineProgress
    monkeypatch.setenv("LEMONADE_PROGRESS", "live")
    assert type(progress_for(pipe)) is LiveProgress


def run_in_pty(args: list[str], env: dict[str, str], timeout: float = 240) -> str:
    """Run a command with a pseudo-terminal as its stdout and stderr; everything it wrote, decoded."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env, cwd=ROOT)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        proc.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return b"".join(chunks).decode(errors="replace")


def test_lemonade_run_is_live_on_a_terminal_and_plain_in_a_pipe_or_ci(tmp_path):
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "LEMONADE_PROGRESS")}
    base.update(TERM="xterm", COLUMNS="120", LINES="40")
    cmd = [sys.executable, "-m", "conformance.cli", "run", "-k", "capability_code or store_capabilities"]
    live = run_in_pty(cmd + ["--output", str(tmp_path / "live")], base)
    assert HIDE_CURSOR in live and "checks" in live and "elapsed" in live, live[-2000:]
    plain = ANSI.sub("", live)
    assert "verdict: FAIL" in plain and "fail capability/store_capabilities" in plain  # the failure stays visible
    ci = run_in_pty(cmd + ["--output", str(tmp_path / "ci")], dict(base, CI="true"))
    piped = subprocess.run(cmd + ["--output", str(tmp_path / "pipe")], capture_output=True, text=True, env=base,
                           cwd=ROOT, timeout=240)
    for raw in (ci, piped.stdout):
        text = ANSI.sub("", raw)
        assert HIDE_CURSOR not in raw and "elapsed" not in text
        assert "pass capability/capability_code_greeting_and_login dovecot | direct" in text, text[-2000:]
        assert "fail capability/store_capabilities" in text
