"""Figures for the HTML report: each module here draws one kind of picture from results.json data.

A module defines ``render(result: dict) -> str | None`` (inline SVG/HTML for one result, or None when the
result has nothing to draw) and/or ``render_run(doc: dict) -> str | None`` (a run-level figure such as a
matrix). Output must be self-contained (no external assets) and must escape every server-supplied string
(use ``markupsafe.escape``). The report calls every module it finds, in name order.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from markupsafe import Markup


def _modules():
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if not mod.name.startswith("_"):
            yield importlib.import_module(f"{__name__}.{mod.name}")


def result_figures(result: dict[str, Any]) -> list[Markup]:
    out = []
    for module in _modules():
        fn = getattr(module, "render", None)
        if fn:
            html = fn(result)
            if html:
                out.append(Markup(html))
    return out


def run_figures(doc: dict[str, Any]) -> list[Markup]:
    out = []
    for module in _modules():
        fn = getattr(module, "render_run", None)
        if fn:
            html = fn(doc)
            if html:
                out.append(Markup(html))
    return out
