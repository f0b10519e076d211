"""What the interop-event site shows, computed from results documents alone (no I/O, no HTML).

A run enters the site as a ``RunEntry`` (its permalink key, content hash and the facts the index lists) and
a digest (each result reduced to what the matrix and the history need). Subjects: a result judges a server
(``role`` server, ``subject`` = its target) or a client (``role`` client, ``subject`` = the client,
``target`` = its partner server); results of schema version 1 carry neither and judge their target.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from ..diffing import Diff, diff_runs
from ..report.html import anchor, rank
from ..results import FAILING, summarize

BAD = set(FAILING)


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode()


def content_hash(doc: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(doc)).hexdigest()[:16]


def slug(text: str, limit: int = 48) -> str:
    """A file-name-safe form of a name; a hash suffix keeps two names that clean up alike apart."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-._")[:limit] or "x"
    return clean if clean == text else f"{clean}-{hashlib.sha1(str(text).encode()).hexdigest()[:6]}"


def stamp(started: str) -> str:
    """2026-12-06T16:04:18Z -> 20261206T160418Z (sortable, file-name-safe)."""
    return re.sub(r"[^0-9TZ]", "", started or "")[:16] or "undated"


def subject_of(r: dict[str, Any]) -> tuple[str, str]:
    return str(r.get("subject") or r.get("target", "?")), str(r.get("role") or "server")


def run_key(doc: dict[str, Any]) -> str:
    """The run's permalink: when it started, what it judged, and a hash of its run section (stable for the
    same results.json wherever it comes from; two runs never share one)."""
    run = doc.get("run", {})
    subjects = sorted({subject_of(r)[0] for r in doc.get("results", [])}) or ["empty"]
    who = subjects[0] if len(subjects) == 1 else f"{subjects[0]}-and-{len(subjects) - 1}-more"
    return f"{stamp(run.get('started', ''))}-{slug(who, 32)}-{hashlib.sha256(canonical(run)).hexdigest()[:6]}"


@dataclass
class Subject:
    name: str
    role: str
    target: str      # the server itself, or a client's partner server
    version: str = ""


@dataclass
class RunEntry:
    key: str
    hash: str
    source: str
    run_id: str
    started: str
    finished: str
    suite_version: str
    command: str
    depth: str
    profiles: list[str]
    scenarios: list[str]
    subjects: list[Subject]
    verdict: str
    counts: dict[str, int]
    total: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunEntry":
        d = dict(d)
        d["subjects"] = [Subject(**s) for s in d.get("subjects", [])]
        return cls(**d)

    @property
    def targets(self) -> list[str]:
        return sorted({s.target for s in self.subjects})

    def subject(self, name: str, role: str) -> Subject | None:
        return next((s for s in self.subjects if s.name == name and s.role == role), None)


def version_of(run: dict[str, Any], name: str) -> str:
    """A subject's version as the run describes it (run.targets, or any list of described subjects)."""
    for key in ("targets", "clients", "subjects"):
        for t in run.get(key, []) or []:
            if isinstance(t, dict) and t.get("name") == name and t.get("version"):
                return str(t["version"])
    return ""


def entry_for(doc: dict[str, Any], source: str) -> RunEntry:
    run = doc.get("run", {})
    results = doc.get("results", [])
    seen: dict[tuple[str, str], Subject] = {}
    for r in results:
        name, role = subject_of(r)
        if (name, role) not in seen:
            seen[(name, role)] = Subject(name, role, str(r.get("target", "")), version_of(run, name))
    summary = doc.get("summary") or summarize(results, run.get("profiles", []))
    scenarios = list(dict.fromkeys(r.get("scenario", "") for r in results))
    return RunEntry(
        key=run_key(doc), hash=content_hash(doc), source=source, run_id=str(run.get("id", "")),
        started=str(run.get("started", "")), finished=str(run.get("finished", "")),
        suite_version=str(run.get("suite_version", "")), command=str(run.get("command", "")),
        depth=str(run.get("depth", "")), profiles=list(run.get("profiles", [])), scenarios=scenarios,
        subjects=sorted(seen.values(), key=lambda s: (s.role != "server", s.name)),
        verdict=str(summary.get("verdict", "")), counts=dict(summary.get("counts", {})), total=len(results))


