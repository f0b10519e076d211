"""Coverage per profile: which requirements a run verified, failed, found not applicable, or never tested.

"untested" means no check covers the requirement at all, "untestable" that the catalog says no black-box
check can (with the reason), so a reader never mistakes "no check" for "pass"; "not run" means a check
exists but this run did not select it (for example ``-k`` or ``--scenario`` filtered it out).

A requirement's bucket comes from the verdicts the checks gave that requirement (``requirement_verdicts``),
not from the verdict of the whole result: a check that fails only uidplus.appenduid still verifies the
other requirements it names. ``informational`` (observed, no rule judged) never verifies a requirement.

The bucket keys are part of results.json and stable: verified, failed, non_strict, not_applicable, error,
skipped, not_run, untested, untestable (lists of ids), total and covered (numbers). ``known_failure``
(xfail against a baseline), ``levels`` and ``requirements`` (one row per id) were added later, then
``informational`` (schema version 2).
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from .catalog import Catalog
from .verdicts import requirement_verdicts

GOOD = ("pass", "xpass")  # xpass: the requirement held, only the baseline is stale
BAD = ("fail",)
BUCKETS = ("verified", "failed", "non_strict", "known_failure", "informational", "not_applicable", "error",
           "skipped", "not_run", "untested", "untestable")


def checks_by_requirement() -> dict[str, list[str]]:
    """Requirement id -> the checks (family/name) that name it, from the checks' markers."""
    if _warming is not None:
        _warming.join()
    out: dict[str, list[str]] = {}
    for info in _index():
        for rid in info.requirements:
            out.setdefault(rid, []).append(info.check)
    return out


@functools.lru_cache(maxsize=1)
def _index() -> tuple:
    from .checks import index

    return tuple(index())


_warming: threading.Thread | None = None


def warm_index() -> None:
    """Read the checks' markers in the background (importing every check module, mitmproxy with them, takes the
    run's own process most of a second): ``lemonade run`` starts it while the cases run, so the coverage of its
    results is not computed on the run's critical path. The checks do not change during a run."""
    global _warming
    if _warming is None:
        _warming = threading.Thread(target=_index, name="lemonade-index", daemon=True)
        _warming.start()


def status(verdicts: list[str], has_check: bool, untestable: bool) -> str:
    """The bucket of one requirement given every verdict of the checks that cover it in this run."""
    if untestable:
        return "untestable"
    if not has_check:
        return "untested"
    if not verdicts:
        return "not_run"
    if any(v in BAD for v in verdicts):
        return "failed"
    if "error" in verdicts:
        return "error"
    if "xfail" in verdicts:
        return "known_failure"
    if "non-strict" in verdicts:
        return "non_strict"
    if any(v in GOOD for v in verdicts):
        return "verified"
    if "informational" in verdicts:
        return "informational"  # observed and reported, but no rule was judged: never verified
    if all(v == "not-applicable" for v in verdicts):
        return "not_applicable"
    return "skipped"


def coverage_for(catalog: Catalog, profiles: list[str], results: list[dict[str, Any]],
                 by_req: dict[str, list[str]] | None = None) -> dict[str, Any]:
    by_req = checks_by_requirement() if by_req is None else by_req
    verdicts: dict[str, list[str]] = {}
    for r in results:
        for rid, v in requirement_verdicts(r).items():
            verdicts.setdefault(rid, []).append(v["verdict"])
    out: dict[str, Any] = {}
    for name in profiles:
        prof = catalog.profile(name)
        buckets: dict[str, list[str]] = {k: [] for k in BUCKETS}
        levels: dict[str, int] = {}
        rows = []
        for rid in prof.ids:
            req = catalog.requirements[rid]
            level = catalog.level(rid, [name])
            levels[level] = levels.get(level, 0) + 1
            st = status(verdicts.get(rid, []), rid in by_req, bool(req.untestable))
            buckets[st].append(rid)
            row = {"id": rid, "level": level, "family": req.family, "status": st, "checks": by_req.get(rid, [])}
            if req.untestable:
                row["untestable"] = req.untestable
            rows.append(row)
        out[name] = {"title": prof.title, "total": len(prof.ids), **buckets,
                     "covered": len(prof.ids) - len(buckets["untested"]) - len(buckets["untestable"]),
                     "levels": dict(sorted(levels.items())), "requirements": rows}
    return out
