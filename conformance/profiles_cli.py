"""`lemonade profiles list|show`: the catalog with its coverage by checks; rich in a terminal, plain when piped.

``--format json`` prints the same rows for machines. Rows are built by ``list_rows``/``show_rows`` and
rendered by ``render_*``, so tests can check each form without a terminal.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from .catalog import LEVELS, Catalog, load_catalog
from .coverage import checks_by_requirement


def list_rows(catalog: Catalog, by_req: dict[str, list[str]]) -> list[dict[str, Any]]:
    rows = []
    for name, prof in sorted(catalog.profiles.items()):
        untestable = [rid for rid in prof.ids if catalog.requirements[rid].untestable]
        covered = [rid for rid in prof.ids if rid in by_req and rid not in untestable]
        levels: dict[str, int] = {}
        for rid in prof.ids:
            lv = catalog.level(rid, [name])
            levels[lv] = levels.get(lv, 0) + 1
        rows.append({"name": name, "title": prof.title, "requirements": len(prof.ids), "covered": len(covered),
                     "untested": len(prof.ids) - len(covered) - len(untestable), "untestable": len(untestable),
                     "levels": {lv: levels[lv] for lv in LEVELS if lv in levels}})
    return rows


def show_rows(catalog: Catalog, name: str, by_req: dict[str, list[str]]) -> list[dict[str, Any]]:
    prof = catalog.profile(name)
    rows = []
    for rid in prof.ids:
        req = catalog.requirements[rid]
        rows.append({"id": rid, "level": catalog.level(rid, [name]), "source": req.source_text, "family": req.family,
                     "checks": by_req.get(rid, []), "untestable": req.untestable, "title": req.title,
                     "url": req.url, "parameters": {p.name: {"quick": p.quick, "full": p.full, "unit": p.unit}
                                                    for p in req.parameters.values()}})
    return rows


def _coverage_word(row: dict[str, Any]) -> str:
    if row["checks"]:
        return ", ".join(row["checks"])
    return "untestable: " + row["untestable"] if row["untestable"] else "untested"


def render_list_plain(rows: list[dict[str, Any]], total: int) -> str:
    head = ("profile", "requirements", "covered", "untested", "untestable", "levels", "title")
    table = [head] + [(r["name"], str(r["requirements"]), str(r["covered"]), str(r["untested"]), str(r["untestable"]),
                       " ".join(f"{k}:{v}" for k, v in r["levels"].items()), r["title"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in table]
    return "\n".join(lines) + f"\ncatalog: {total} requirements\n"


def render_show_plain(name: str, title: str, rows: list[dict[str, Any]]) -> str:
    head = ("id", "level", "source", "family", "covering checks")
    table = [head] + [(r["id"], r["level"], r["source"], r["family"], _coverage_word(r)) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(head) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in table]
    untested = sum(1 for r in rows if not r["checks"] and not r["untestable"])
    return (f"{name}: {title}\n" + "\n".join(lines)
            + f"\n{len(rows)} requirements, {len(rows) - untested} covered or untestable, {untested} untested\n")


def render_list_rich(console, rows: list[dict[str, Any]], total: int) -> None:
    from rich.table import Table

    t = Table(title=f"profiles ({total} requirements in the catalog)")
    for c, justify in (("profile", "left"), ("requirements", "right"), ("covered by checks", "right"),
                       ("untested", "right"), ("untestable", "right"), ("levels", "left"), ("title", "left")):
        t.add_column(c, justify=justify, no_wrap=c in ("profile", "levels"))
    for r in rows:
        t.add_row(r["name"], str(r["requirements"]), str(r["covered"]),
                  f"[yellow]{r['untested']}[/]" if r["untested"] else "0", str(r["untestable"]),
                  " ".join(f"{k}:{v}" for k, v in r["levels"].items()), r["title"])
    console.print(t)


def render_show_rich(console, name: str, title: str, rows: list[dict[str, Any]]) -> None:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"{name}: {title}")
    for c in ("id", "level", "source", "family", "covering checks"):
        t.add_column(c, no_wrap=c in ("id", "level"))
    for r in rows:
        if r["checks"]:
            cov = "\n".join(escape(c) for c in r["checks"])
        elif r["untestable"]:
            cov = "[dim]untestable[/]"
        else:
            cov = "[yellow]untested[/]"
        t.add_row(escape(r["id"]), r["level"], escape(r["source"]), r["family"], cov)
    console.print(t)
    untested = sum(1 for r in rows if not r["checks"] and not r["untestable"])
    console.print(f"{len(rows)} requirements, {untested} untested")


def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=not sys.stdout.isatty())


def profiles_list(fmt: str = "text") -> int:
    catalog = load_catalog()
    rows = list_rows(catalog, checks_by_requirement())
    if fmt == "json":
        print(json.dumps({"profiles": rows, "requirements_total": len(catalog.requirements)}, indent=1))
    elif sys.stdout.isatty():
        render_list_rich(_console(), rows, len(catalog.requirements))
    else:
        sys.stdout.write(render_list_plain(rows, len(catalog.requirements)))
    return 0


def profiles_show(name: str, fmt: str = "text") -> int:
    catalog = load_catalog()
    prof = catalog.profile(name)
    rows = show_rows(catalog, name, checks_by_requirement())
    if fmt == "json":
        print(json.dumps({"name": name, "title": prof.title, "description": prof.description,
                          "requirements": rows}, indent=1))
    elif sys.stdout.isatty():
        render_show_rich(_console(), name, prof.title, rows)
    else:
        sys.stdout.write(render_show_plain(name, prof.title, rows))
    return 0
