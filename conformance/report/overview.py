"""The servers x scenarios overview of a run: per target and scenario, how many results got each verdict.

The report opens on it (``report.html.j2``, section "Servers x scenarios") and README command 1 prints it as text
(``python -m conformance.report.overview reports/latest/results.json``). Built from results.json alone.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..verdicts import severity, where_of

_where = where_of


@dataclass
class Overview:
    targets: list[str]
    scenarios: list[str]
    cells: dict[tuple[str, str], Counter] = field(default_factory=dict)  # (scenario, target) -> verdict counts
    totals: dict[str, Counter] = field(default_factory=dict)  # target -> verdict counts

    @property
    def show(self) -> bool:
        return bool(self.targets) and (len(self.targets) > 1 or len(self.scenarios) > 1)


def overview(doc: dict[str, Any]) -> Overview:
    """Targets in run order, scenarios with direct first, verdict counts per cell."""
    results = doc.get("results", [])
    known = [t.get("name") for t in doc.get("run", {}).get("targets", []) if t.get("name")]
    targets: list[str] = []
    for t in known + [_where(r) for r in results]:
        if t and t not in targets and any(_where(r) == t for r in results):
            targets.append(t)
    scenarios = sorted({r["scenario"] for r in results}, key=lambda s: (s != "direct", s))
    ov = Overview(targets, scenarios)
    for r in results:
        key = (r["scenario"], _where(r))
        ov.cells.setdefault(key, Counter())[r["verdict"]] += 1
        ov.totals.setdefault(_where(r), Counter())[r["verdict"]] += 1
    return ov


def ordered(counts: Counter) -> list[tuple[str, int]]:
    """A cell's verdicts, worst first."""
    return sorted(counts.items(), key=lambda kv: severity(kv[0]))


def as_text(ov: Overview) -> str:
    """A plain table: one row per scenario, one column per target, plus the totals."""
    def cell(c: Counter | None) -> str:
        return " ".join(f"{v} {n}" for v, n in ordered(c)) if c else "-"

    head = ["scenario", *ov.targets]
    rows = [[s, *(cell(ov.cells.get((s, t))) for t in ov.targets)] for s in ov.scenarios]
    rows.append(["all scenarios", *(cell(ov.totals.get(t)) for t in ov.targets)])
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(head), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m conformance.report.overview RESULTS.json", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as f:
        print(as_text(overview(json.load(f))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
