"""`lemonade site RUNS... -o SITE/`: build or extend the static interop-event site, writing only what changed.

The site keeps a copy of every run it was given (``runs/<key>/results.json``, its report and JUnit at the
same stable permalink), so a later call needs only the new runs. Every page is rendered from known inputs;
``site.json`` records a hash of each page's inputs, and a page is written again only when that hash
changed (or the file is gone). Pages no longer produced (e.g. a diff between two runs that are no longer
consecutive) are removed. Everything opens from disk: relative links, inline CSS, no script needed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import jinja2
from markupsafe import Markup

from .. import __version__
from ..errors import BadInput
from ..report.html import COLORS, ORDER, inline_css, rank, render_diff_html, render_html, safe_url
from ..report.junit import render_junit
from ..results import load_results
from .model import RunEntry, digest, entry_for, for_subject, history, latest_matrix, slug

TEMPLATES = Path(__file__).resolve().parent / "templates"
INDEX = "site.json"
FORMAT = "lemonade-site"
FORMAT_VERSION = 1


def renderer_hash() -> str:
    """Pages depend on the suite version and the templates (a new renderer re-renders every page once)."""
    h = hashlib.sha256(__version__.encode())
    for folder in (TEMPLATES, Path(__file__).resolve().parents[1] / "report" / "templates"):
        for f in sorted(folder.glob("*")):
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:12]


def inputs_of(paths: list[str]) -> list[Path]:
    """results.json files or run directories; a directory without results.json stands for its run folders."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            found.append(p)
        elif (p / "results.json").is_file():
            found.append(p / "results.json")
        elif p.is_dir():
            runs = sorted(d / "results.json" for d in p.iterdir() if d.is_dir() and not d.is_symlink()
                          and (d / "results.json").is_file())
            if not runs:
                raise BadInput(f"{p}: neither a results.json, a run directory nor a folder of run directories")
            found += runs
        else:
            raise BadInput(f"{p}: no such results file or run directory")
    return found


def when(started: str) -> str:
    """2026-12-06T16:04:18Z -> 2026-12-06 16:04:18 UTC."""
    return started.replace("T", " ")[:19] + " UTC" if started and "T" in started else (started or "?")


def with_site_link(html: str, href: str, label: str) -> str:
    """A report or diff page kept in the site gets a link back to the site at the start of its navigation bar."""
    nav = '<nav class="toc">'
    return html.replace(nav, f'{nav}<a href="{href}">{label}</a>', 1) if nav in html else html


