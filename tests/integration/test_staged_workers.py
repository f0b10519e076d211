"""xdist's workers join the session as they come up: the first one runs cases while the others are still being
started (``schedule.staged_node_manager``), every case still runs exactly once, and a worker that cannot be
started leaves its share to the others instead of ending the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CONFTEST = '''
import json, os, time
from pathlib import Path

LOG = Path(__file__).with_name("events.jsonl")


def pytest_configure(config):
    if not hasattr(config, "workerinput"):
        from conformance.plugin.schedule import LongestFirstPlugin
        config.pluginmanager.register(LongestFirstPlugin(), "lemonade-longest-first")


def log(**event):
    with LOG.open("a") as f:
        f.write(json.dumps(dict(event, t=time.time())) + "\\n")


def pytest_xdist_newgateway(gateway):
    # a slow machine: every worker after the first takes a while to start
    if gateway.id != "gw0":
        time.sleep(float(os.environ.get("SLOW_START_S", "0")))
    log(event="gateway", id=gateway.id)
'''

TESTS = '''
import os, time
import pytest
from conftest import log


@pytest.mark.parametrize("i", range(8))
def test_case(i):
    log(event="case", i=i, worker=os.environ.get("PYTEST_XDIST_WORKER"))
    time.sleep(float(os.environ.get("CASE_S", "0.2")))
'''


def _run(tmp_path: Path, tx: list[str], slow_s: float, case_s: float = 0.2) -> tuple[subprocess.CompletedProcess,
                                                                                   list[dict]]:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_cases.py").write_text(TESTS)
    args = [sys.executable, "-m", "pytest", "-p", "xdist", "-p", "no:cacheprovider", "--dist", "load", "-q"]
    for spec in tx:
        args += ["--tx", spec]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", SLOW_START_S=str(slow_s),
               CASE_S=str(case_s))
    p = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().split("\n") if line]
    return p, events


def test_the_first_worker_runs_cases_while_the_others_are_started(tmp_path):
    p, events = _run(tmp_path, [f"3*popen//python={sys.executable}"], slow_s=4.0, case_s=0.6)
    assert p.returncode == 0, p.stdout + p.stderr
    cases = [e for e in events if e["event"] == "case"]
    gateways = {e["id"]: e["t"] for e in events if e["event"] == "gateway"}
    assert sorted(e["i"] for e in cases) == list(range(8))  # each case once
    # xdist's own start hands out no case before the last worker is up; here the two workers after the first
    # take 4 s each to start (two at a time), and the first has run cases long before
    assert set(gateways) == {"gw0", "gw1", "gw2"}, gateways
    assert min(e["t"] for e in cases) < max(gateways.values()) - 2.0, events
    assert "gw0" in {e["worker"] for e in cases}


def test_a_worker_that_cannot_be_started_leaves_its_share_to_the_others(tmp_path):
    p, events = _run(tmp_path, [f"popen//python={sys.executable}", "popen//python=/nonexistent/python3"], slow_s=0)
    assert p.returncode == 0, p.stdout + p.stderr
    assert sorted(e["i"] for e in events if e["event"] == "case") == list(range(8))
    assert "pytest worker gw1 could not be started" in p.stderr and "the run goes on without it" in p.stderr
