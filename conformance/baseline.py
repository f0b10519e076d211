"""Baselines: a TOML file of expected failures, each with a reason, that turn matching failures into xfail.

One ``[[expected]]`` table per known failure::

    [[expected]]
    check = "capability/store_capabilities"      # a check, a requirement, or both (that requirement of that check)
    requirement = "lemonade.store.capabilities"
    target = "dovecot"                           # target name as results.json shows it
    version = "Dovecot 2.3.*"                    # optional: glob over the target's version (as results.json shows it)
    scenario = "direct"                          # optional: only under this scenario
    client = "fetchmail"                         # only for results that judge this client (role client); without
                                                 # it, an entry applies to the server's own results only
    reason = "Dovecot 2.3 implements neither CONVERT nor CONTEXT=SORT"   # mandatory
    rfc = "RFC 5550 section 3.1"                 # optional citation
    expires = 2027-06-30                         # optional: from this day on the entry no longer applies

Entries apply to requirement verdicts. An entry naming a requirement turns that requirement's ``fail`` or
``non-strict`` into ``xfail`` and its ``pass`` into ``xpass``; an entry naming only a check does so for every
failing requirement of the check, or, when none fails any more, for its passes. The result's verdict is
then the worst of its requirement verdicts again, so a new failure of another requirement of the same check
still fails the run. ``xpass`` fails the run unless ``--allow-xpass`` (so fixed bugs get removed from the
baseline). Expired entries stop applying and are listed in the report. The original verdicts stay in the
result: ``baseline.original_verdict`` and, per requirement, ``requirement_verdicts[id].baseline``.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import BadInput
from .verdicts import case_id, requirement_verdicts, worst

KEYS = {"check", "requirement", "target", "version", "scenario", "client", "reason", "rfc", "expires"}
EXPECTED_FAILING = ("fail", "non-strict")  # verdicts a baseline entry expects and turns into xfail


@dataclass
class Entry:
    reason: str
    target: str
    check: str | None = None
    requirement: str | None = None
    version: str | None = None
    scenario: str | None = None
    client: str | None = None  # the client under test this entry is about (None: the server's own results)
    rfc: str | None = None
    expires: str | None = None  # ISO date
    index: int = 0  # position in the file, 1-based, for messages
    matched: list[str] = field(default_factory=list)  # case ids this entry applied to

    @property
    def subject(self) -> str:
        if self.check and self.requirement:
            return f"{self.requirement} of {self.check}"
        return self.check or self.requirement or "?"

    def expired(self, today: _dt.date) -> bool:
        return bool(self.expires) and _dt.date.fromisoformat(self.expires) <= today

    def matches(self, result: dict[str, Any], version: str) -> bool:
        if self.check and result.get("check") != self.check:
            return False
        if self.requirement and self.requirement not in result.get("requirements", []):
            return False
        if result.get("target") != self.target:
            return False
        is_client = result.get("role") == "client"
        if is_client != bool(self.client) or (self.client and result.get("subject") != self.client):
            return False
        if self.scenario and result.get("scenario") != self.scenario:
            return False
        if self.version and not fnmatch.fnmatchcase(version or "", self.version):
            return False
        return True

    def describe(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if v not in (None, [])}
        return d


@dataclass
class Baseline:
    path: str
    entries: list[Entry]

    def apply(self, doc: dict[str, Any], today: _dt.date | None = None, allow_xpass: bool = False) -> dict[str, Any]:
        """Rewrite verdicts in ``doc`` in place; record what was applied in ``doc['baseline']``."""
        today = today or _dt.date.today()
        versions = {t.get("name"): str(t.get("version") or "") for t in doc.get("run", {}).get("targets", [])}
        active = [e for e in self.entries if not e.expired(today)]
        for r in doc.get("results", []):
            rv = requirement_verdicts(r)
            original = r["verdict"]
            applied: list[Entry] = []
            for e in active:
                if e.matches(r, versions.get(r.get("target"), "")) and self._apply_entry(e, rv):
                    applied.append(e)
                    e.matched.append(case_id(r))
            if not applied:
                continue
            r["requirement_verdicts"] = rv
            r["verdict"] = worst(v["verdict"] for v in rv.values())
            if r["verdict"] == "xpass":
                first = next(e for e in applied if any(v.get("baseline", {}).get("entry") == e.index
                                                      and v["verdict"] == "xpass" for v in rv.values()))
                r["message"] = (f"expected to fail by baseline entry #{first.index} ({first.reason}), but passed: "
                                f"remove the entry. {r.get('message', '')}").strip()
            e = applied[0]
            r["baseline"] = {"original_verdict": original, "entry": e.index, "reason": e.reason,
                             **({"rfc": e.rfc} if e.rfc else {}), **({"expires": e.expires} if e.expires else {})}
        doc["baseline"] = {
            "file": self.path, "allow_xpass": allow_xpass, "date": today.isoformat(),
            "entries": [{**e.describe(), "status": ("expired" if e.expired(today) else
                                                    "applied" if e.matched else "unused")} for e in self.entries],
        }
        return doc

    @staticmethod
    def _apply_entry(e: Entry, rv: dict[str, dict[str, Any]]) -> bool:
        """Turn the verdicts this entry speaks for into xfail/xpass; False when it says nothing about them
        (error, not-applicable, informational and skipped are never excused or expected)."""
        ids = [e.requirement] if e.requirement else list(rv)
        ids = [rid for rid in ids if rid in rv and "baseline" not in rv[rid]]  # an earlier entry already spoke
        failing = [rid for rid in ids if rv[rid]["verdict"] in EXPECTED_FAILING]
        if not e.requirement and not failing and any(v["verdict"] not in ("pass", "not-applicable", "skipped")
                                                     for v in rv.values()):
            return False  # the check is not passing as a whole (error, informational): say nothing
        changed = failing or [rid for rid in ids if rv[rid]["verdict"] == "pass"]
        for rid in changed:
            was = rv[rid]["verdict"]
            rv[rid] = {**rv[rid], "verdict": "xfail" if was in EXPECTED_FAILING else "xpass",
                       "baseline": {"original_verdict": was, "entry": e.index, "reason": e.reason}}
        return bool(changed)


def load_baseline(path: str | Path, known_requirements: set[str] | None = None) -> Baseline:
    """Parse and validate a baseline file; any problem is a BadInput naming the file and entry."""
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"baseline {p}: no such file")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BadInput(f"baseline {p}: not valid TOML: {e}") from None
    extra = set(data) - {"expected"}
    if extra:
        raise BadInput(f"baseline {p}: unknown top-level key(s) {', '.join(sorted(extra))} (expected [[expected]] tables)")
    raw = data.get("expected", [])
    if not isinstance(raw, list) or not all(isinstance(x, dict) for x in raw):
        raise BadInput(f"baseline {p}: 'expected' must be an array of tables ([[expected]])")
    entries = []
    for i, item in enumerate(raw, 1):
        where = f"baseline {p}: entry #{i}"
        unknown = set(item) - KEYS
        if unknown:
            raise BadInput(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(KEYS))})")
        for k, v in item.items():
            if k != "expires" and not isinstance(v, str):
                raise BadInput(f"{where}: '{k}' must be a string, got {type(v).__name__}")
        if not item.get("reason", "").strip():
            raise BadInput(f"{where}: 'reason' is mandatory (say why this failure is expected)")
        if not item.get("target", "").strip():
            raise BadInput(f"{where}: 'target' is mandatory (the target name the failure is expected on)")
        if not item.get("check") and not item.get("requirement"):
            raise BadInput(f"{where}: give a 'check', a 'requirement', or both (that requirement as that check "
                           f"judges it)")
        if known_requirements is not None and item.get("requirement") and item["requirement"] not in known_requirements:
            raise BadInput(f"{where}: unknown requirement id '{item['requirement']}'")
        expires = item.get("expires")
        if expires is not None:
            if isinstance(expires, _dt.datetime):
                expires = expires.date()
            if isinstance(expires, str):
                try:
                    expires = _dt.date.fromisoformat(expires)
                except ValueError:
                    raise BadInput(f"{where}: 'expires' = {expires!r} is not a date (YYYY-MM-DD)") from None
            if not isinstance(expires, _dt.date):
                raise BadInput(f"{where}: 'expires' must be a date (YYYY-MM-DD)")
            expires = expires.isoformat()
        entries.append(Entry(reason=item["reason"].strip(), target=item["target"], check=item.get("check"),
                             requirement=item.get("requirement"), version=item.get("version"),
                             scenario=item.get("scenario"), client=item.get("client"), rfc=item.get("rfc"),
                             expires=expires, index=i))
    return Baseline(str(p), entries)