@dataclass
class Outcome:
    runs: int = 0
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged_runs: int = 0
    written: list[str] = field(default_factory=list)
    skipped: int = 0
    removed: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Site:
    """One site folder: its index (site.json), its runs, and the pages made from them."""

    def __init__(self, out: Path, title: str = "") -> None:
        self.out = out
        self.title = title
        self.state: dict[str, Any] = {}
        self.entries: dict[str, RunEntry] = {}
        self.digests: dict[str, list[dict[str, Any]]] = {}
        self.pages: dict[str, str] = {}      # relative path -> hash of its inputs (after this build)
        self.outcome = Outcome()
        self.renderer = renderer_hash()
        self.hist_path: dict[tuple[str, str], str] = {}
        index = out / INDEX
        if index.is_file():
            try:
                self.state = json.loads(index.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise BadInput(f"{index}: not a site index ({e}); choose an empty folder for a new site") from None
            if self.state.get("format") != FORMAT:
                raise BadInput(f"{index} is not a lemonade site index")
            self.title = title or self.state.get("title", "")
            for d in self.state.get("runs", []):
                e = RunEntry.from_dict(d["entry"])
                self.entries[e.key] = e
        elif out.exists() and any(out.iterdir()):
            raise BadInput(f"{out} is not empty and holds no {INDEX}: choose an empty or new folder for a site")

    # -- runs ----------------------------------------------------------------------------------
    def add(self, path: Path) -> None:
        doc = load_results(path)
        entry = entry_for(doc, str(path))
        known = self.entries.get(entry.key)
        folder = self.out / "runs" / entry.key
        if known and known.hash == entry.hash and (folder / "results.json").is_file():
            self.outcome.unchanged_runs += 1
            return
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "results.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
        (folder / "digest.json").write_text(json.dumps(digest(doc), ensure_ascii=False), encoding="utf-8")
        (self.outcome.updated if known else self.outcome.added).append(entry.key)
        self.entries[entry.key] = entry

    def digest_of(self, key: str) -> list[dict[str, Any]]:
        if key not in self.digests:
            self.digests[key] = json.loads((self.out / "runs" / key / "digest.json").read_text(encoding="utf-8"))
        return self.digests[key]

    def doc_of(self, key: str) -> dict[str, Any]:
        return json.loads((self.out / "runs" / key / "results.json").read_text(encoding="utf-8"))

    def ordered(self) -> list[RunEntry]:
        return sorted(self.entries.values(), key=lambda e: (e.started, e.key))

    # -- pages ---------------------------------------------------------------------------------
    def page(self, rel: str, inputs: Any, render: Callable[[], dict[str, str] | str]) -> None:
        """Write ``rel`` (and the extra files ``render`` may return) unless its inputs are unchanged."""
        key = self.renderer.encode() + json.dumps(inputs, sort_keys=True, default=str).encode()
        h = hashlib.sha256(key).hexdigest()[:16]
        self.pages[rel] = h
        if self.state.get("pages", {}).get(rel) == h and (self.out / rel).is_file():
            self.outcome.skipped += 1
            return
        out = render()
        files = out if isinstance(out, dict) else {rel: out}
        for name, text in files.items():
            target = self.out / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        self.outcome.written.append(rel)

    def build(self) -> Outcome:
        t0 = time.monotonic()
        env = environment()
        entries = self.ordered()
        subjects = sorted({(s.name, s.role) for e in entries for s in e.subjects},
                          key=lambda s: (s[1] != "server", s[0].lower()))
        hist_path = {s: f"history/{slug(s[0])}{'' if s[1] == 'server' else '-client'}.html" for s in subjects}
        self.hist_path = hist_path
        all_inputs = [(e.key, e.hash) for e in entries]
        common = {"title": self.title or "lemonade interop results", "suite_version": __version__, "when": when,
                  "hist_path": hist_path, "order": ORDER, "colors": COLORS, "n_runs": len(entries)}

        for e in entries:  # each run's report and JUnit, at runs/<key>/
            rel = f"runs/{e.key}/index.html"
            self.page(rel, {"run": e.hash}, lambda e=e, rel=rel: self.render_run(e.key, rel))

        runs = [(e, self.digest_of(e.key)) for e in entries]
        histories = {s: history(s[0], s[1], runs) for s in subjects}
        diff_pages: dict[tuple[str, str], dict[str, str]] = {}
        for s, h in histories.items():
            for step in h.steps:
                if step.previous is None:
                    continue
                rel = f"diffs/{slug(s[0])}{'' if s[1] == 'server' else '-client'}/{step.previous.key}--{step.entry.key}.html"
                diff_pages.setdefault(s, {})[step.entry.key] = rel
                self.page(rel, {"subject": s, "old": step.previous.hash, "new": step.entry.hash},
                          lambda s=s, a=step.previous.key, b=step.entry.key: self.render_diff(s, a, b))

        matrix = latest_matrix(runs)
        latest_by_subject = {s: h.steps[-1] for s, h in histories.items() if h.steps}
        steps = {(s, st.entry.key): st for s, h in histories.items() for st in h.steps}
        self.page("index.html", all_inputs, lambda: env.get_template("index.html.j2").render(
            root="", entries=list(reversed(entries)), subjects=subjects, histories=histories, steps=steps,
            latest=latest_by_subject, diff_pages=diff_pages, page="index", **common))
        self.page("matrix.html", all_inputs, lambda: env.get_template("matrix.html.j2").render(
            root="", m=matrix, entries={e.key: e for e in entries}, page="matrix", **common))
        for s, h in histories.items():
            mine = [(e.key, e.hash) for e in entries if any((x.name, x.role) == s for x in e.subjects)]
            self.page(hist_path[s], {"subject": s, "runs": mine}, lambda s=s, h=h: env.get_template(
                "history.html.j2").render(root="../", h=h, diff_pages=diff_pages.get(s, {}), page="history",
                                          chart=verdict_chart(h), **common))
        self.write_index(entries, subjects, histories, hist_path, diff_pages, matrix)
        self.remove_stale()
        self.outcome.runs = len(entries)
        self.outcome.seconds = time.monotonic() - t0
        return self.outcome

    def render_run(self, key: str, rel: str) -> dict[str, str]:
        doc = self.doc_of(key)
        return {rel: with_site_link(render_html(doc), "../../index.html", "← all runs"),
                f"runs/{key}/junit.xml": render_junit(doc)}

    def render_diff(self, s: tuple[str, str], old_key: str, new_key: str) -> str:
        from ..diffing import diff_runs

        old, new = for_subject(self.doc_of(old_key), *s), for_subject(self.doc_of(new_key), *s)
        return with_site_link(render_diff_html(diff_runs(old, new), old, new), f"../../{self.hist_path[s]}",
                              f"← history of {Markup.escape(s[0])}")

    def write_index(self, entries, subjects, histories, hist_path, diff_pages, matrix) -> None:
        doc = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "title": self.title, "suite_version": __version__,
            "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "runs": [{"key": e.key, "report": f"runs/{e.key}/index.html", "results": f"runs/{e.key}/results.json",
                      "junit": f"runs/{e.key}/junit.xml", "entry": e.as_dict()} for e in reversed(entries)],
            "subjects": [{
                "name": s[0], "role": s[1], "history": hist_path[s],
                "runs": [{"run": st.entry.key, "started": st.entry.started, "version": st.version,
                          "verdict": st.verdict, "counts": dict(st.counts),
                          "diff": diff_pages.get(s, {}).get(st.entry.key),
                          "regressions": [c.case for c in st.diff.regressions] if st.diff else [],
                          "fixes": [c.case for c in st.diff.fixes] if st.diff else []} for st in histories[s].steps]}
                for s in subjects],
            "latest": matrix.entries,
            "pages": dict(sorted(self.pages.items())),
        }
        (self.out / INDEX).write_text(json.dumps(doc, indent=1, ensure_ascii=False), encoding="utf-8")

    def remove_stale(self) -> None:
        for rel in sorted(set(self.state.get("pages", {})) - set(self.pages)):
            f = self.out / rel
            if f.is_file():
                f.unlink()
                self.outcome.removed.append(rel)
                if f.parent != self.out and not any(f.parent.iterdir()):
                    shutil.rmtree(f.parent, ignore_errors=True)


