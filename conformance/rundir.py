"""The run directory read back whether the run finished or not: the plan it recorded, what did not run, an
interrupted run assembled, what a resume must still run.

What a run writes as it goes: ``run.json`` (what the run is, with the options it was given, first thing),
``planned.json`` (every case the selection holds, written when the pytest processes have collected), and
``results.d/<worker>.jsonl`` (a line per finished case). ``results.json`` comes at the end. A run killed before
its end (kill -9, a machine that stopped) has no ``results.json``: ``assemble`` makes one from the rest, marked
interrupted, with the planned cases that have no result listed as not run; ``lemonade run --resume`` runs those.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .errors import BadInput
from .processes import ProcInfo
from .results import read_partial

RUN_FILE = "run.json"
PLANNED_FILE = "planned.json"
KILLED = "the run ended without finishing (killed, e.g. with SIGKILL, or the machine stopped)"


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def read_run_meta(out: Path) -> dict[str, Any]:
    p = out / RUN_FILE
    if not p.is_file():
        raise BadInput(f"{out}: not a run directory (no {RUN_FILE})")
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInput(f"{p}: not a run.json file: {e}") from None
    if not isinstance(meta, dict):
        raise BadInput(f"{p}: not a run.json file")
    return meta


def write_run_meta(out: Path, meta: dict[str, Any]) -> None:
    tmp = out / f".{RUN_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    tmp.replace(out / RUN_FILE)


def write_planned(out: Path, cases: list[dict[str, Any]]) -> None:
    """The run's selection, whole or not at all (every pytest process of the run writes the same list)."""
    tmp = out / f".{PLANNED_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps({"written": now_iso(), "cases": cases}, indent=1), encoding="utf-8")
    tmp.replace(out / PLANNED_FILE)


def read_planned(out: Path) -> list[dict[str, Any]] | None:
    """The planned cases, or None when the run ended before its pytest processes collected them."""
    try:
        return json.loads((out / PLANNED_FILE).read_text(encoding="utf-8"))["cases"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def done_nodeids(out: Path) -> set[str]:
    """Cases that have a result in results.d (a case cut short by the end of the run has none)."""
    return {r.get("nodeid", "") for r in read_partial(out / "results.d")}


def not_run(planned: list[dict[str, Any]] | None, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    done = {r.get("nodeid", "") for r in results}
    return [c for c in planned or [] if c["nodeid"] not in done]


def still_running(meta: dict[str, Any]) -> bool:
    """Whether the ``lemonade run`` that wrote ``meta`` is alive (the same process: PID and start time)."""
    pid, start = meta.get("pid"), meta.get("pid_start")
    if not isinstance(pid, int):
        return False
    info = ProcInfo.read(pid)
    return info is not None and info.start == start


def plan_status(out: Path, results: list[dict[str, Any]]) -> dict[str, Any]:
    """What the run section says about its plan: how many cases were planned and which have no result."""
    planned = read_planned(out)
    if planned is None:
        return {"planned": None, "not_run": []}
    return {"planned": len(planned), "not_run": not_run(planned, results)}


def interruption(out: Path, by: str, at: str, message: str) -> dict[str, Any]:
    """The run section's ``interrupted`` entry: by what, when, and what the reaper ended, if it had to."""
    entry: dict[str, Any] = {"by": by, "at": at, "message": message}
    if read_planned(out) is None:
        entry["note"] = "the run ended before its cases were collected: what it would have run is not known"
    reaped = out / "processes.d" / "reaper.log"
    if reaped.is_file():
        lines = reaped.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        entry["reaper"] = next((line for line in reversed(lines) if not line.startswith(" ")), "")
    return entry


def partial_meta(out: Path) -> tuple[dict[str, Any], bool]:
    """run.json of a run without results.json, marked interrupted (or in progress, when it still runs)."""
    meta = read_run_meta(out)
    live = still_running(meta)
    meta.update(plan_status(out, read_partial(out / "results.d")))
    meta["interrupted"] = (interruption(out, "in progress", now_iso(), f"the run is still going (pid {meta['pid']})")
                           if live else interruption(out, "unknown", now_iso(), KILLED))
    return meta, live


def check_resumable(out: Path) -> dict[str, Any]:
    """run.json of a run that ``--resume`` can continue (a BadInput naming what is wrong otherwise)."""
    meta = read_run_meta(out)
    if "options" not in meta:
        raise BadInput(f"{out}: run.json records no options (a load run, or made by an older suite): it cannot be resumed")
    if still_running(meta):
        raise BadInput(f"{out}: the run is still going (pid {meta['pid']}); resume it once it ended")
    return meta
