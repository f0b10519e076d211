"""Running one check in this process against a ``Target`` made in the test (a fake whose relay is observable, a
catalog with test parameters), judged the way the plugin judges it.

``run_check`` returns a ``DirectRun`` shaped like a ``CliRun`` (``results`` with one result: check, target,
scenario, verdict, message, requirement_verdicts, evidence), so the same assertions read both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from conformance.case import CaseContext
from conformance.catalog import Catalog, load_catalog
from conformance.intermediaries.scenario import parse_scenario
from conformance.plugin.selection import check_id, marker_args
from conformance.targets import Target
from conformance.verdicts import Phase, Softer, judge


@dataclass
class DirectRun:
    results: dict[str, Any]
    case: CaseContext

    def result(self, check: str) -> dict:
        found = [r for r in self.results["results"] if r["check"] == check]
        assert found, f"no result for {check}"
        return found[0]


def run_check(fn: Callable, target: Target, *args: Any, depth: str = "quick", catalog: Catalog | None = None,
              scenario: str = "direct", profiles: list[str] | None = None) -> DirectRun:
    """Run check ``fn`` (the test function of a check module) with ``args`` after the case; judge it."""
    catalog = catalog or load_catalog()
    named = [str(r) for r in marker_args(fn, "requirement")]
    case = CaseContext(target=target, scenario=parse_scenario(scenario), catalog=catalog, requirements=named,
                       profiles=profiles or [], depth=depth, check=check_id(fn)).start()
    phases = []
    try:
        fn(case, *args)
        phases.append(Phase("call"))
    except Exception as e:  # noqa: BLE001 - judged below, as the plugin does
        phases.append(Phase("call", e))
    try:
        case.close()
        phases.append(Phase("teardown"))
    except Exception as e:  # noqa: BLE001
        phases.append(Phase("teardown", e))
    levels = {rid: catalog.requirements[rid].level for rid in named}
    out = case.outcome
    verdicts = judge(named, levels, phases, case.judgement, Softer(out.non_strict, out.informational, out.summary))
    result = {"check": check_id(fn), "target": target.name, "scenario": scenario, "verdict": verdicts.verdict,
              "message": verdicts.message, "requirement_verdicts": verdicts.as_dict(),
              "evidence": {"transcript": case.transcript.as_list(), "measurements": case.measurements,
                           **case.attachments}}
    return DirectRun({"results": [result]}, case)


def assert_judged(run, check: str, requirement: str, verdict: str, words: str = "", *, target: str | None = None,
                  scenario: str | None = None) -> dict:
    """The result of ``check`` (on ``target``/``scenario`` when given) judged ``requirement`` ``verdict`` with a
    message containing ``words``; returns the result. ``fail`` of a SHOULD or MAY requirement is expected as the
    ``non-strict`` it becomes."""
    if verdict == "fail" and load_catalog().requirements[requirement].level not in ("MUST", "PROFILE"):
        verdict = "non-strict"
    found = [r for r in run.results["results"] if r["check"] == check and (target is None or r["target"] == target)
             and (scenario is None or r["scenario"] == scenario)]
    assert found, (check, target, scenario, [(r["check"], r["target"], r["scenario"]) for r in run.results["results"]])
    r = found[0]
    rv = r["requirement_verdicts"].get(requirement)
    assert rv is not None, (check, requirement, r["requirement_verdicts"])
    assert rv["verdict"] == verdict and words in rv["message"], (check, target, requirement, rv)
    return r