def verdict_chart(h) -> Markup:
    """Verdicts over runs (inline SVG): one bar per run, oldest on the left, its verdicts as shares of the run
    (worst on top), the number of results and the date below, ▲n above a run with n regressions."""
    steps = h.steps
    if not steps:
        return Markup("")
    bar, gap, top, height, below = 36, 16, 22, 110, 44
    width = max(len(steps) * (bar + gap) + gap, 200)
    parts = []
    for i, st in enumerate(steps):
        x = gap + i * (bar + gap)
        total = sum(st.counts.values()) or 1
        y = float(top)
        for v in sorted(st.counts, key=rank):  # worst first, drawn from the top
            hgt = height * st.counts[v] / total
            parts.append(f'<rect x="{x}" y="{y:.1f}" width="{bar}" height="{hgt:.1f}" fill="{COLORS.get(v, "#d8dee4")}">'
                         f"<title>{Markup.escape(when(st.entry.started))}: {v} {st.counts[v]} of {total}</title></rect>")
            y += hgt
        cx = x + bar / 2
        if st.regressions:
            parts.append(f'<text x="{cx}" y="{top - 7}" text-anchor="middle" class="reg-mark">▲{st.regressions}'
                         f"<title>{st.regressions} regression(s) against the run before</title></text>")
        date, clock = st.entry.started[5:10], st.entry.started[11:16]
        parts.append(f'<text x="{cx}" y="{top + height + 14}" text-anchor="middle" class="lbl">{Markup.escape(date)}</text>'
                     f'<text x="{cx}" y="{top + height + 26}" text-anchor="middle" class="lbl">{Markup.escape(clock)}</text>'
                     f'<text x="{cx}" y="{top + height + 39}" text-anchor="middle" class="lbl n">{total}</text>')
    return Markup(f'<svg class="chart" width="{width}" height="{top + height + below}" role="img" '
                  f'aria-label="verdicts over runs">' + "".join(parts) + "</svg>")


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    css = inline_css() + Markup((TEMPLATES / "_site.css").read_text(encoding="utf-8"))
    env.globals.update(css=css, safe_url=safe_url, rank=rank)
    env.filters["worst"] = lambda counts: min(counts, key=rank) if counts else "empty"
    return env


def build_site(inputs: list[str], out: Path, title: str = "") -> Outcome:
    """Add the runs in ``inputs`` to the site in ``out`` (made when missing) and bring its pages up to date."""
    paths = inputs_of(inputs)
    site = Site(out, title)
    if not paths and not site.entries:
        raise BadInput("no runs: give results.json files or run directories")
    out.mkdir(parents=True, exist_ok=True)
    for p in paths:
        site.add(p)
    return site.build()


def print_outcome(o: Outcome, out: Path) -> None:
    from ..cli import console

    con = console()
    con.print(f"lemonade site: {o.runs} runs ({len(o.added)} added, {len(o.updated)} updated, "
              f"{o.unchanged_runs} unchanged); pages: {len(o.written)} written, {o.skipped} unchanged, "
              f"{len(o.removed)} removed; {o.seconds:.2f} s", markup=False)
    con.print(f"site: {out / 'index.html'}   index for tools: {out / INDEX}", markup=False)
