"""The HTML report: one self-contained file (inline CSS and SVG, optional inline JS), autoescaped jinja2.

Renders from results.json alone. Everything a server sent (messages, transcripts, banners, target fields)
goes through jinja2's autoescaping; figure modules return markup they escaped themselves.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from ..verdicts import SEVERITY, case_id, requirement_verdicts, severity, where_of
from .figures import result_figures, run_figures
from .overview import ordered, overview

TEMPLATES = Path(__file__).resolve().parent / "templates"
ORDER = SEVERITY  # worst first: results, cells and tallies are listed in this order
COLORS = {"pass": "#1a7f37", "fail": "#cf222e", "xpass": "#cf222e", "error": "#8250df", "non-strict": "#9a6700",
          "informational": "#0969da", "xfail": "#57606a", "not-applicable": "#d8dee4", "skipped": "#d8dee4"}
COVERAGE_BUCKETS = (("verified", "verified", "#1a7f37"), ("failed", "failed", "#cf222e"),
                    ("known_failure", "known failure (baseline)", "#57606a"),
                    ("non_strict", "non-strict", "#9a6700"), ("informational", "observed, not verified", "#0969da"),
                    ("error", "error", "#8250df"),
                    ("not_applicable", "not applicable", "#afb8c1"), ("skipped", "skipped", "#d8dee4"),
                    ("not_run", "not run", "#c9d1d9"), ("untested", "untested (no check)", "#eaeef2"),
                    ("untestable", "untestable by design", "#f6f8fa"))
KNOWN_EVIDENCE = {"transcript", "measurements", "scenario_params", "transcript_dropped"}


def rank(verdict: str) -> int:
    return severity(verdict)


def anchor(r: dict[str, Any]) -> str:
    return "r-" + hashlib.sha1(case_id(r).encode()).hexdigest()[:12]


def css_token(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", str(text).lower()).strip("-") or "x"


def coverage_bar(cov: dict[str, Any], width: int = 240, height: int = 10) -> Markup:
    """A stacked bar of a profile's requirements by coverage bucket (inline SVG)."""
    total = max(int(cov.get("total") or 0), 1)
    x = 0.0
    parts = []
    for key, label, color in COVERAGE_BUCKETS:
        n = len(cov.get(key, []) or [])
        if not n:
            continue
        w = width * n / total
        parts.append(f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="{height}" fill="{color}">'
                     f"<title>{escape(label)}: {n}</title></rect>")
        x += w
    return Markup(f'<svg class="bar" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
                  f'preserveAspectRatio="none" aria-label="coverage">'
                  f'<rect width="{width}" height="{height}" fill="#fff" stroke="#d0d7de"/>'
                  + "".join(parts) + "</svg>")


def _ordered(values) -> list[str]:
    seen: dict[str, None] = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)


def verdict_cell(r: dict[str, Any], rid: str) -> dict[str, Any]:
    """What the report shows for one requirement of one result: that requirement's own verdict."""
    v = requirement_verdicts(r).get(rid) or {"verdict": r["verdict"], "message": r.get("message", "")}
    return {"verdict": v["verdict"], "message": v.get("message") or r.get("message", ""), "check": r["check"],
            "anchor": anchor(r), "target": r["target"], "where": where_of(r), "baseline": r.get("baseline")}


def matrix_model(doc: dict[str, Any]) -> dict[str, Any]:
    """subjects x scenarios x requirements: one cell per requirement and (where, scenario), showing the
    requirement's own verdict (the worst when several checks judge it), worst first."""
    results = doc["results"]
    run = doc.get("run", {})
    known = [t.get("name") for t in run.get("targets", []) if t.get("name")]
    targets = _ordered(known + [where_of(r) for r in results])
    targets = [t for t in targets if any(where_of(r) == t for r in results)]
    scenarios = _ordered([r["scenario"] for r in results])
    columns = [(t, s) for t in targets for s in scenarios
               if any(where_of(r) == t and r["scenario"] == s for r in results)]
    reqinfo = doc.get("requirements", {})
    cells: dict[str, dict[tuple[str, str], list[dict[str, Any]]]] = {}
    for r in results:
        for rid in r.get("requirements", []):
            cells.setdefault(rid, {}).setdefault((where_of(r), r["scenario"]), []).append(verdict_cell(r, rid))
    rows = []
    for rid in sorted(cells, key=lambda x: (reqinfo.get(x, {}).get("family", ""), x)):
        row_cells = []
        tally: Counter = Counter()
        for col in columns:
            vs = sorted(cells[rid].get(col, []), key=lambda c: rank(c["verdict"]))
            if vs:
                tally[vs[0]["verdict"]] += 1
            row_cells.append(vs)
        rows.append({"id": rid, "info": reqinfo.get(rid, {}), "cells": row_cells, "tally": tally,
                     "family": reqinfo.get(rid, {}).get("family", "")})
    col_tally = []
    for i, _ in enumerate(columns):
        c: Counter = Counter(row["cells"][i][0]["verdict"] for row in rows if row["cells"][i])
        col_tally.append(c)
    span = {t: sum(1 for c in columns if c[0] == t) for t in targets}
    return {"targets": targets, "scenarios": scenarios, "columns": columns, "rows": rows, "col_tally": col_tally,
            "span": span, "show": len(columns) > 1}


