"""The pytest plugin: requirement markers, target/scenario parametrisation, case fixtures, verdicts, results.

Loaded by ``lemonade run`` (``-p conformance.plugin``). Each check is a test function marked with
``@pytest.mark.requirement("id", ...)``; it is parametrised over the selected targets and the scenarios it
is meaningful under, gets a ``case`` fixture, and its outcome becomes a verdict appended to results.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .catalog import LEVELS, STRICT_LEVELS, Catalog, load_catalog
from .errors import BadInput, ConformanceFailure, HarnessError, IntermediaryFailed, NotApplicable
from .intermediaries.scenario import Scenario, parse_scenario
from .providers import provider_for, target_name
from .results import Result, ResultsWriter

if TYPE_CHECKING:  # imported lazily: case.py pulls in mitmproxy, which xdist's controller never needs
    from .case import CaseContext

DEFAULT_USES = ("imap",)


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("lemonade", "lemonade conformance")
    g.addoption("--lemonade-target", action="append", default=[], help="target name or target file (repeatable)")
    g.addoption("--lemonade-profile", action="append", default=[], help="profile to select checks by (repeatable)")
    g.addoption("--lemonade-scenario", action="append", default=[], help="scenario string (repeatable)")
    g.addoption("--lemonade-depth", default="quick", choices=("quick", "full"))
    g.addoption("--lemonade-output", default=None, help="run directory (results.d/ is appended to)")
    g.addoption("--lemonade-shard", default=None, help="i/n: run only this deterministic share of the cases")
    g.addoption("--lemonade-rerun-prefix", default="lemonade run", help="command shown to rerun one case")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "requirement(*ids): requirement ids this check verifies (must exist in profiles/)")
    config.addinivalue_line("markers", "uses(*endpoints): endpoints the check needs (imap, imaps, submission, jmap)")
    config.addinivalue_line("markers", "scenarios(*specs): scenarios the check is meaningful under (default: direct)")
    config.addinivalue_line("markers", "depth(name): only run at this depth; skipped with the command otherwise")
    if not config.getoption("--lemonade-output", None):
        return
    state = RunState(config)
    config.stash[STATE] = state
    config.pluginmanager.register(_Sharding(), "lemonade-sharding")


class RunState:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        try:
            self.catalog: Catalog = load_catalog()
        except BadInput as e:
            raise pytest.UsageError(str(e)) from None
        self.depth = config.getoption("--lemonade-depth")
        self.target_specs = config.getoption("--lemonade-target") or ["dovecot"]
        self.profiles = config.getoption("--lemonade-profile") or sorted(self.catalog.profiles)
        for p in self.profiles:
            try:
                self.catalog.profile(p)
            except BadInput as e:
                raise pytest.UsageError(str(e)) from None
        try:
            self.scenarios_given = [parse_scenario(s, self.depth) for s in config.getoption("--lemonade-scenario")]
            self.target_names = {spec: target_name(spec) for spec in self.target_specs}
        except BadInput as e:
            raise pytest.UsageError(str(e)) from None
        self.output = Path(config.getoption("--lemonade-output"))
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        self.writer = ResultsWriter(self.output / "results.d", worker)
        self.providers: dict[str, Any] = {}
        self.targets: dict[str, Any] = {}
        self.target_errors: dict[str, str] = {}
        self.rerun_prefix = config.getoption("--lemonade-rerun-prefix")

    def target(self, spec: str):
        if spec in self.target_errors:
            raise HarnessError(self.target_errors[spec])
        if spec not in self.targets:
            try:
                prov = provider_for(spec, self.depth, self.output / "logs")
                self.providers[spec] = prov
                self.targets[spec] = prov.start()
                name = self.target_names[spec]
                info = self.output / "results.d" / f"target-{name}-{self.writer.worker}.json"
                info.write_text(json.dumps(self.targets[spec].describe(), indent=1, default=str))
            except (HarnessError, BadInput, OSError) as e:
                self.target_errors[spec] = f"target {spec} could not be started: {e}"
                raise HarnessError(self.target_errors[spec]) from e
        return self.targets[spec]

    def stop(self) -> None:
        for prov in self.providers.values():
            try:
                prov.stop()
            except Exception:  # noqa: BLE001
                pass


STATE = pytest.StashKey[RunState]()


def _state(config: pytest.Config) -> RunState | None:
    return config.stash.get(STATE, None)


def _marker_args(obj, name: str) -> list[Any]:
    out: list[Any] = []
    for m in getattr(obj, "pytestmark", []) if not hasattr(obj, "iter_markers") else obj.iter_markers(name):
        if getattr(m, "name", None) == name:
            out.extend(m.args)
    return out


def check_id(function) -> str:
    module = function.__module__.rsplit(".", 2)
    family = module[-2] if len(module) >= 2 else "checks"
    return f"{family}/{function.__name__.removeprefix('test_')}"


def scenarios_for(state: RunState, definition) -> list[Scenario]:
    uses = _marker_args(definition, "uses") or list(DEFAULT_USES)
    pinned = [parse_scenario(s, state.depth) for s in _marker_args(definition, "scenarios")] or [parse_scenario("direct")]
    if not state.scenarios_given:
        chosen = pinned
    else:
        pinned_names = {e.name for s in pinned for e in s.elements} | ({"direct"} if any(s.is_direct for s in pinned) else set())
        has_pins = bool(_marker_args(definition, "scenarios"))
        chosen = []
        for s in state.scenarios_given:
            names = {"direct"} if s.is_direct else {e.name for e in s.elements}
            if not has_pins or names & pinned_names:
                chosen.append(s)
    return [s for s in chosen if all(s.supports(u) for u in uses)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    state = _state(metafunc.config)
    if state is None or "lemonade_case_param" not in metafunc.fixturenames:
        return
    params, ids = [], []
    for spec in state.target_specs:
        for sc in scenarios_for(state, metafunc.definition):
            params.append((spec, sc))
            ids.append(f"{state.target_names[spec]}|{sc}")
    metafunc.parametrize("lemonade_case_param", params, ids=ids, indirect=True)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    state = _state(config)
    if state is None:
        return
    unknown = []
    selected_ids = state.catalog.ids_for(state.profiles)
    keep, drop = [], []
    for item in items:
        reqs = [a for m in item.iter_markers("requirement") for a in m.args]
        if not reqs:
            unknown.append(f"{item.nodeid}: no @pytest.mark.requirement")
            continue
        missing = [r for r in reqs if r not in state.catalog.requirements]
        if missing:
            unknown.append(f"{item.nodeid}: unknown requirement id(s) {', '.join(missing)}")
            continue
        callspec = getattr(item, "callspec", None)
        if callspec is not None and not isinstance(callspec.params.get("lemonade_case_param"), tuple):
            drop.append(item)  # no selected scenario carries every endpoint the check uses: nothing to run
            continue
        (keep if set(reqs) & selected_ids else drop).append(item)
    if unknown:
        raise pytest.UsageError("checks name requirements that are not in profiles/:\n  " + "\n  ".join(unknown))
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep


class _Sharding:
    """--shard i/n, applied after every other selection (profiles, -k, -m), so the shards are balanced."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        shard = config.getoption("--lemonade-shard")
        if not shard or _state(config) is None:
            return
        keep, drop = list(items), []
        try:
            i, n = (int(x) for x in shard.split("/"))
            assert 1 <= i <= n
        except (ValueError, AssertionError):
            raise pytest.UsageError(f"--shard {shard!r}: expected i/n with 1 <= i <= n") from None
        # order the selected cases by a hash of their id, then deal them out in turn: deterministic for the
        # same selection (every shard of a job matrix runs the same command but --shard), and balanced
        # (shard sizes differ by at most one; a plain hash modulo n can be lopsided on small selections)
        dealt = sorted(keep, key=lambda it: hashlib.sha256(it.nodeid.encode()).hexdigest())
        mine = {id(it) for k, it in enumerate(dealt) if k % n == i - 1}
        drop += [it for it in keep if id(it) not in mine]
        keep = [it for it in keep if id(it) in mine]
        if drop:
            config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture
