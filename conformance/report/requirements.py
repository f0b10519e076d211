"""The `requirements` section of results.json: what the report needs to know about each requirement.

Written once at finalize time from the catalog, so a report renders from results.json alone (years later,
on another machine, after the catalog changed): title, level, source text, RFC link and the checks covering it.
"""

from __future__ import annotations

from typing import Any


def requirements_map(catalog, profiles: list[str], results: list[dict[str, Any]]) -> dict[str, Any]:
    from ..coverage import checks_by_requirement

    by_req = checks_by_requirement()
    ids = set(catalog.ids_for(profiles)) | {rid for r in results for rid in r.get("requirements", [])}
    out: dict[str, Any] = {}
    for rid in sorted(ids):
        req = catalog.requirements.get(rid)
        if req is None:
            continue
        entry: dict[str, Any] = {"title": req.title, "level": catalog.level(rid, profiles), "family": req.family,
                                 "source": req.source_text, "url": req.url,
                                 "profiles": [p for p in profiles if rid in catalog.profiles[p].entries],
                                 "checks": sorted(by_req.get(rid, []))}
        if req.untestable:
            entry["untestable"] = str(req.untestable)
        out[rid] = entry
    return out
