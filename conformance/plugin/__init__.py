"""The pytest plugin of ``lemonade run``: options, markers and the hooks that tie the run together.

Loaded with ``-p conformance.plugin``. Each check is a test function marked with
``@pytest.mark.requirement("id", ...)``; it is parametrised over the selected targets and the scenarios it
is meaningful under (``selection.py``), gets the ``case`` fixture (``fixtures.py``), is handed to an xdist
worker longest-expected-first (``schedule.py``), runs under the per-case time limit (``watchdog.py``), and its
outcome becomes one verdict per requirement and a result appended to the run (``outcome.py``, rules in
``conformance/verdicts.py``). ``state.py`` holds the process's targets.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys

import pytest

from ..errors import HarnessError
from ..processes import WORKER, note_started
from ..subjects.plugin import client_under_test
from ..transcript import Redactor
from .fixtures import case, lemonade_case_param, load_plan, load_protocol, load_shard, path, scenario, target
from .health import TargetStopped, timed_out
from .outcome import PHASES, build_result, crash_result, credential_forms, scrub
from .schedule import LongestFirstPlugin
from .selection import FinalSelection, case_param, parametrize, select
from .state import STATE, RunState, state_of
from .watchdog import WATCHDOG, CaseWatchdog

# the fixtures pytest finds here
__all__ = ["case", "client_under_test", "lemonade_case_param", "load_plan", "load_protocol", "load_shard", "path",
           "scenario", "target"]


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("lemonade", "lemonade conformance")
    g.addoption("--lemonade-target", action="append", default=[], help="target name or target file (repeatable)")
    g.addoption("--lemonade-profile", action="append", default=[], help="profile to select checks by (repeatable)")
    g.addoption("--lemonade-scenario", action="append", default=[], help="scenario string (repeatable)")
    g.addoption("--lemonade-depth", default="quick", choices=("quick", "full"))
    g.addoption("--lemonade-output", default=None, help="run directory (results.d/ is appended to)")
    g.addoption("--lemonade-shard", default=None, help="i/n: run only this deterministic share of the cases")
    g.addoption("--lemonade-rerun-prefix", default="lemonade run", help="command shown to rerun one case")
    g.addoption("--lemonade-deadline", default=None, help="seconds a client waits for one answer (default 10)")
    g.addoption("--lemonade-schedule", default="longest-first", choices=("longest-first", "collection"),
                help="xdist workers get the longest expected waits first, or the cases in collection order")
    g.addoption("--lemonade-load", default=None, help="JSON of a load plan: run only the load checks (lemonade load)")
    g.addoption("--lemonade-case-timeout", default=None, help="seconds one case may take before it is stopped "
                                                              "as an error (default 300 at quick depth)")
    g.addoption("--lemonade-param", action="append", default=[],
                help="REQ:NAME=VALUE: a numeric requirement parameter for this run (repeatable)")
    g.addoption("--lemonade-resume", action="store_true", default=False,
                help="leave out the cases that already have a result in the run directory (lemonade run --resume)")
    g.addoption("--lemonade-client", action="append", default=[],
                help="client under test (adapter name or folder; repeatable): the run judges clients, the targets "
                     "are their partner servers")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requirement(*ids): requirement ids this check verifies (must exist in profiles/)")
    config.addinivalue_line("markers", "uses(*endpoints): endpoints the check needs (imap, imaps, submission, jmap)")
    config.addinivalue_line("markers", "scenarios(*specs): scenarios the check is meaningful under (default: direct)")
    config.addinivalue_line("markers", "depth(name): only run at this depth; skipped with the command otherwise")
    config.addinivalue_line("markers", "load: a load check (many concurrent sessions): run by lemonade load only")
    config.addinivalue_line("markers", "long_wait: the check observes for a long time; scheduled first")
    if not config.getoption("--lemonade-output", None):
        return
    state = RunState(config)
    config.stash[STATE] = state
    # a failed case's pytest report is never shown (its result carries the evidence): native tracebacks spare
    # pytest parsing the source of every traceback entry (a tenth of a worker's CPU in a quick run)
    config.option.tbstyle = "native"
    config.stash[WATCHDOG] = CaseWatchdog(state.plan.case_timeout_s)
    config.pluginmanager.register(FinalSelection(), "lemonade-final-selection")
    if (config.pluginmanager.hasplugin("xdist") and not hasattr(config, "workerinput")
            and config.getoption("--lemonade-schedule") == "longest-first"):
        config.pluginmanager.register(LongestFirstPlugin(), "lemonade-longest-first")
    worker = getattr(config, "workerinput", {}).get("workerid")
    if worker:  # a worker of the run: recorded (the run's sweep ends it first); SIGINT and SIGTERM end it cleanly
        note_started(os.getpid(), f"{WORKER} {worker}", leads=False)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, functools.partial(interrupted, config))


TERMINATED = pytest.StashKey[bool]()  # the worker got SIGTERM: it leaves as soon as its targets are stopped
INTERRUPTED = pytest.StashKey[bool]()  # the worker was interrupted: it leaves once the controller was told


def interrupted(config: pytest.Config, signum: int, frame) -> None:
    """SIGINT or SIGTERM of a worker (``lemonade run`` passes a Ctrl-C or SIGTERM on; the run's sweep sends SIGTERM
    when ``lemonade run`` was killed): the case in progress ends without a result (a resume runs it again) and
    the session ends, stopping the targets this process started. Later signals are ignored, so the teardown is
    not cut short (the sweep's SIGKILL is the last word). After SIGTERM the process exits as soon as its targets
    are stopped (``pytest_sessionfinish``: the controller may be gone); after SIGINT once xdist has told the
    controller (``pytest_unconfigure``)."""
    config.stash[INTERRUPTED] = True
    config.stash[TERMINATED] = signum == signal.SIGTERM
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    state = state_of(metafunc.config)
    if state is not None and "lemonade_case_param" in metafunc.fixturenames:
        parametrize(metafunc, state)
    raw = metafunc.config.getoption("--lemonade-load", None)
    if state is not None and raw is not None and "load_shard" in metafunc.fixturenames:
        spec = json.loads(raw)
        shards = int(spec.get("shards", 1))
        metafunc.parametrize("load_shard", [f"{i}/{shards}" for i in range(1, shards + 1)], indirect=True)
        if "load_protocol" in metafunc.fixturenames:
            metafunc.parametrize("load_protocol", spec.get("protocols") or ["imap"], indirect=True)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    state = state_of(config)
    if state is not None:
        select(config, state, items)


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched) -> None:
    """An xdist worker ended while it ran a case (killed, crashed, lost its channel): the case gets an ``error``
    result saying so, with what xdist knows, instead of leaving a silent gap among the results."""
    from ..rundir import read_planned

    state = state_of(sched.config)
    case = {c["nodeid"]: c for c in read_planned(state.output) or []}.get(crashitem) if state is not None else None
    if case is None:
        return
    why = HarnessError(f"the pytest worker running this case ended before the case did: "
                       f"{(report.longreprtext or '').strip()[-600:] or 'no reason given'}")
    try:
        state.writer.append(crash_result(state, case, why))
    except OSError:
        pass


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """A worker that went down with an error is said on the console (its case, if any, gets an error result)."""
    if error:
        print(f"lemonade: pytest worker {node.gateway.id} went down: {str(error).strip()[:300]}", file=sys.stderr,
              flush=True)


# -- the per-case time limit: armed around each phase, so it never fires inside pytest's own bookkeeping --
def _guarded(item: pytest.Item, phase: str):
    watchdog = item.config.stash.get(WATCHDOG, None)
    if watchdog is None:
        yield
        return
    if phase == "setup":
        watchdog.start_case()
    watchdog.arm(phase)
    try:
        yield
    finally:
        watchdog.disarm(phase)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    yield from _guarded(item, "setup")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    yield from _guarded(item, "call")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item):
    yield from _guarded(item, "teardown")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    state = state_of(item.config)
    if state is None:
        return
    phases = item.stash.setdefault(PHASES, {})
    phases[call.when] = (report.outcome, call.excinfo, call.duration)
    if call.when != "teardown":
        return
    result = build_result(state, item, phases)
    after_timeout(state, item, phases, result)
    try:
        state.writer.append(result)
    except OSError as e:  # the run directory vanished: say so, keep going
        item.config.issue_config_time_warning(pytest.PytestWarning(f"cannot append result: {e}"), stacklevel=2)
    if item.config.getoption("--lemonade-load", None) is not None and hasattr(item.config, "workerinput"):
        # a load shard may run on another machine (xdist --tx ssh=...): the whole result travels back with the
        # report, and the controller keeps it when the worker's own results file is not on its disk
        report.user_properties.append(("lemonade_load_result", result))
    report.user_properties.append(("lemonade_result", {
        "check": result["check"], "target": result["target"], "scenario": result["scenario"],
        "subject": result["subject"], "role": result["role"], "verdict": result["verdict"],
        "message": result["message"].splitlines()[0][:160] if result["message"] else "",
        "duration_s": result["duration_s"], "requirements": result["requirements"]}))


def after_timeout(state: RunState, item: pytest.Item, phases: dict, result: dict) -> None:
    """A case that timed out: probe its target (a target that stopped answering ends the remaining cases at
    once, ``health.py``); a case ended because of that carries the probe as evidence."""
    exceptions = [p[1].value for p in phases.values() if p[1] is not None]
    stopped = next((e for e in exceptions if isinstance(e, TargetStopped)), None)
    if stopped is not None:
        result["evidence"]["target_probe"] = stopped.probe
        return
    if not timed_out(exceptions, result["verdict"], result["duration_s"], state.plan.deadline_s):
        return
    spec = case_param(item)[0]
    probe = state.health.after_case(spec, state.targets.get(spec), result["check"])
    if probe is not None:
        result["evidence"]["target_probe"] = scrub(probe, Redactor(credential_forms(state.accounts())))


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    """Silence pytest's own progress letters in a lemonade run; the run prints verdict lines instead."""
    if state_of(config) is None:
        return None
    if report.when == "call":
        return report.outcome, "", ""
    if report.failed:
        return "error", "", ""
    if report.skipped:
        return "skipped", "", ""
    return "", "", ""


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = state_of(session.config)
    if state is not None:
        state.stop()
        if session.config.stash.get(TERMINATED, False):
            os._exit(2)  # every result is on disk already (appended and synced per case)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """An interrupted worker, its targets stopped and the controller told (xdist sent 'workerfinished' when the
    session finished), leaves at once: the interpreter's own shutdown takes seconds (garbage collection of
    everything the cases made) that an interrupted run should not wait for. Any other xdist worker about to exit
    leaves every object it holds to the exit itself: without this the interpreter's final garbage collection walks
    them all (mitmproxy, pytest, the checks), up to a second per worker while the run waits for its last one."""
    if config.stash.get(INTERRUPTED, False):
        os._exit(2)
    if state_of(config) is not None and hasattr(config, "workerinput"):
        import gc

        gc.freeze()
