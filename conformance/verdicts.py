"""Verdicts: the vocabulary, who is at fault for an exception, and how requirement verdicts make a result's.

A check judges each requirement it names (``case.require``, ``case.requirement_not_applicable``,
``case.requirement_error``; recorded in a :class:`Judgement`). An exception that ends the check gives its
verdict to the requirements it names (``ConformanceFailure(..., requirement="id")``), or to every requirement
not judged yet when it names none. :func:`judge` turns what the check recorded and what pytest saw in each
phase into one verdict per requirement (a failed SHOULD/MAY becomes non-strict) and the result's own
verdict: the worst of them, in :data:`SEVERITY` order.

Nothing here touches pytest objects or files: the plugin hands over exceptions and phase names; results,
coverage, baselines, diff, merge and the report import the vocabulary from here.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ConformanceFailure, HarnessError, IntermediaryFailed, NotApplicable

# every verdict, in the order counts and tables show them
VERDICTS = ("pass", "fail", "non-strict", "informational", "not-applicable", "error", "xfail", "xpass", "skipped")

# worst first: a result's verdict is the worst of its requirement verdicts. error outranks fail because a
# harness fault anywhere in a case makes the case's other findings doubtful and the run's exit code is 2;
# xpass (a baseline entry that no longer fails) fails a run like fail; non-strict (a SHOULD violated) is
# worse than a known failure, which is excused by a baseline entry with a reason; informational (observed,
# no rule) verifies nothing, so it is worse than pass; not-applicable and skipped judged nothing.
SEVERITY = ("error", "fail", "xpass", "non-strict", "xfail", "informational", "pass", "not-applicable", "skipped")
FAILING = ("fail", "xpass")  # verdicts that make a run non-conformant (exit 1)
NOTHING_VERIFIED = frozenset({"not-applicable", "skipped"})  # a profile with only these verdicts has no verdict
ROLES = ("server", "client")

STRICT_LEVELS = ("MUST", "PROFILE")  # a failure at these levels is fail; at SHOULD or MAY it is non-strict


def severity(verdict: str) -> int:
    """Position in :data:`SEVERITY` (0 is worst); an unknown word counts as error, never as a pass."""
    return SEVERITY.index(verdict) if verdict in SEVERITY else 0


def worst(verdicts: Iterable[str], empty: str = "skipped") -> str:
    return min(verdicts, key=severity, default=empty)


def where_of(r: Mapping[str, Any]) -> str:
    """Where a result was found: the target's name for a server; ``client@partner-server`` for a client (two
    clients against one server are two columns, two cases)."""
    if r.get("role", "server") == "client":
        return f"{r.get('subject') or '?'}@{r['target']}"
    return r["target"]


def case_id(r: Mapping[str, Any]) -> str:
    """The stable key of a result: check | where | scenario (see :func:`where_of`)."""
    return f"{r['check']}|{where_of(r)}|{r['scenario']}"


def subject_of(r: Mapping[str, Any]) -> str:
    """What a result judges: the client's name for clients, the target's for servers (results of schema 1)."""
    return r.get("subject") or r["target"]


def requirement_verdicts(r: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """{requirement id: {"verdict", "message"}} of a result; a schema-1 result gives its one verdict to all."""
    rv = r.get("requirement_verdicts")
    if isinstance(rv, Mapping) and rv:
        return {rid: {"verdict": v.get("verdict", "error"), "message": v.get("message", "")} for rid, v in rv.items()}
    return {rid: {"verdict": r["verdict"], "message": r.get("message", "")} for rid in r.get("requirements", [])}


# -- who is at fault ------------------------------------------------------------------------------------
def classify(exc: BaseException, when: str = "call") -> str:
    """The verdict an exception gives, raised in pytest phase ``when`` (setup, call, teardown).

    ``assert`` and ConformanceFailure are the server's fault (fail); outside the call only a
    ConformanceFailure is (a fixture's plain assert is a harness bug); NotApplicable and pytest.skip say
    what was not judged; anything else is the harness's (error).
    """
    import pytest

    if isinstance(exc, NotApplicable):
        return "not-applicable"
    if isinstance(exc, pytest.skip.Exception):
        return "skipped"
    if isinstance(exc, ConformanceFailure):
        return "fail"
    if isinstance(exc, AssertionError):
        return "fail" if when == "call" else "error"
    return "error"


def exception_message(exc: BaseException, kind: str) -> str:
    msg = str(exc).strip()
    if isinstance(exc, AssertionError) and not msg:
        msg = "assertion failed: " + "".join(traceback.format_exception_only(type(exc), exc)).strip()
    if isinstance(exc, AssertionError) and "\nassert " in msg:
        msg = msg.split("\nassert ", 1)[0].strip()
    msg = msg or type(exc).__name__
    return f"{type(exc).__name__}: {msg}" if kind == "error" else msg


def named_by(exc: BaseException) -> tuple[str, ...]:
    return tuple(getattr(exc, "requirements", ()) or ())


# -- what a check recorded ---------------------------------------------------------------------------------
@dataclass
class RequirementVerdict:
    verdict: str
    message: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"verdict": self.verdict, "message": self.message}


@dataclass
class Judgement:
    """The verdicts a check gave requirements it names, as it gave them (the worst one per id stands)."""

    named: tuple[str, ...]
    judged: dict[str, RequirementVerdict] = field(default_factory=dict)
    bugs: list[str] = field(default_factory=list)  # requirements judged that the marker does not name

    def record(self, rid: str, verdict: str, message: str = "") -> None:
        if rid not in self.named:
            bug = (f"the check judged requirement '{rid}', which its requirement marker does not name "
                   f"({', '.join(self.named)}): a bug in the check")
            self.bugs.append(bug)
            raise HarnessError(bug)
        prev = self.judged.get(rid)
        if prev is None or severity(verdict) < severity(prev.verdict):
            self.judged[rid] = RequirementVerdict(verdict, message)
        elif prev.verdict == verdict and message and message not in prev.message.split("; "):
            prev.message = f"{prev.message}; {message}" if prev.message else message

    def unjudged(self) -> list[str]:
        return [r for r in self.named if r not in self.judged]


@dataclass
class Phase:
    """What pytest saw in one phase of a case: its name and the exception that ended it, if any."""

    when: str  # setup, call, teardown
    exc: BaseException | None = None


@dataclass
class Softer:
    """Outcomes a check marked without naming a requirement (legacy ``case.non_strict``/``informational``):
    they apply to every requirement the check did not judge itself."""

    non_strict: Sequence[str] = ()
    informational: Sequence[str] = ()
    summary: str = ""


@dataclass
class Verdicts:
    verdict: str
    message: str
    requirements: dict[str, RequirementVerdict]

    def as_dict(self) -> dict[str, dict[str, str]]:
        return {rid: v.as_dict() for rid, v in self.requirements.items()}


def judge(named: Sequence[str], levels: Mapping[str, str], phases: Sequence[Phase],
          judgement: Judgement | None = None, softer: Softer | None = None,
          path_failure: str | None = None) -> Verdicts:
    """One verdict per named requirement, and the result's (the worst), from what the check recorded and the
    exceptions of its phases.

    - The first phase that raised decides, with two exceptions at teardown: trouble there after the check
      already found something wrong stays secondary (else it also puts the check's passes in doubt); and an
      :class:`IntermediaryFailed` (the suite's own path broke) turns every requirement into error: a server
      judged through a broken intermediary was not judged.
    - An exception gives its verdict to the requirements it names (``requirement=``), else to every
      requirement not judged yet. Requirements left unjudged after an exception that named others were never
      reached: skipped, with the reason.
    - A check that returned normally gives its unjudged requirements pass (or the legacy non-strict or
      informational it marked without a requirement).
    - fail at a level other than MUST/PROFILE becomes non-strict.

    ``path_failure``: what went wrong in the case's intermediaries (the path's own record of addon errors),
    when the plugin knows it whatever the exception at teardown: same effect as an IntermediaryFailed.
    """
    judgement = judgement or Judgement(tuple(named))
    softer = softer or Softer()
    found = {rid: RequirementVerdict(v.verdict, v.message) for rid, v in judgement.judged.items()}
    for bug in judgement.bugs:  # a check that caught the HarnessError still gets the bug reported
        for rid in named:
            _worsen(found, rid, "error", bug)
    raised = [p for p in phases if p.exc is not None]
    deciding = next(iter(raised), None)
    if deciding is not None and not (deciding.when == "teardown" and _found_trouble(found)):
        _apply_exception(deciding, named, found)  # (teardown trouble after a finding stays secondary)
    for rid in named:
        if rid not in found:
            found[rid] = _completed(softer)
    for rid, v in found.items():
        if v.verdict == "fail" and levels.get(rid) and levels[rid] not in STRICT_LEVELS:
            v.verdict = "non-strict"
    broken = next((p for p in raised if p.when == "teardown" and isinstance(p.exc, IntermediaryFailed)), None)
    if broken is not None or path_failure:
        _distrust(found, exception_message(broken.exc, "error") if broken is not None else str(path_failure))
    ordered = {rid: found[rid] for rid in named}
    verdict = worst(v.verdict for v in ordered.values()) if ordered else "error"
    return Verdicts(verdict, _message(ordered, verdict, softer), ordered)


def _apply_exception(deciding: Phase, named: Sequence[str], found: dict[str, RequirementVerdict]) -> None:
    """The exception that ended a phase gives its verdict: to the requirements it names, else to those not
    judged yet (at teardown also to those judged pass); requirements it left unjudged are skipped."""
    exc = deciding.exc
    assert exc is not None
    kind = classify(exc, deciding.when)
    message = exception_message(exc, kind)
    about = named_by(exc)
    unknown = [r for r in about if r not in named]
    if unknown:
        kind, message = "error", (f"the check's {type(exc).__name__} names requirement(s) {', '.join(unknown)} "
                                  f"that its marker does not name: a bug in the check ({message})")
        about = ()
    if about:
        targets = list(about)
    elif deciding.when == "teardown":  # the check returned: what it judged pass is put in doubt as well
        targets = [r for r in named if r not in found or found[r].verdict == "pass"]
    else:
        targets = [r for r in named if r not in found]
    for rid in targets:
        _worsen(found, rid, kind, message)
    if about and deciding.when != "teardown":
        reason = f"not judged: the check ended first ({kind} of {', '.join(about)}: {message})"
        for rid in named:
            found.setdefault(rid, RequirementVerdict("skipped", reason))


def _completed(softer: Softer) -> RequirementVerdict:
    """A requirement the check neither judged nor lost to an exception: it returned normally."""
    if softer.non_strict:
        return RequirementVerdict("non-strict", "; ".join(softer.non_strict))
    if softer.informational:
        return RequirementVerdict("informational", "; ".join(softer.informational))
    return RequirementVerdict("pass", "")


def _distrust(found: dict[str, RequirementVerdict], note: str) -> None:
    """The suite's own path broke: every verdict becomes error, keeping what the check had found."""
    for rid, v in found.items():
        was = ""
        if v.verdict != "pass":
            was = f" (the check had found: {v.verdict}{': ' + v.message if v.message else ''})"
        found[rid] = RequirementVerdict("error", f"{note}{was}")


def _worsen(found: dict[str, RequirementVerdict], rid: str, verdict: str, message: str) -> None:
    prev = found.get(rid)
    if prev is None or severity(verdict) < severity(prev.verdict):
        found[rid] = RequirementVerdict(verdict, message)


def _found_trouble(found: Mapping[str, RequirementVerdict]) -> bool:
    """Did the check already find something wrong (a verdict worse than pass)?"""
    return any(severity(v.verdict) < severity("pass") for v in found.values())


def _message(found: Mapping[str, RequirementVerdict], verdict: str, softer: Softer) -> str:
    """The result's one-line message: the messages of the requirements at the result's verdict (one message
    when they agree; each prefixed by its id when they differ)."""
    if verdict == "pass":
        return softer.summary or "all assertions held"
    at = [(rid, v.message) for rid, v in found.items() if v.verdict == verdict and v.message]
    distinct = list(dict.fromkeys(m for _, m in at))
    if len(distinct) <= 1:
        return distinct[0] if distinct else verdict
    return "; ".join(f"{rid}: {m}" for rid, m in at)
