"""Comparing and joining runs: `lemonade diff OLD NEW` (regressions, fixes, new/removed cases, measurements)
and `lemonade merge A B ... -o OUT` (shards or machines into one run).

Cases are keyed by check | target | scenario (stable ids, never positions; ``verdicts.case_id``). Within a
case the verdict of each requirement is compared too: a requirement that starts failing is a regression even
when the case was failing already for another one. Volatile fields (timestamps, durations, transcripts) are
not compared; measurements are, with a relative tolerance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .errors import BadInput
from .results import SCHEMA_VERSION, leftovers_of, summarize, upgrade
from .verdicts import FAILING, case_id, requirement_verdicts

BAD = set(FAILING)  # fail, xpass


@dataclass
class Change:
    case: str
    old: str | None
    new: str | None
    message: str = ""
    detail: str = ""
    requirements: list[str] = field(default_factory=list)
    requirement_changes: dict[str, list[str | None]] = field(default_factory=dict)  # id -> [old, new] verdict

    def as_dict(self) -> dict[str, Any]:
        return {"case": self.case, "old": self.old, "new": self.new, "message": self.message,
                "detail": self.detail, "requirements": self.requirements,
                "requirement_changes": self.requirement_changes}


@dataclass
class Diff:
    old_id: str
    new_id: str
    tolerance: float
    regressions: list[Change] = field(default_factory=list)  # was not fail/xpass, now is
    fixes: list[Change] = field(default_factory=list)  # was fail/xpass, now is not (and not error)
    changed: list[Change] = field(default_factory=list)  # other verdict changes (e.g. pass -> error, pass -> non-strict)
    new: list[Change] = field(default_factory=list)
    removed: list[Change] = field(default_factory=list)
    measurements: list[Change] = field(default_factory=list)
    unchanged: int = 0

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0

    def as_dict(self) -> dict[str, Any]:
        return {"old": self.old_id, "new": self.new_id, "tolerance": self.tolerance, "unchanged": self.unchanged,
                **{k: [c.as_dict() for c in getattr(self, k)] for k in
                   ("regressions", "fixes", "changed", "new", "removed", "measurements")}}


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    return None


def measurement_changes(old: dict[str, Any], new: dict[str, Any], tolerance: float) -> list[str]:
    """Measurements whose value moved by more than ``tolerance`` (relative), or appeared/disappeared."""
    om = (old.get("evidence") or {}).get("measurements") or {}
    nm = (new.get("evidence") or {}).get("measurements") or {}
    out = []
    for k in sorted(set(om) | set(nm)):
        a, b = om.get(k), nm.get(k)
        av = a.get("value") if isinstance(a, dict) else a
        bv = b.get("value") if isinstance(b, dict) else b
        unit = (b or a).get("unit", "") if isinstance(b or a, dict) else ""
        if a is None or b is None:
            out.append(f"{k}: {av if a is not None else '-'} -> {bv if b is not None else '-'} {unit}".rstrip())
            continue
        x, y = _num(av), _num(bv)
        if x is None or y is None:
            if av != bv:
                out.append(f"{k}: {av!r} -> {bv!r} {unit}".rstrip())
            continue
        base = max(abs(x), abs(y))
        if base and abs(y - x) / base > tolerance:
            pct = (y - x) / abs(x) * 100 if x else float("inf")
            out.append(f"{k}: {av:g} -> {bv:g} {unit} ({pct:+.0f}%)".replace("  ", " "))
    return out


def requirement_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[str | None]]:
    """Requirements whose verdict differs between two results of one case: id -> [old, new]."""
    a, b = requirement_verdicts(old), requirement_verdicts(new)
    out: dict[str, list[str | None]] = {}
    for rid in sorted(set(a) | set(b)):
        va, vb = (a.get(rid) or {}).get("verdict"), (b.get(rid) or {}).get("verdict")
        if va != vb:
            out[rid] = [va, vb]
    return out


def diff_runs(old: dict[str, Any], new: dict[str, Any], tolerance: float = 0.25) -> Diff:
    old, new = upgrade(old), upgrade(new)
    olds = {case_id(r): r for r in old["results"]}
    news = {case_id(r): r for r in new["results"]}
    d = Diff(old.get("run", {}).get("id", "old"), new.get("run", {}).get("id", "new"), tolerance)
    for cid in sorted(set(olds) | set(news)):
        a, b = olds.get(cid), news.get(cid)
        if a is None:
            d.new.append(Change(cid, None, b["verdict"], b.get("message", ""), requirements=b.get("requirements", [])))
            continue
        if b is None:
            d.removed.append(Change(cid, a["verdict"], None, a.get("message", ""), requirements=a.get("requirements", [])))
            continue
        va, vb = a["verdict"], b["verdict"]
        moved = requirement_changes(a, b)
        ch = Change(cid, va, vb, b.get("message", ""), requirements=b.get("requirements", []),
                    requirement_changes=moved,
                    detail="; ".join(f"{rid}: {x or '-'} -> {y or '-'}" for rid, (x, y) in moved.items()))
        newly_bad = any(y in BAD and x not in BAD for x, y in moved.values())
        if (vb in BAD and va not in BAD) or newly_bad:
            d.regressions.append(ch)
        elif va in BAD and vb not in BAD and vb != "error":
            d.fixes.append(ch)
        elif va != vb or moved:
            d.changed.append(ch)
        else:
            d.unchanged += 1
        shifted = measurement_changes(a, b, tolerance)
        if shifted:
            d.measurements.append(Change(cid, va, vb, detail="; ".join(shifted), requirements=b.get("requirements", [])))
    return d


def print_diff(d: Diff) -> None:
    from rich.console import Console
    from rich.markup import escape

    con = Console(highlight=False)
    con.print(f"[bold]lemonade diff[/] {escape(d.old_id)} -> {escape(d.new_id)} "
              f"(measurement tolerance {d.tolerance:.0%})", markup=True)
    sections = (("regressions", "bold red", d.regressions), ("fixes", "green", d.fixes),
                ("other verdict changes", "yellow", d.changed), ("new cases", "cyan", d.new),
                ("removed cases", "dim", d.removed), ("changed measurements", "blue", d.measurements))
    for title, style, items in sections:
        con.print(f"[{style}]{title}: {len(items)}[/]", markup=True)
        for c in items:
            arrow = f"{c.old or '-'} -> {c.new or '-'}"
            line = f"  {escape(c.case)}  [{style}]{arrow}[/]"
            if c.detail:
                line += f"  {escape(c.detail)}"
            if c.message and (c.new in BAD or c.new == "error"):
                line += f"  {escape(c.message.splitlines()[0][:160])}"
            con.print(line, markup=True)
    con.print(f"{d.unchanged} cases unchanged; exit {d.exit_code} ({'regressions' if d.regressions else 'no regressions'})")


# -- merge ----------------------------------------------------------------------------------------
def merge_runs(docs: list[dict[str, Any]], names: list[str], catalog=None) -> dict[str, Any]:
    """One results document from several: shards of one run, or runs of other targets/machines.

    A case (check|target|scenario) present in more than one input is kept apart by suffixing that input's
    target names with '@<run id>' (two runs of the same server are two columns in the matrix, never
    silently overwritten).
    """
    if not docs:
        raise BadInput("merge needs at least one results file")
    docs = [upgrade(d) for d in docs]
    results: list[dict[str, Any]] = []
    seen: set[str] = set()
    targets: dict[str, dict[str, Any]] = {}
    profiles: list[str] = []
    scenarios: list[str] = []
    requirements: dict[str, Any] = {}
    sources = []
    for doc, name in zip(docs, names):
        run = doc.get("run", {})
        rid = str(run.get("id") or name)
        rename: dict[str, str] = {}
        if any(case_id(r) in seen for r in doc["results"]):
            rename = {r["target"]: f"{r['target']}@{rid}" for r in doc["results"] if case_id(r) in seen}
        for r in doc["results"]:
            r = dict(r)
            if r["target"] in rename:
                if r.get("subject") == r["target"]:  # a server: the subject is the target, renamed with it
                    r["subject"] = rename[r["target"]]
                r["target"] = rename[r["target"]]
            r["source_run"] = rid
            if case_id(r) in seen:
                raise BadInput(f"{name}: case {case_id(r)} appears twice even after renaming; is a file given twice?")
            seen.add(case_id(r))
            results.append(r)
        for t in run.get("targets", []):
            t = dict(t)
            t["name"] = rename.get(t.get("name"), t.get("name"))
            targets.setdefault(t["name"], t)
        for p in run.get("profiles", []):
            if p not in profiles:
                profiles.append(p)
        for s in run.get("scenarios", []):
            if s not in scenarios:
                scenarios.append(s)
        requirements.update(doc.get("requirements", {}))
        sources.append({"file": name, "id": rid, "started": run.get("started"), "command": run.get("command", ""),
                        "depth": run.get("depth"), "suite_version": run.get("suite_version"),
                        "verdict": doc.get("summary", {}).get("verdict"), "renamed_targets": rename})
    depths = {s["depth"] for s in sources}
    run = {"id": "merged-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
           "started": min((s["started"] or "" for s in sources), default=""),
           "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "command": "lemonade merge " + " ".join(names), "suite_version": sources[0]["suite_version"],
           "profiles": profiles, "scenarios": scenarios, "depth": depths.pop() if len(depths) == 1 else "mixed",
           "targets": list(targets.values())}
    results.sort(key=lambda r: (r.get("started", 0), r["check"]))
    coverage = None
    if catalog is not None:
        from .coverage import coverage_for

        known = [p for p in profiles if p in catalog.profiles]
        coverage = coverage_for(catalog, known, results)
    else:
        coverage = next((d["coverage"] for d in docs if d.get("coverage")), None)
    baselines = [d["baseline"] for d in docs if d.get("baseline")]
    failing = ("fail",) if baselines and all(b.get("allow_xpass") for b in baselines) else FAILING
    doc: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "run": run, "results": results,
                           "summary": summarize(results, profiles, coverage, failing, requirements or None),
                           "merged": sources, "leftovers": leftovers_of(results)}
    if coverage is not None:
        doc["coverage"] = coverage
    if requirements:
        doc["requirements"] = requirements
    return doc
