"""`lemonade profiles list|show`: the catalog with its coverage by checks; rich in a terminal, plain when piped."""

from __future__ import annotations

import json
import sys

from .catalog import load_catalog
from .coverage import checks_by_requirement


def _console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=not sys.stdout.isatty())


def profiles_list(fmt: str = "text") -> int:
    catalog = load_catalog()
    by_req = checks_by_requirement()
    rows = []
    for name, prof in sorted(catalog.profiles.items()):
        covered = sum(1 for rid in prof.ids if rid in by_req)
        levels: dict[str, int] = {}
        for rid in prof.ids:
            lv = catalog.level(rid, [name])
            levels[lv] = levels.get(lv, 0) + 1
        rows.append({"name": name, "title": prof.title, "requirements": len(prof.ids), "covered": covered,
                     "untested": len(prof.ids) - covered, "levels": levels})
    if fmt == "json":
        print(json.dumps({"profiles": rows, "requirements_total": len(catalog.requirements)}, indent=1))
        return 0
    if not sys.stdout.isatty():
        for r in rows:
            print(f"{r['name']}\t{r['requirements']} requirements\t{r['covered']} covered\t{r['untested']} untested\t{r['title']}")
        print(f"catalog: {len(catalog.requirements)} requirements")
        return 0
    from rich.table import Table

    t = Table(title=f"profiles ({len(catalog.requirements)} requirements in the catalog)")
    for c in ("profile", "requirements", "covered by checks", "untested", "levels", "title"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["name"], str(r["requirements"]), str(r["covered"]), str(r["untested"]),
                  " ".join(f"{k}:{v}" for k, v in sorted(r["levels"].items())), r["title"])
    _console().print(t)
    return 0


def profiles_show(name: str, fmt: str = "text") -> int:
    catalog = load_catalog()
    prof = catalog.profile(name)
    by_req = checks_by_requirement()
    rows = []
    for rid in prof.ids:
        req = catalog.requirements[rid]
        rows.append({"id": rid, "level": catalog.level(rid, [name]), "source": req.source_text, "family": req.family,
                     "checks": by_req.get(rid, []), "untestable": req.untestable, "title": req.title})
    if fmt == "json":
        print(json.dumps({"name": name, "title": prof.title, "requirements": rows}, indent=1))
        return 0
    if not sys.stdout.isatty():
        print(f"{name}: {prof.title}")
        for r in rows:
            checks = ", ".join(r["checks"]) or ("untestable: " + r["untestable"] if r["untestable"] else "untested")
            print(f"{r['id']}\t{r['level']}\t{r['source']}\t{r['family']}\t{checks}")
        return 0
    from rich.table import Table

    t = Table(title=f"{name}: {prof.title}")
    for c in ("id", "level", "source", "family", "covering checks"):
        t.add_column(c)
    for r in rows:
        checks = "\n".join(r["checks"]) or ("[dim]untestable[/]" if r["untestable"] else "[yellow]untested[/]")
        t.add_row(r["id"], r["level"], r["source"], r["family"], checks)
    _console().print(t)
    return 0