def lemonade_case_param(request: pytest.FixtureRequest):
    return request.param


@pytest.fixture
def target(request: pytest.FixtureRequest, lemonade_case_param):
    state = _state(request.config)
    return state.target(lemonade_case_param[0])


@pytest.fixture
def scenario(lemonade_case_param) -> Scenario:
    return lemonade_case_param[1]


@pytest.fixture
def case(request: pytest.FixtureRequest, target, scenario):
    state = _state(request.config)
    item = request.node
    reqs = [a for m in item.iter_markers("requirement") for a in m.args]
    depth_only = _marker_args(item, "depth")
    if depth_only and state.depth not in depth_only:
        pytest.skip(f"needs --depth {depth_only[0]} (long observation); run: {rerun_command(state, item, depth_only[0])}")
    from .case import CaseContext

    ctx = CaseContext(target=target, scenario=scenario, catalog=state.catalog, requirements=reqs,
                      profiles=[p for p in state.profiles if set(reqs) & set(state.catalog.profiles[p].ids)],
                      depth=state.depth, check=check_id(item.function))
    item.stash[CASE] = ctx
    ctx.start()
    yield ctx
    ctx.close()


@pytest.fixture
def path(case):
    return case.path


CASE = pytest.StashKey["CaseContext"]()
PHASES = pytest.StashKey[dict]()


