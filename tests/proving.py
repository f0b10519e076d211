"""Proving tests: the registry showing that every check can fail, each requirement for its own reason.

A proving test drives a check against a peer that breaks one requirement on purpose (a fake in ``tests/fakes/``, a
rewriting intermediary, a badly configured real server) and says so twice:

- statically, with one marker per check and requirement it proves: ``@pytest.mark.proves("family/check", "req.id")``
  (string literals, on the test function; ``tests/unit/test_every_check_proven.py`` reads them without importing the
  tests and fails when a check has none);
- at run time, through the ``prove`` fixture: ``prove(run, "family/check", "req.id", "words of the reason")`` asserts
  that the check's result judged that requirement ``fail`` (``non-strict`` for a SHOULD or MAY) with a message
  naming the reason, and records the proof. When the test body has passed, the fixture fails the test at teardown
  if a marker was never proven or a proof was made for a pair that is not marked, so a marker without an assertion
  behind it cannot count.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TESTS_DIR = Path(__file__).resolve().parent
STRICT = ("MUST", "PROFILE")
MARKER = "proves"

# Checks that judge no rule by design: their requirement asks for data, so every result is ``informational``, which
# never verifies a requirement (conformance/coverage.py). They need no proof of failure; the meta-test checks that
# they really only ever report (tests/unit/test_every_check_proven.py). Each entry says why.
DATA_ONLY = {
    "client/reachability": "client.http.reachability is the per-client reachability matrix (its catalog test: "
                           "'informational, drawn as a matrix'): which clients reach their mail behind https-only "
                           "or inspecting is data, not a rule a client breaks",
}


def all_checks() -> dict[str, list[str]]:
    """Every check the plugin collects (``family/name`` -> requirement ids), found the way pytest finds them: the
    ``test_*`` functions of the ``test_*`` modules under ``conformance/checks``."""
    import conformance.checks as root
    from conformance.plugin.selection import check_id, marker_args

    out: dict[str, list[str]] = {}
    for info in pkgutil.walk_packages(root.__path__, root.__name__ + "."):
        if not info.name.rsplit(".", 1)[-1].startswith("test_"):
            continue
        module = importlib.import_module(info.name)
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("test_") and fn.__module__ == module.__name__:
                out[check_id(fn)] = [str(r) for r in marker_args(fn, "requirement")]
    return out


@dataclass(frozen=True)
class Marked:
    """One ``proves`` marker: where it is, what it claims, and whether its test takes the ``prove`` fixture."""

    test: str  # path::function
    check: str
    requirement: str
    takes_prove: bool


def _marker_args(decorator: ast.expr) -> list[ast.expr] | None:
    """The arguments of ``pytest.mark.proves(...)`` (or ``mark.proves(...)``), else None."""
    if not isinstance(decorator, ast.Call):
        return None
    f = decorator.func
    if isinstance(f, ast.Attribute) and f.attr == MARKER and isinstance(f.value, ast.Attribute) and f.value.attr == "mark":
        return list(decorator.args)
    return None


def proving_markers(directory: Path = TESTS_DIR) -> tuple[list[Marked], list[str]]:
    """Every ``proves`` marker under ``directory`` (read from the source, nothing imported), and the problems found
    (a marker whose arguments are not two string literals)."""
    marked: list[Marked] = []
    problems: list[str] = []
    for path in sorted(directory.rglob("test_*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            params = {a.arg for a in node.args.args + node.args.kwonlyargs}
            where = f"{path.relative_to(directory.parent)}::{node.name}"
            for dec in node.decorator_list:
                args = _marker_args(dec)
                if args is None:
                    continue
                if len(args) != 2 or not all(isinstance(a, ast.Constant) and isinstance(a.value, str) for a in args):
                    problems.append(f"{where}: @pytest.mark.proves takes two string literals (check id, requirement id)")
                    continue
                marked.append(Marked(where, args[0].value, args[1].value, "prove" in params))
    return marked, problems


@dataclass
class Proofs:
    """What one proving test claims (its markers) and what it proved; ``__call__`` is the ``prove`` fixture's value."""

    claimed: set[tuple[str, str]]
    levels: dict[str, str]
    done: set[tuple[str, str]] = field(default_factory=set)
    unclaimed: list[str] = field(default_factory=list)

    def __call__(self, run: Any, check: str, requirement: str, reason: str | Iterable[str], *,
                 target: str | None = None, scenario: str | None = None, verdict: str | None = None) -> dict:
        """Assert that ``check`` (on ``target`` under ``scenario`` when given) judged ``requirement`` ``verdict``
        (default: fail, non-strict for a SHOULD or MAY) with every word of ``reason`` in that requirement's
        message; record the proof. ``run`` is a CliRun (tests/conftest.py), a results.json dict or a result.
        Returns the result."""
        result = find_result(run, check, target=target, scenario=scenario)
        rv = requirement_verdict(result, requirement)
        expected = verdict or ("fail" if self.levels.get(requirement, "MUST") in STRICT else "non-strict")
        words = [reason] if isinstance(reason, str) else list(reason)
        assert rv["verdict"] == expected, (
            f"{check} judged {requirement} {rv['verdict']!r} (expected {expected!r}): {rv['message']!r}\n"
            f"the result: {result['verdict']} {result['message']!r}")
        missing = [w for w in words if w not in rv["message"]]
        assert not missing, f"{check} failed {requirement}, but its message lacks {missing}: {rv['message']!r}"
        if (check, requirement) not in self.claimed:
            self.unclaimed.append(f"{check} {requirement}")
        self.done.add((check, requirement))
        return result

    def problems(self) -> list[str]:
        """Markers never proven and proofs without a marker (empty when the test kept its word)."""
        out = [f"marked @pytest.mark.proves({c!r}, {r!r}) but never proven with prove(...)"
               for c, r in sorted(self.claimed - self.done)]
        out += [f"proved {u} without a @pytest.mark.proves marker for it" for u in self.unclaimed]
        return out