def requirement_rows(doc: dict[str, Any], scenarios: list[str]) -> list[dict[str, Any]]:
    """Every requirement of the selected profiles with its own verdict per scenario (and per target inside)."""
    reqinfo = doc.get("requirements", {})
    by_req: dict[str, list[dict[str, Any]]] = {}
    for r in doc["results"]:
        for rid in r.get("requirements", []):
            by_req.setdefault(rid, []).append(r)
    status: dict[str, str] = {}
    for cov in doc.get("coverage", {}).values():
        for bucket, label in (("untested", "untested"), ("not_run", "not-run"), ("untestable", "untestable")):
            for rid in cov.get(bucket, []) or []:
                status[rid] = label
    ids = sorted(set(reqinfo) | set(by_req), key=lambda x: (reqinfo.get(x, {}).get("family", ""), x))
    rows = []
    for rid in ids:
        rs = by_req.get(rid, [])
        per_scn = [[verdict_cell(r, rid) for r in sorted((r for r in rs if r["scenario"] == s),
                                                           key=lambda r: (where_of(r), r["check"]))]
                   for s in scenarios]
        rows.append({"id": rid, "info": reqinfo.get(rid, {}), "per_scenario": per_scn,
                     "status": "" if rs else status.get(rid, "not-run"), "family": reqinfo.get(rid, {}).get("family", "")})
    return rows


def other_evidence(ev: dict[str, Any]) -> dict[str, str]:
    out = {}
    for k, v in ev.items():
        if k in KNOWN_EVIDENCE:
            continue
        text = v if isinstance(v, str) else json.dumps(v, indent=1, default=str, ensure_ascii=False)
        out[k] = text if len(text) <= 20000 else text[:20000] + f"\n... [{len(text) - 20000} more characters]"
    return out


def legs_of(transcript: list[dict[str, Any]]) -> list[dict[str, Any]]:
    legs: dict[str, dict[str, Any]] = {}
    for e in transcript:
        leg = legs.setdefault(e.get("leg", ""), {"leg": e.get("leg", ""), "lines": 0, "C": 0, "S": 0, "I": 0, "N": 0})
        leg["lines"] += 1
        d = e.get("direction", "")
        if d in ("C", "S"):
            leg[d] += int(e.get("nbytes") or 0)
        elif d in ("I", "N"):
            leg[d] += 1
    return list(legs.values())


def safe_url(url: Any) -> bool:
    """Only http(s) links are rendered as links: a results.json from elsewhere cannot smuggle javascript: URLs."""
    return isinstance(url, str) and url.lower().startswith(("https://", "http://"))


def fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return " ".join(str(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k}={x}" for k, x in v.items())
    return str(v)


def wire_lines(transcript: list[dict[str, Any]]) -> Markup:
    """The transcript's lines as the report shows them (every text escaped). Built here rather than in the template:
    a run's transcripts are tens of thousands of lines, and a template loop spent most of the report's time on
    them."""
    out = []
    for e in transcript:
        leg, conn = str(e.get("leg", "")), e.get("conn", "")
        shown = f"{escape(leg)} {escape(conn)}" if conn and conn != leg else str(escape(leg))
        out.append(f'<div class="ln d-{escape(e.get("direction", "N"))} leg-{css_token(leg)}"><span class="t">'
                   f'{float(e.get("t", 0)):.3f}</span><span class="leg" title="{escape(leg)} {escape(conn)}">{shown}'
                   f'</span><span class="dir">{escape(e.get("direction", ""))}</span><span class="tx">'
                   f'{escape(str(e.get("text", "")).rstrip())}</span></div>')
    return Markup("".join(out))


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["css"] = css_token
    env.filters["fmt_num"] = fmt_value
    env.globals.update(safe_url=safe_url, result_figures=result_figures, run_figures=run_figures, anchor=anchor,
                       coverage_bar=coverage_bar, other_evidence=other_evidence, legs_of=legs_of,
                       colors=COLORS, coverage_buckets=COVERAGE_BUCKETS, rank=rank, wire_lines=wire_lines,
                       requirement_verdicts=requirement_verdicts, where_of=where_of)
    return env


def inline_css() -> Markup:
    return Markup((TEMPLATES / "_style.css").read_text(encoding="utf-8"))


def render_html(doc: dict[str, Any]) -> str:
    results = sorted(doc["results"], key=lambda r: (rank(r["verdict"]), r["check"], where_of(r), r["scenario"]))
    counts = Counter(r["verdict"] for r in results)
    matrix = matrix_model(doc)
    return _env().get_template("report.html.j2").render(
        doc=doc, run=doc["run"], results=results, summary=doc["summary"], coverage=doc.get("coverage", {}),
        counts=counts, order=ORDER, matrix=matrix, req_rows=requirement_rows(doc, matrix["scenarios"]),
        overview=overview(doc), ordered=ordered,
        scenarios=matrix["scenarios"], targets=matrix["targets"], baseline=doc.get("baseline"),
        merged=doc.get("merged"), css=inline_css())


def render_diff_html(diff, old: dict[str, Any], new: dict[str, Any]) -> str:
    """`lemonade diff --html`: the comparison of two runs as one self-contained page."""
    olds = {case_id(r): r for r in old["results"]}
    news = {case_id(r): r for r in new["results"]}
    sections = [("Regressions", "regressions", diff.regressions), ("Fixes", "fixes", diff.fixes),
                ("Other verdict changes", "changed", diff.changed), ("New cases", "new", diff.new),
                ("Removed cases", "removed", diff.removed), ("Changed measurements", "measurements", diff.measurements)]
    return _env().get_template("diff.html.j2").render(
        diff=diff, old=old, new=new, olds=olds, news=news, sections=sections, css=inline_css())
