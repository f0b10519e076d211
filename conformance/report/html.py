"""The HTML report: one self-contained file (inline CSS, no external assets), autoescaped jinja2."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import jinja2

from .figures import result_figures, run_figures

TEMPLATES = Path(__file__).resolve().parent / "templates"
ORDER = ("fail", "xpass", "error", "non-strict", "informational", "pass", "xfail", "not-applicable", "skipped")


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt_t"] = lambda t: f"{t:8.3f}"
    env.globals["result_figures"] = result_figures
    env.globals["run_figures"] = run_figures
    return env


def render_html(doc: dict[str, Any]) -> str:
    results = sorted(doc["results"], key=lambda r: (ORDER.index(r["verdict"]) if r["verdict"] in ORDER else 99,
                                                     r["check"], r["target"], r["scenario"]))
    counts = Counter(r["verdict"] for r in results)
    return _env().get_template("report.html.j2").render(
        doc=doc, run=doc["run"], results=results, summary=doc["summary"], coverage=doc.get("coverage", {}),
        counts=counts, order=ORDER)