def _results_of(run: Any) -> list[dict]:
    if hasattr(run, "results") and not isinstance(run, dict):
        return run.results["results"]
    if isinstance(run, dict) and "results" in run:
        return run["results"]
    if isinstance(run, dict) and "check" in run:
        return [run]
    raise TypeError(f"prove() takes a CliRun, a results.json dict or a result, not {type(run).__name__}")


def find_result(run: Any, check: str, *, target: str | None = None, scenario: str | None = None) -> dict:
    """The one result of ``check`` (on ``target``, under ``scenario``) in ``run``."""
    results = _results_of(run)
    found = [r for r in results if r["check"] == check and (target is None or r["target"] == target)
             and (scenario is None or r["scenario"] == scenario)]
    have = sorted({f"{r['check']}|{r['target']}|{r['scenario']}" for r in results})
    assert found, f"no result for {check} (target {target}, scenario {scenario}); have {have}"
    assert len(found) == 1, f"{len(found)} results for {check}: give target= or scenario= ({have})"
    return found[0]


def requirement_verdict(result: dict, requirement: str) -> dict[str, str]:
    """{verdict, message} the result gave ``requirement`` (a result without per-requirement verdicts is a defect)."""
    rv = result.get("requirement_verdicts") or {}
    assert requirement in rv, (f"{result['check']} has no verdict for {requirement} "
                               f"(its requirement_verdicts: {sorted(rv)})")
    return rv[requirement]


def levels() -> dict[str, str]:
    """The catalog's level of every requirement."""
    from conformance.catalog import load_catalog

    return {rid: r.level for rid, r in load_catalog().requirements.items()}


def claims(markers: Iterator[Any]) -> set[tuple[str, str]]:
    """(check, requirement) pairs of the ``proves`` markers of a pytest item."""
    return {(str(m.args[0]), str(m.args[1])) for m in markers}


def run_check(case: Any, fn: Any, *args: Any) -> dict:
    """Run a check function on a started CaseContext and judge it the way the plugin does; the result as a dict
    (check, target, scenario, verdict, message, requirement_verdicts) that ``prove`` reads."""
    from conformance.verdicts import Phase, Softer, judge

    exc: BaseException | None = None
    try:
        fn(case, *args)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as e:  # noqa: BLE001 - every outcome of the check is judged, as the plugin does
        exc = e
    levels = {rid: case.catalog.level(rid, case.profiles) for rid in case.requirements}
    softer = Softer(case.outcome.non_strict, case.outcome.informational, case.outcome.summary)
    v = judge(case.requirements, levels, [Phase("call", exc)], case.judgement, softer)
    return {"check": case.check, "target": case.target.name, "scenario": str(case.scenario), "verdict": v.verdict,
            "message": v.message, "requirement_verdicts": v.as_dict()}
