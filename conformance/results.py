"""The results contract: one Result per check x target x scenario, appended as each finishes, finalised once.

``results.d/<worker>.jsonl`` grows while a run goes (a killed run keeps what it did); ``finalize`` merges
them with ``run.json`` into ``results.json`` (schema_version 2: every result names its ``subject`` and ``role``;
version-1 files are still read, as server results).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: no subject/role (server results)
VERDICTS = ("pass", "fail", "non-strict", "informational", "not-applicable", "error", "xfail", "xpass", "skipped")
FAILING = ("fail", "xpass")  # verdicts that make a run non-conformant (exit 1)
NOTHING_VERIFIED = {"not-applicable", "skipped"}  # a profile with only these verdicts has no verdict


@dataclass
class Result:
    check: str  # stable id: family/function, e.g. capability/store_capabilities
    requirements: list[str]
    target: str
    scenario: str
    verdict: str
    message: str = ""
    duration_s: float = 0.0
    evidence: dict[str, Any] = field(default_factory=dict)  # transcript, measurements, actions, timeline...
    level: str = ""  # strictest effective level among the requirements
    profiles: list[str] = field(default_factory=list)
    nodeid: str = ""
    rerun: str = ""
    started: float = 0.0
    worker: str = ""
    subject: str = ""  # what the result judges: the server's (target's) name, or the client's under --client
    role: str = "server"  # server | client

    def __post_init__(self) -> None:
        self.subject = self.subject or self.target

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def case_id(self) -> str:
        return case_key(self.as_dict())


def case_key(r: dict[str, Any]) -> str:
    """check|target|scenario for a server result; check|client@target|scenario for a client result."""
    target = f"{r.get('subject')}@{r['target']}" if r.get("role") == "client" else r["target"]
    return f"{r['check']}|{target}|{r['scenario']}"


class ResultsWriter:
    """Appends results of one process (pytest worker) to its own JSONL file, flushed per result."""

    def __init__(self, directory: Path, worker: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{worker}.jsonl"
        self.worker = worker

    def append(self, result: Result) -> None:
        result.worker = self.worker
        line = json.dumps(result.as_dict(), default=str, ensure_ascii=False)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())


def read_partial(directory: Path) -> list[dict[str, Any]]:
    """Every result appended so far; a torn last line (killed mid-write) is skipped."""
    out = []
    for p in sorted(directory.glob("*.jsonl")):
        for line in p.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    out.sort(key=lambda r: (r.get("started", 0), r.get("check", "")))
    return out


def summarize(results: list[dict[str, Any]], profiles: list[str], coverage: dict[str, Any] | None = None,
              failing: tuple[str, ...] = FAILING) -> dict[str, Any]:
    counts = Counter(r["verdict"] for r in results)
    per_profile: dict[str, Any] = {}
    for p in profiles:
        c = Counter(r["verdict"] for r in results if p in r.get("profiles", []))
        verdict = overall_verdict([r for r in results if p in r.get("profiles", [])], failing)
        if verdict == "pass" and set(c) <= NOTHING_VERIFIED:
            verdict = "empty"  # only not-applicable or skipped: the profile has no verdict, it did not pass
        per_profile[p] = {"counts": {v: c.get(v, 0) for v in VERDICTS if c.get(v)}, "verdict": verdict}
        if coverage and p in coverage:
            per_profile[p]["coverage"] = coverage[p]
    return {"total": len(results), "counts": {v: counts.get(v, 0) for v in VERDICTS if counts.get(v)},
            "profiles": per_profile, "verdict": overall_verdict(results, failing)}


def overall_verdict(results: list[dict[str, Any]], failing: tuple[str, ...] = FAILING) -> str:
    verdicts = {r["verdict"] for r in results}
    if not results:
        return "empty"
    if "error" in verdicts:
        return "error"
    if verdicts & set(failing):
        return "fail"
    return "pass"


def exit_code(doc: dict[str, Any]) -> int:
    """0 conformant, 1 conformance failures, 2 harness errors or nothing run."""
    v = doc["summary"]["verdict"]
    return {"pass": 0, "fail": 1}.get(v, 2)


def finalize(outdir: Path, run_meta: dict[str, Any], coverage: dict[str, Any] | None = None) -> dict[str, Any]:
    results = read_partial(outdir / "results.d")
    run = dict(run_meta)
    run.setdefault("finished", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    doc = {
        "schema_version": SCHEMA_VERSION,
        "run": run,
        "results": results,
        "summary": summarize(results, run.get("profiles", []), coverage),
    }
    if coverage is not None:
        doc["coverage"] = coverage
    tmp = outdir / "results.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1, default=str, ensure_ascii=False), encoding="utf-8")
    tmp.replace(outdir / "results.json")
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
    for r in doc["results"]:  # version 1 knew only servers
        if isinstance(r, dict):
            r.setdefault("role", "server")
            r.setdefault("subject", r.get("target", ""))
    return doc
