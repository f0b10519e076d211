"""What the terminal shows while a run goes: a live display on a terminal, one line per result elsewhere.

Both are pytest plugin objects fed by the controller's hooks (they work under xdist: workers' log reports
reach the controller). ``LineProgress`` prints one line per finished case (CI logs, pipes). ``LiveProgress``
(rich) keeps one panel at the bottom of the terminal: done/total, the checks running now, verdict tallies,
elapsed time and an estimate of what is left; failures and errors are printed above it as they come, so the
scrollback keeps them. ``progress_for(console)`` chooses: live only on a terminal, outside CI, unless
``LEMONADE_PROGRESS=lines`` (or ``=live`` to force it).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

VERDICT_STYLE = {"pass": "green", "fail": "bold red", "non-strict": "yellow", "informational": "cyan",
                 "not-applicable": "dim", "error": "bold magenta", "xfail": "blue", "xpass": "bold red",
                 "skipped": "dim"}
SHOWN_ABOVE = {"fail", "error", "xpass", "non-strict"}  # verdicts the live display also prints as lines
MAX_RUNNING = 6  # running checks listed in the panel (the rest are counted)


def result_line(r: dict[str, Any]) -> str:
    """The one-line (rich markup) form of a result, as printed since the first version of `lemonade run`."""
    from rich.markup import escape

    style = VERDICT_STYLE.get(r["verdict"], "default")
    msg = r["message"]
    where = f"{r.get('subject')}@{r['target']}" if r.get("role") == "client" else r["target"]
    return (f"[{style}]{r['verdict']:>14}[/] {escape(r['check'])} [dim]{escape(where)} | "
            f"{escape(r['scenario'])} {r['duration_s']:.2f}s[/]"
            + (f"  {escape(msg)}" if msg and r["verdict"] != "pass" else ""))


def short_name(nodeid: str) -> str:
    """capability/test_x.py::test_store_capabilities[dovecot-direct] -> capability/store_capabilities[...]"""
    path, _, name = nodeid.partition("::")
    family = path.split("/")[0] if "/" in path else ""
    name = name.removeprefix("test_")
    return f"{family}/{name}" if family else name


def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    if seconds < 3600:
        return f"{seconds // 60}:{seconds % 60:02d}"
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def wants_live(console) -> bool:
    choice = os.environ.get("LEMONADE_PROGRESS", "").lower()
    if choice in ("live", "lines"):
        return choice == "live"
    return bool(console.is_terminal) and not os.environ.get("CI") and os.environ.get("TERM") != "dumb"


def progress_for(console) -> "LineProgress":
    return LiveProgress(console) if wants_live(console) else LineProgress(console)


class LineProgress:
    """One line per finished case; collection errors printed in full."""

    def __init__(self, console) -> None:
        self.con = console
        self.n = 0

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def pytest_collectreport(self, report) -> None:
        if report.failed:
            self.con.print(f"[bold red]cannot collect {report.nodeid}:[/]", markup=True)
            self.con.print(report.longreprtext, markup=False)

    def pytest_runtest_logreport(self, report) -> None:
        if report.when != "teardown":
            return
        for key, r in report.user_properties:
            if key == "lemonade_result":
                self.n += 1
                self.on_result(r)

    def on_result(self, r: dict[str, Any]) -> None:
        self.con.print(result_line(r), markup=True, highlight=False)


@dataclass
class Tally:
    """The state the live panel draws: what is known about the run so far."""

    started: float = field(default_factory=time.monotonic)
    total: int | None = None
    done: int = 0
    verdicts: Counter = field(default_factory=Counter)
    running: dict[str, float] = field(default_factory=dict)  # nodeid -> when it started
    last: str = ""

    def eta(self, now: float) -> float | None:
        """Seconds left, from the pace so far (elapsed per finished case; parallel workers included)."""
        if not self.total or not self.done or self.done >= self.total:
            return None
        return (now - self.started) / self.done * (self.total - self.done)


class LiveProgress(LineProgress):
    """The rich live panel; failures, errors and collection problems are printed above it as lines."""

    def __init__(self, console) -> None:
        super().__init__(console)
        self.tally = Tally()
        self.live = None

    def __enter__(self) -> "LiveProgress":
        from rich.live import Live

        self.tally = Tally()
        self.live = Live(self, console=self.con, refresh_per_second=4, transient=True, redirect_stdout=False,
                         redirect_stderr=False)
        self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    # -- hooks (controller side) --
    def pytest_collection_finish(self, session) -> None:
        if self.tally.total is None:
            self.tally.total = len(session.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node, ids) -> None:
        self.tally.total = len(ids)  # every worker collects the same selection

    def pytest_runtest_logstart(self, nodeid, location) -> None:
        self.tally.running[nodeid] = time.monotonic()

    def pytest_runtest_logreport(self, report) -> None:
        if report.when == "teardown":
            self.tally.running.pop(report.nodeid, None)
        super().pytest_runtest_logreport(report)

    def on_result(self, r: dict[str, Any]) -> None:
        t = self.tally
        t.done += 1
        t.verdicts[r["verdict"]] += 1
        t.last = result_line(r)
        if r["verdict"] in SHOWN_ABOVE:
            self.con.print(result_line(r), markup=True, highlight=False)

    # -- drawing --
    def __rich__(self):
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        t = self.tally
        now = time.monotonic()
        total = t.total or 0
        head = Table.grid(padding=(0, 1))
        head.add_column(no_wrap=True)
        head.add_column(width=40)
        head.add_column(no_wrap=True)
        eta = t.eta(now)
        timing = f"{fmt_duration(now - t.started)} elapsed"
        if eta is not None:
            timing += f", about {fmt_duration(eta)} left"
        count = f"{t.done}/{total}" if total else f"{t.done}/?"
        head.add_row(Text("lemonade run", style="bold"), ProgressBar(total=total or None, completed=t.done, width=40),
                     Text(f"{count} checks  {timing}"))
        tallies = Text()
        for v, n in t.verdicts.most_common():
            tallies.append(f"{v} {n}", style=VERDICT_STYLE.get(v, ""))
            tallies.append("  ")
        if not t.verdicts:
            tallies.append("collecting checks, starting servers" if t.total is None else "no result yet", style="dim")
        lines = [head, tallies]
        running = sorted(t.running.items(), key=lambda kv: kv[1])
        for nodeid, since in running[:MAX_RUNNING]:
            lines.append(Text(f"  running {short_name(nodeid)}  {now - since:.1f}s", style="dim", no_wrap=True,
                              overflow="ellipsis"))
        if len(running) > MAX_RUNNING:
            lines.append(Text(f"  ... and {len(running) - MAX_RUNNING} more", style="dim"))
        if t.last:
            last = Text.from_markup("  last " + t.last.strip(), overflow="ellipsis")
            last.no_wrap = True
            lines.append(last)
        return Group(*lines)
