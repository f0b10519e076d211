"""Coverage per profile: which requirements a run verified, failed, found not applicable, or never tested.

"untested" means no check covers the requirement at all (or the catalog marks it untestable), so a reader
never mistakes "no check" for "pass"; "not run" means a check exists but this run did not select it.
"""

from __future__ import annotations

from typing import Any

from .catalog import Catalog

GOOD = ("pass", "xfail", "informational")
BAD = ("fail", "xpass")


def checks_by_requirement() -> dict[str, list[str]]:
    from .checks import index

    out: dict[str, list[str]] = {}
    for info in index():
        for rid in info.requirements:
            out.setdefault(rid, []).append(info.check)
    return out


def coverage_for(catalog: Catalog, profiles: list[str], results: list[dict[str, Any]]) -> dict[str, Any]:
    by_req = checks_by_requirement()
    verdicts: dict[str, list[str]] = {}
    for r in results:
        for rid in r.get("requirements", []):
            verdicts.setdefault(rid, []).append(r["verdict"])
    out: dict[str, Any] = {}
    for name in profiles:
        prof = catalog.profile(name)
        buckets: dict[str, list[str]] = {k: [] for k in
                                         ("verified", "failed", "non_strict", "not_applicable", "error", "skipped",
                                          "not_run", "untested", "untestable")}
        for rid in prof.ids:
            req = catalog.requirements[rid]
            vs = verdicts.get(rid, [])
            if req.untestable:
                buckets["untestable"].append(rid)
            elif rid not in by_req:
                buckets["untested"].append(rid)
            elif not vs:
                buckets["not_run"].append(rid)
            elif any(v in BAD for v in vs):
                buckets["failed"].append(rid)
            elif "error" in vs:
                buckets["error"].append(rid)
            elif "non-strict" in vs:
                buckets["non_strict"].append(rid)
            elif any(v in GOOD for v in vs):
                buckets["verified"].append(rid)
            elif all(v == "not-applicable" for v in vs):
                buckets["not_applicable"].append(rid)
            else:
                buckets["skipped"].append(rid)
        out[name] = {"title": prof.title, "total": len(prof.ids), **buckets,
                     "covered": len(prof.ids) - len(buckets["untested"]) - len(buckets["untestable"])}
    return out
