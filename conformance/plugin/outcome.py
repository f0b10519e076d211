"""From a finished case to its Result: verdicts per requirement, evidence, and no credential in any string.

Everything a result carries leaves the process (results.d, results.json, JUnit, HTML, the console line), so
every string of it, exception texts included, passes through the case's redactor here: a check that quotes
a LOGIN command or a password in a message still writes no password.
"""

from __future__ import annotations

import base64
import shlex
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pytest

from ..catalog import LEVELS
from ..protocols.imapwire import quote
from ..results import Result
from ..targets import Account
from ..transcript import Redactor
from ..verdicts import Phase, Softer, judge
from .fixtures import CASE
from .selection import case_param, check_id, client_of, requirements_of, rerun_command
from .state import RunState

if TYPE_CHECKING:
    from ..case import CaseContext

PHASES = pytest.StashKey[dict]()


def credential_forms(accounts: Iterable[Account]) -> set[str]:
    """Each password as it may appear in text: itself, IMAP-quoted, and inside SASL PLAIN and HTTP Basic
    (the redactor adds the base64 of each form, which covers the password's own base64)."""
    forms: set[str] = set()
    for a in accounts:
        if not a.password:
            continue
        user, pw = a.username, a.password
        forms |= {pw, quote(pw)}
        for clear in (f"\0{user}\0{pw}", f"{user}\0{user}\0{pw}", f"{user}:{pw}"):
            forms.add(base64.b64encode(clear.encode()).decode())
    return forms


def scrub(value: Any, redactor: Redactor) -> Any:
    """``value`` with every string in it (keys too) passed through ``redactor.scrub``."""
    if isinstance(value, str):
        return redactor.scrub(value)
    if isinstance(value, dict):
        return {scrub(k, redactor): scrub(v, redactor) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, redactor) for v in value]
    return value


def strictest(levels: list[str]) -> str:
    """The result's level: the strictest of its requirements' (PROFILE counts as MUST-like)."""
    level = min(levels, key=LEVELS.index) if levels else ""
    if "PROFILE" in levels:
        level = "PROFILE" if "MUST" not in levels else "MUST"
    return level


def path_failure(ctx: CaseContext | None) -> str | None:
    """What broke in the case's intermediaries (``path.harness_errors``, recorded when an addon raised), if
    anything: a server judged through a broken path was not judged."""
    errors = getattr(getattr(ctx, "path", None), "harness_errors", None) or []
    if not errors:
        return None
    return "IntermediaryFailed: the suite's intermediary failed during the case: " + "; ".join(map(str, errors[:3]))


def build_result(state: RunState, item: pytest.Item, phases: dict) -> dict[str, Any]:
    """The result of one case as it is written (a dict, redacted), from the pytest phases it went through."""
    ctx: CaseContext | None = item.stash.get(CASE, None)
    spec, sc = case_param(item)
    reqs = requirements_of(item)
    profiles = [p for p in state.profiles if set(reqs) & set(state.catalog.profiles[p].ids)]
    levels = {r: state.catalog.level(r, profiles) for r in reqs}
    seen = [Phase(when, phases[when][1].value if phases[when][1] is not None else None)
            for when in ("setup", "call", "teardown") if when in phases]
    softer = Softer(ctx.outcome.non_strict, ctx.outcome.informational, ctx.outcome.summary) if ctx else None
    verdicts = judge(reqs, levels, seen, ctx.judgement if ctx else None, softer, path_failure(ctx))
    evidence: dict[str, Any] = {}
    if ctx is not None:
        evidence = {"transcript": ctx.transcript.as_list(), "measurements": ctx.measurements,
                    "scenario_params": {e.name: dict(e.params) for e in ctx.scenario.elements}}
        if ctx.transcript.dropped:
            evidence["transcript_dropped"] = ctx.transcript.dropped
        evidence.update(ctx.attachments)
        if ctx.leftovers:  # what the case created and could not remove (results.json lists them all)
            evidence["leftovers"] = [x.as_dict() for x in ctx.leftovers]
        if verdicts.verdict == "fail" and ctx.outcome.non_strict:
            evidence["should_violations"] = ctx.outcome.non_strict
    name = state.target_names.get(spec, spec)
    result = Result(
        check=check_id(item.function), requirements=reqs, target=name, scenario=str(sc),
        verdict=verdicts.verdict, message=verdicts.message, requirement_verdicts=verdicts.as_dict(),
        subject=client_of(item) or name, role="client" if client_of(item) else "server",
        duration_s=round(sum(p[2] for p in phases.values()), 3), evidence=evidence,
        level=strictest(list(levels.values())), profiles=profiles, nodeid=item.nodeid,
        rerun=rerun_command(state, item), started=round(ctx.started if ctx else time.time(), 3),
        worker=state.writer.worker)
    accounts = list(state.accounts()) + (list(ctx.target.accounts) if ctx else [])
    secrets = credential_forms(accounts) | (ctx.transcript.secrets if ctx else set())
    return scrub(result.as_dict(), Redactor(secrets))


def crash_result(state: RunState, case: dict[str, Any], why: BaseException) -> dict[str, Any]:
    """The result of a planned case (an entry of planned.json) whose pytest worker ended while it ran: ``error``
    for each requirement, saying so. Made by the controller, which has no item of the case, only the plan."""
    reqs = list(case.get("requirements", []))
    profiles = [p for p in state.profiles if set(reqs) & set(state.catalog.profiles[p].ids)]
    levels = {r: state.catalog.level(r, profiles) for r in reqs}
    verdicts = judge(reqs, levels, [Phase("call", why)], None, None, None)
    spec = next((sp for sp, name in state.target_names.items() if name == case["target"]), case["target"])
    rerun = " ".join([state.rerun_prefix, *(shlex.quote(p) for p in (
        "--target", spec, "--scenario", case["scenario"], "--depth", state.depth,
        "-k", case["nodeid"].split("::")[-1].split("[")[0]))])
    result = Result(
        check=case["check"], requirements=reqs, target=case["target"], scenario=case["scenario"],
        verdict=verdicts.verdict, message=verdicts.message, requirement_verdicts=verdicts.as_dict(),
        subject=case.get("subject", case["target"]), role=case.get("role", "server"), duration_s=0.0, evidence={},
        level=strictest(list(levels.values())), profiles=profiles, nodeid=case["nodeid"],
        rerun=rerun, started=round(time.time(), 3), worker=state.writer.worker)
    return scrub(result.as_dict(), Redactor(credential_forms(state.accounts())))