def rerun_command(state: RunState, item: pytest.Item, depth: str | None = None) -> str:
    spec, sc = item.callspec.params.get("lemonade_case_param", ("dovecot", "direct")) if hasattr(item, "callspec") else ("dovecot", "direct")
    parts = [state.rerun_prefix, "--target", spec, "--scenario", str(sc), "--depth", depth or state.depth,
             "-k", item.originalname if hasattr(item, "originalname") else item.name]
    return " ".join(shlex.quote(p) if i else p for i, p in enumerate(parts))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    state = _state(item.config)
    if state is None:
        return
    phases = item.stash.setdefault(PHASES, {})
    phases[call.when] = (report.outcome, call.excinfo, call.duration)
    if call.when != "teardown":
        return
    result = build_result(state, item, phases)
    try:
        state.writer.append(result)
    except OSError as e:  # the run directory vanished: say so, keep going
        item.config.issue_config_time_warning(pytest.PytestWarning(f"cannot append result: {e}"), stacklevel=2)
    report.user_properties.append(("lemonade_result", {
        "check": result.check, "target": result.target, "scenario": result.scenario, "verdict": result.verdict,
        "message": result.message.splitlines()[0][:160] if result.message else "", "duration_s": result.duration_s,
        "requirements": result.requirements}))


def _exc_message(excinfo) -> str:
    e = excinfo.value
    msg = str(e).strip()
    if isinstance(e, AssertionError) and not msg:
        msg = "assertion failed: " + "".join(traceback.format_exception_only(type(e), e)).strip()
    if isinstance(e, AssertionError) and "\nassert " in msg:
        msg = msg.split("\nassert ", 1)[0].strip()
    return msg or type(e).__name__


def classify(excinfo) -> str:
    """Who is at fault for an exception raised by a check or fixture."""
    e = excinfo.value
    if isinstance(e, NotApplicable):
        return "not-applicable"
    if isinstance(e, pytest.skip.Exception):
        return "skipped"
    if isinstance(e, (ConformanceFailure, AssertionError)):
        return "fail"
    return "error"


def build_result(state: RunState, item: pytest.Item, phases: dict) -> Result:
    ctx: CaseContext | None = item.stash.get(CASE, None)
    spec, sc = item.callspec.params["lemonade_case_param"]
    reqs = [a for m in item.iter_markers("requirement") for a in m.args]
    profiles = [p for p in state.profiles if set(reqs) & set(state.catalog.profiles[p].ids)]
    levels = [state.catalog.level(r, profiles) for r in reqs]
    level = min(levels, key=LEVELS.index) if levels else ""
    if "PROFILE" in levels:
        level = "PROFILE" if "MUST" not in levels else "MUST"
    verdict, message = "pass", ""
    duration = sum(p[2] for p in phases.values())
    for when in ("setup", "call", "teardown"):
        if when not in phases:
            continue
        outcome, excinfo, _ = phases[when]
        if excinfo is None:
            continue
        kind = classify(excinfo)
        if when != "call" and kind == "fail":
            # a server failure while a fixture set up or tore down the case is still the server's
            kind = "fail" if isinstance(excinfo.value, ConformanceFailure) else "error"
        if verdict != "pass" and not isinstance(excinfo.value, IntermediaryFailed):
            break  # the first verdict stands; teardown trouble is secondary, unless the path itself failed
        overridden = f" (the check itself had ended {verdict}: {message.splitlines()[0][:200]})" \
            if verdict != "pass" else ""
        verdict, message = kind, _exc_message(excinfo) + overridden
        if kind == "error":
            message = f"{type(excinfo.value).__name__}: {message}"
    if verdict == "fail" and level and level not in STRICT_LEVELS:
        verdict = "non-strict"
    if ctx is not None and verdict == "pass":
        if ctx.outcome.non_strict:
            verdict, message = "non-strict", "; ".join(ctx.outcome.non_strict)
        elif ctx.outcome.informational:
            verdict, message = "informational", "; ".join(ctx.outcome.informational)
        else:
            message = ctx.outcome.summary or "all assertions held"
    evidence: dict[str, Any] = {}
    if ctx is not None:
        evidence = {"transcript": ctx.transcript.as_list(), "measurements": ctx.measurements,
                    "scenario_params": {e.name: dict(e.params) for e in ctx.scenario.elements}}
        if ctx.transcript.dropped:
            evidence["transcript_dropped"] = ctx.transcript.dropped
        evidence.update(ctx.attachments)
        if verdict in ("fail", "non-strict") and ctx.outcome.non_strict and verdict == "fail":
            evidence["should_violations"] = ctx.outcome.non_strict
    target_label = state.target_names.get(spec, spec)
    return Result(
        check=check_id(item.function), requirements=reqs, target=target_label, scenario=str(sc),
        verdict=verdict, message=message, duration_s=round(duration, 3), evidence=evidence, level=level,
        profiles=profiles, nodeid=item.nodeid, rerun=rerun_command(state, item),
        started=round(ctx.started if ctx else time.time(), 3),
    )


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    """Silence pytest's own progress letters in a lemonade run; the run prints verdict lines instead."""
    if _state(config) is None:
        return None
    if report.when == "call":
        return report.outcome, "", ""
    if report.failed:
        return "error", "", ""
    if report.skipped:
        return "skipped", "", ""
    return "", "", ""


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = _state(session.config)
    if state is not None:
        state.stop()

