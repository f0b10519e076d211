"""The results contract: one Result per check x target x scenario, appended as each finishes, finalised once.

``results.d/<worker>.jsonl`` grows while a run goes (a killed run keeps what it did); ``finalize_doc`` merges
them with ``run.json``, ``write_results`` writes ``results.json``. Schema version 2 added ``requirement_verdicts``,
``subject`` and ``role`` to each result and ``deadline_s``/``case_timeout_s`` to the run; ``load_results`` still reads
version 1 files (upgrading them in memory), so ``report``, ``diff`` and ``merge`` work on old runs.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .verdicts import FAILING, NOTHING_VERIFIED, VERDICTS, case_id, requirement_verdicts, worst

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)


@dataclass
class Result:
    check: str  # stable id: family/function, e.g. capability/store_capabilities
    requirements: list[str]
    target: str  # the server: judged (role server) or the client's partner (role client)
    scenario: str
    verdict: str  # the worst of requirement_verdicts
    message: str = ""
    requirement_verdicts: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> {verdict, message}
    subject: str = ""  # what is judged: the target's name for a server, the client's name for a client
    role: str = "server"  # server or client
    duration_s: float = 0.0
    evidence: dict[str, Any] = field(default_factory=dict)  # transcript, measurements, actions, timeline...
    level: str = ""  # strictest effective level among the requirements
    profiles: list[str] = field(default_factory=list)
    nodeid: str = ""
    rerun: str = ""
    started: float = 0.0
    worker: str = ""

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["subject"] = d["subject"] or self.target
        return d

    @property
    def case_id(self) -> str:
        return case_id(self.as_dict())


class ResultsWriter:
    """Appends results of one process (pytest worker) to its own JSONL file, flushed per result."""

    def __init__(self, directory: Path, worker: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{worker}.jsonl"
        self.worker = worker

    def append(self, result: Result | dict[str, Any]) -> None:
        data = result.as_dict() if isinstance(result, Result) else dict(result)
        data["worker"] = self.worker
        line = json.dumps(data, default=str, ensure_ascii=False)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())


def read_partial(directory: Path) -> list[dict[str, Any]]:
    """Every result appended so far; a torn last line (killed mid-write) is skipped."""
    out = []
    for p in sorted(directory.glob("*.jsonl")):
        # split at "\n" only: a result is one JSON line, but its strings may hold U+0085, U+2028 or a form feed
        # (written unescaped), where str.splitlines() would cut it and the result would be lost as a torn line
        for line in p.read_text(encoding="utf-8").split("\n"):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    out.sort(key=lambda r: (r.get("started", 0), r.get("check", "")))
    return out


def summarize(results: list[dict[str, Any]], profiles: list[str], coverage: dict[str, Any] | None = None,
              failing: tuple[str, ...] = FAILING, requirements: dict[str, Any] | None = None) -> dict[str, Any]:
    """Counts and verdicts: of the whole run, and per profile, where a result counts with the worst verdict of
    its requirements that belong to the profile (``requirements``: the results.json section saying which
    profiles each requirement belongs to; without it, all of a result's requirements count)."""
    counts = Counter(r["verdict"] for r in results)
    per_profile: dict[str, Any] = {}
    for p in profiles:
        mine = [_restricted(r, p, requirements) for r in results if p in r.get("profiles", [])]
        c = Counter(r["verdict"] for r in mine)
        verdict = overall_verdict(mine, failing)
        if verdict == "pass" and set(c) <= NOTHING_VERIFIED:
            verdict = "empty"  # only not-applicable or skipped: the profile has no verdict, it did not pass
        per_profile[p] = {"counts": {v: c.get(v, 0) for v in VERDICTS if c.get(v)}, "verdict": verdict}
        if coverage and p in coverage:
            per_profile[p]["coverage"] = coverage[p]
    return {"total": len(results), "counts": {v: counts.get(v, 0) for v in VERDICTS if counts.get(v)},
            "profiles": per_profile, "verdict": overall_verdict(results, failing)}


def _restricted(r: dict[str, Any], profile: str, requirements: dict[str, Any] | None) -> dict[str, Any]:
    """The result as the profile sees it: only the verdicts of its requirements that the profile holds."""
    rv = requirement_verdicts(r)
    if requirements:
        inside = {rid: v for rid, v in rv.items() if profile in (requirements.get(rid) or {}).get("profiles", [profile])}
        rv = inside or rv
    return {"verdict": worst(v["verdict"] for v in rv.values()) if rv else r["verdict"], "requirement_verdicts": rv}


def overall_verdict(results: list[dict[str, Any]], failing: tuple[str, ...] = FAILING) -> str:
    """error if any requirement verdict is error, fail if any is failing (fail, xpass), else pass."""
    if not results:
        return "empty"
    verdicts = {r["verdict"] for r in results}
    verdicts |= {v["verdict"] for r in results for v in requirement_verdicts(r).values()}
    if "error" in verdicts:
        return "error"
    if verdicts & set(failing):
        return "fail"
    return "pass"


def exit_code(doc: dict[str, Any]) -> int:
    """0 conformant, 1 conformance failures, 2 harness errors, nothing run, or an incomplete run (interrupted, or
    planned cases without a result)."""
    if doc["summary"].get("interrupted") or doc["summary"].get("not_run"):
        return 2
    v = doc["summary"]["verdict"]
    return {"pass": 0, "fail": 1}.get(v, 2)


def leftovers_of(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Everything the run created on its targets and could not remove, one entry each with the case it came from
    (from each result's ``evidence.leftovers``)."""
    return [{"check": r.get("check", ""), "target": r.get("target", ""), "scenario": r.get("scenario", ""), **x}
            for r in results for x in (r.get("evidence") or {}).get("leftovers", [])]


def mark_incomplete(doc: dict[str, Any]) -> None:
    """The summary says whether the run was interrupted and how many planned cases have no result."""
    run = doc.get("run", {})
    if run.get("interrupted"):
        doc["summary"]["interrupted"] = run["interrupted"].get("by", True)
    if run.get("not_run"):
        doc["summary"]["not_run"] = len(run["not_run"])


def finalize_doc(outdir: Path, run_meta: dict[str, Any], coverage: dict[str, Any] | None = None) -> dict[str, Any]:
    """The results document from results.d and the run's section (nothing written)."""
    results = read_partial(outdir / "results.d")
    run = dict(run_meta)
    if run.get("interrupted", {}).get("by") not in ("in progress", "unknown"):  # a killed run's end is unknown
        run.setdefault("finished", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    doc = {
        "schema_version": SCHEMA_VERSION,
        "run": run,
        "results": results,
        "summary": summarize(results, run.get("profiles", []), coverage),
        "leftovers": leftovers_of(results),
    }
    if coverage is not None:
        doc["coverage"] = coverage
    mark_incomplete(doc)
    return doc


def dumps_doc(doc: dict[str, Any]) -> str:
    """The document as JSON: one line per result, the other sections indented. An indent for the results would
    make ``json`` use its pure-Python encoder: several times slower on a run's megabytes of evidence, at the end
    of every run; one result per line also keeps a diff of two runs' documents readable."""
    parts = []
    for key, value in doc.items():
        if key == "results" and isinstance(value, list) and value:
            body = "[\n" + ",\n".join(json.dumps(r, default=str, ensure_ascii=False) for r in value) + "\n]"
        else:
            body = json.dumps(value, indent=1, default=str, ensure_ascii=False).replace("\n", "\n ")
        parts.append(f" {json.dumps(key)}: {body}")
    return "{\n" + ",\n".join(parts) + "\n}"


def write_results(outdir: Path, doc: dict[str, Any]) -> Path:
    """results.json, written whole or not at all (a reader never sees half a file)."""
    tmp = outdir / "results.json.tmp"
    tmp.write_text(dumps_doc(doc), encoding="utf-8")
    tmp.replace(outdir / "results.json")
    return outdir / "results.json"


def upgrade(doc: dict[str, Any]) -> dict[str, Any]:
    """A version-1 document in the shape of version 2 (in place): every result gets requirement verdicts (its one
    verdict for each of its requirements), ``subject`` (its target) and ``role`` (server)."""
    if doc.get("schema_version") == 1:
        for r in doc.get("results", []):
            r.setdefault("requirement_verdicts", requirement_verdicts(r))
            r.setdefault("subject", r.get("target", ""))
            r.setdefault("role", "server")
        doc["schema_version"] = SCHEMA_VERSION
        doc["upgraded_from"] = 1
    return doc


def load_results(path: Path) -> dict[str, Any]:
    from .errors import BadInput

    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.is_file():
        raise BadInput(f"{p}: no such results file")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInput(f"{p}: not a results.json file: {e}") from None
    if not isinstance(doc, dict) or doc.get("schema_version") not in READABLE_VERSIONS or "results" not in doc:
        raise BadInput(f"{p}: not a results.json of schema_version {' or '.join(map(str, READABLE_VERSIONS))}")
    return upgrade(doc)