def digest(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Each result reduced to what the matrix and the history show (no transcripts)."""
    out = []
    for r in doc.get("results", []):
        name, role = subject_of(r)
        msg = (r.get("message") or "").strip().splitlines()
        out.append({"check": r["check"], "target": r.get("target", ""), "scenario": r.get("scenario", ""),
                    "subject": name, "role": role, "verdict": r["verdict"], "message": msg[0][:240] if msg else "",
                    "requirements": r.get("requirements", []), "anchor": anchor(r)})
    return out


def for_subject(doc: dict[str, Any], name: str, role: str) -> dict[str, Any]:
    """The part of a results document about one subject (for a diff of consecutive runs of it)."""
    results = [r for r in doc.get("results", []) if subject_of(r) == (name, role)]
    run = dict(doc.get("run", {}))
    run["targets"] = [t for t in run.get("targets", []) if t.get("name") in {r.get("target") for r in results}]
    out = dict(doc)
    out["run"], out["results"] = run, results
    out["summary"] = summarize(results, run.get("profiles", []))
    return out


# -- the matrix: latest result per subject x scenario x check -----------------------------------------
@dataclass
class Cell:
    verdict: str
    check: str
    message: str
    run: str        # run key
    started: str
    anchor: str


@dataclass
class Matrix:
    rows: list[tuple[str, str, str]]          # subjects: (subject, role, target), servers first, by name
    scenarios: list[str]
    summary: dict[tuple[str, str, str, str], Counter]   # (subject, role, target, scenario) -> verdict tally
    worst: dict[tuple[str, str, str, str], str]
    latest_run: dict[tuple[str, str, str, str], str]    # -> key of the newest run contributing
    cases: list[tuple[str, str]]              # (check, scenario): the rows of the case grid
    cells: dict[tuple[str, str, tuple[str, str, str]], Cell]  # (check, scenario, subject) -> newest result
    entries: list[dict[str, Any]] = field(default_factory=list)  # flat, for site.json


def latest_matrix(runs: list[tuple[RunEntry, list[dict[str, Any]]]]) -> Matrix:
    """For every subject x scenario x check, the result of the newest run that has one."""
    latest: dict[tuple[str, str, str, str, str], tuple[RunEntry, dict[str, Any]]] = {}
    for entry, results in sorted(runs, key=lambda er: (er[0].started, er[0].key)):
        for r in results:
            latest[(r["subject"], r["role"], r["target"], r["scenario"], r["check"])] = (entry, r)
    scenario_count: Counter = Counter(k[3] for k in latest)
    scenarios = sorted(scenario_count, key=lambda s: (s != "direct", -scenario_count[s], s))
    rows = sorted({k[:3] for k in latest}, key=lambda k: (k[1] != "server", k[0].lower(), k[2]))
    summary: dict[tuple[str, str, str, str], Counter] = {}
    newest: dict[tuple[str, str, str, str], tuple[str, str]] = {}
    cells: dict[tuple[str, str, tuple[str, str, str]], Cell] = {}
    entries = []
    for (subject, role, target, scenario, check), (entry, r) in latest.items():
        col = (subject, role, target, scenario)
        summary.setdefault(col, Counter())[r["verdict"]] += 1
        newest[col] = max(newest.get(col, ("", "")), (entry.started, entry.key))
        cells[(check, scenario, (subject, role, target))] = Cell(r["verdict"], check, r["message"], entry.key,
                                                                 entry.started, r["anchor"])
        entries.append({"subject": subject, "role": role, "target": target, "scenario": scenario, "check": check,
                        "verdict": r["verdict"], "run": entry.key, "started": entry.started,
                        "href": f"runs/{entry.key}/index.html#{r['anchor']}"})
    worst = {col: min(c, key=rank) for col, c in summary.items()}
    order = {s: i for i, s in enumerate(scenarios)}
    cases = sorted({(k[4], k[3]) for k in latest}, key=lambda c: (c[0], order[c[1]]))
    entries.sort(key=lambda e: (e["subject"], e["role"], e["scenario"], e["check"]))
    return Matrix(rows, scenarios, summary, worst, {c: v[1] for c, v in newest.items()}, cases, cells, entries)


# -- history: one subject's verdicts over runs ---------------------------------------------------------
@dataclass
class Step:
    entry: RunEntry
    previous: RunEntry | None
    diff: Diff | None           # against the previous run of this subject (verdicts only)
    counts: Counter
    verdict: str
    version: str

    @property
    def regressions(self) -> int:
        return len(self.diff.regressions) if self.diff else 0

    @property
    def fixes(self) -> int:
        return len(self.diff.fixes) if self.diff else 0


@dataclass
class History:
    subject: str
    role: str
    steps: list[Step]
    cases: list[tuple[str, str, str]]                       # (check, target, scenario)
    cells: dict[tuple[tuple[str, str, str], str], dict[str, Any]]  # (case, run key) -> digest result
    regressed: set[tuple[tuple[str, str, str], str]]        # (case, run key) that became fail/xpass there
    fixed: set[tuple[tuple[str, str, str], str]]

    @property
    def changed(self) -> list[tuple[str, str, str]]:
        """The cases whose verdict differs between runs that ran them (what a reader looks for first)."""
        keys = [st.entry.key for st in self.steps]
        return [c for c in self.cases if len({self.cells[(c, k)]["verdict"] for k in keys if (c, k) in self.cells}) > 1]


def digest_doc(entry: RunEntry, results: list[dict[str, Any]]) -> dict[str, Any]:
    return {"run": {"id": entry.key, "started": entry.started}, "results": results}


def history(name: str, role: str, runs: list[tuple[RunEntry, list[dict[str, Any]]]]) -> History:
    mine = [(e, [r for r in rs if (r["subject"], r["role"]) == (name, role)]) for e, rs in runs]
    mine = sorted([(e, rs) for e, rs in mine if rs], key=lambda er: (er[0].started, er[0].key))
    steps: list[Step] = []
    cells: dict[tuple[tuple[str, str, str], str], dict[str, Any]] = {}
    regressed, fixed = set(), set()
    previous: tuple[RunEntry, list[dict[str, Any]]] | None = None
    for entry, results in mine:
        d = diff_runs(digest_doc(*previous), digest_doc(entry, results)) if previous else None
        if d:
            regressed |= {(tuple(c.case.split("|", 2)), entry.key) for c in d.regressions}
            fixed |= {(tuple(c.case.split("|", 2)), entry.key) for c in d.fixes}
        for r in results:
            cells[((r["check"], r["target"], r["scenario"]), entry.key)] = r
        counts = Counter(r["verdict"] for r in results)
        verdict = summarize(results, [])["verdict"]
        sub = entry.subject(name, role)
        steps.append(Step(entry, previous[0] if previous else None, d, counts, verdict, sub.version if sub else ""))
        previous = (entry, results)
    cases = sorted({c for c, _ in cells}, key=lambda c: (c[0], c[2], c[1]))
    return History(name, role, steps, cases, cells, regressed, fixed)
