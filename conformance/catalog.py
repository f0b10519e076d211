"""Requirements and profiles as data: load profiles/**/*.yaml, validate, resolve levels and parameters.

Layout: ``profiles/requirements/*.yaml`` hold requirements (one file per source document),
``profiles/*.yaml`` hold profiles. Every mistake is a CatalogError naming the file and the entry.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .data import data_dir
from .errors import BadInput

PROFILES_DIR = data_dir("profiles")
LEVELS = ("MUST", "SHOULD", "MAY", "PROFILE")
STRICT_LEVELS = ("MUST", "PROFILE")  # a failure at these levels fails a run
FAMILIES = ("http-binding", "push", "reconnect", "envelope-security", "transport-security", "capability", "client")
ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]*(\.[a-z0-9][a-z0-9-]*){1,5}$")
PARAM_TYPES = {"float": float, "int": int, "str": str, "bool": bool, "list": list}


class CatalogError(BadInput):
    """The catalog or a profile is inconsistent; the message names file and entry."""


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    quick: Any
    full: Any
    unit: str = ""
    help: str = ""

    def value(self, depth: str) -> Any:
        return self.quick if depth == "quick" else self.full


@dataclass
class Requirement:
    id: str
    title: str
    level: str
    family: str
    source: dict[str, Any]
    parameters: dict[str, Parameter] = field(default_factory=dict)
    untestable: str | None = None
    file: str = ""

    @property
    def source_text(self) -> str:
        s = self.source
        if "rfc" in s and str(s["rfc"]) != "0":
            return f"RFC {s['rfc']}" + (f" §{s['section']}" if s.get("section") else "")
        if "spec" in s or "rfc" in s:  # rfc: 0 is the older spelling of "not an RFC", the section names it
            name = str(s.get("spec") or "")
            return " ".join(x for x in (name, f"§{s['section']}" if name and s.get("section") else
                                        str(s.get("section") or "")) if x)
        return "derived: " + ", ".join(str(d) for d in s.get("documents", []))

    @property
    def url(self) -> str | None:
        s = self.source
        if "rfc" not in s or str(s["rfc"]) == "0":
            return None
        base = f"https://www.rfc-editor.org/rfc/rfc{s['rfc']}"
        sec = str(s.get("section") or "").split()[0].rstrip(",;") if s.get("section") else ""
        if sec and re.match(r"^[\dA-Z][\d.]*$", sec):
            prefix = "appendix-" if sec[0].isalpha() else "section-"
            return f"{base}#{prefix}{sec.rstrip('.')}"
        return base


@dataclass
class ProfileEntry:
    id: str
    level: str | None = None
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Profile:
    name: str
    title: str
    description: str
    entries: dict[str, ProfileEntry]
    file: str = ""

    @property
    def ids(self) -> list[str]:
        return list(self.entries)


@dataclass
class Catalog:
    requirements: dict[str, Requirement]
    profiles: dict[str, Profile]

    # -- queries -------------------------------------------------------------------------------
    def requirement(self, rid: str) -> Requirement:
        return self.requirements[rid]

    def profile(self, name: str) -> Profile:
        if name not in self.profiles:
            raise BadInput(f"unknown profile '{name}' (known: {', '.join(sorted(self.profiles))}; "
                           "see 'lemonade profiles list')")
        return self.profiles[name]

    def level(self, rid: str, profiles: list[str] | None = None) -> str:
        """The effective level: the strictest override among the given profiles, else the catalog's."""
        levels = [self.profiles[p].entries[rid].level for p in (profiles or [])
                  if p in self.profiles and rid in self.profiles[p].entries and self.profiles[p].entries[rid].level]
        if levels:
            return min(levels, key=LEVELS.index) if "PROFILE" not in levels else "PROFILE"
        return self.requirements[rid].level

    def parameter(self, rid: str, name: str, depth: str, profiles: list[str] | None = None) -> Any:
        for p in profiles or []:
            prof = self.profiles.get(p)
            entry = prof.entries.get(rid) if prof else None
            if entry and name in entry.parameters:
                over = entry.parameters[name]
                if depth in over:
                    return over[depth]
        req = self.requirements[rid]
        if name not in req.parameters:
            raise KeyError(f"requirement {rid} has no parameter '{name}'")
        return req.parameters[name].value(depth)

    def ids_for(self, profiles: list[str]) -> set[str]:
        out: set[str] = set()
        for p in profiles:
            out.update(self.profile(p).ids)
        return out


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when available: 10x faster


def _load_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as e:
        raise CatalogError(f"{path}: not valid YAML: {e}") from None


def value_has_type(value: Any, type_name: str) -> bool:
    """True if a parameter value fits its declared type (an int is a float; a bool is neither)."""
    typ = PARAM_TYPES[type_name]
    if isinstance(value, bool) and typ is not bool:
        return False
    return isinstance(value, typ) or (typ is float and isinstance(value, int))


def _parse_parameters(raw: Any, where: str) -> dict[str, Parameter]:
    if raw in (None, {}):
        return {}
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: parameters must be a mapping of name -> {{type, quick, full}}")
    out = {}
    for name, spec in raw.items():
        if not isinstance(spec, dict) or not {"type", "quick", "full"} <= set(spec):
            raise CatalogError(f"{where}: parameter '{name}' needs type, quick and full")
        unknown = set(spec) - {"type", "quick", "full", "unit", "help"}
        if unknown:
            raise CatalogError(f"{where}: parameter '{name}': unknown key(s) {', '.join(sorted(unknown))}")
        typ = PARAM_TYPES.get(spec["type"])
        if typ is None:
            raise CatalogError(f"{where}: parameter '{name}': type must be one of {', '.join(PARAM_TYPES)}")
        for depth in ("quick", "full"):
            if not value_has_type(spec[depth], spec["type"]):
                raise CatalogError(f"{where}: parameter '{name}': {depth} value {spec[depth]!r} is not {spec['type']}")
        for key in ("unit", "help"):
            if key in spec and not isinstance(spec[key], str):
                raise CatalogError(f"{where}: parameter '{name}': {key} must be a string (quote help text with commas)")
        out[name] = Parameter(name, spec["type"], spec["quick"], spec["full"], spec.get("unit", ""), spec.get("help", ""))
    return out


_REQ_KEYS = {"id", "title", "source", "level", "family", "parameters", "untestable", "notes", "test"}


def load_requirements(directory: Path) -> dict[str, Requirement]:
    reqs: dict[str, Requirement] = {}
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise CatalogError(f"{directory}: no requirement files (*.yaml)")
    for path in files:
        data = _load_yaml(path)
        if not isinstance(data, dict) or not isinstance(data.get("requirements"), list):
            raise CatalogError(f"{path}: expected a mapping with a 'requirements' list")
        for i, raw in enumerate(data["requirements"], 1):
            where = f"{path.name} requirement #{i}"
            if not isinstance(raw, dict):
                raise CatalogError(f"{where}: must be a mapping")
            rid = raw.get("id")
            if not isinstance(rid, str) or not ID_RE.match(rid):
                raise CatalogError(f"{where}: id {rid!r} must look like family.topic.rule (lower case, dots)")
            where = f"{path.name} requirement {rid}"
            unknown = set(raw) - _REQ_KEYS
            if unknown:
                raise CatalogError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
            if rid in reqs:
                raise CatalogError(f"{where}: duplicate id (also in {reqs[rid].file})")
            for key in ("title", "source", "level", "family"):
                if key not in raw:
                    raise CatalogError(f"{where}: missing '{key}'")
            if raw["level"] not in LEVELS:
                raise CatalogError(f"{where}: level {raw['level']!r} must be one of {', '.join(LEVELS)}")
            if raw["family"] not in FAMILIES:
                raise CatalogError(f"{where}: family {raw['family']!r} must be one of {', '.join(FAMILIES)}")
            if not isinstance(raw["title"], str) or not raw["title"].strip():
                raise CatalogError(f"{where}: title must be a non-empty sentence")
            untestable = raw.get("untestable")
            if untestable is not None and (not isinstance(untestable, str) or not untestable.strip()):
                raise CatalogError(f"{where}: untestable must be the reason (a non-empty string), "
                                   f"not {untestable!r}")
            src = raw["source"]
            if not isinstance(src, dict) or not (("rfc" in src) or ("spec" in src)
                                                 or ("derived" in src and "documents" in src)):
                raise CatalogError(f"{where}: source must be {{rfc, section}}, {{spec, section}} (a non-RFC "
                                   "document such as the WHATWG HTML standard) or {{derived, documents}}")
            if "derived" in src and raw["level"] != "PROFILE":
                raise CatalogError(f"{where}: a derived requirement has level PROFILE")
            if "rfc" in src and not re.fullmatch(r"0|[1-9][0-9]{0,4}", str(src["rfc"])):
                raise CatalogError(f"{where}: source rfc {src['rfc']!r} must be an RFC number "
                                   "(use {spec, section} for documents that are not RFCs)")
            if "derived" in src and not (isinstance(src["documents"], list) and src["documents"]):
                raise CatalogError(f"{where}: a derived source names its documents as a non-empty list")
            reqs[rid] = Requirement(rid, str(raw["title"]).strip(), raw["level"], raw["family"], src,
                                    _parse_parameters(raw.get("parameters"), where),
                                    untestable.strip() if untestable else None, path.name)
    return reqs


_PROFILE_KEYS = {"name", "title", "description", "requirements", "include", "exclude", "levels"}


def _patterns(data: dict[str, Any], key: str, where: str) -> list[str]:
    raw = data.get(key) or []
    if not isinstance(raw, list) or not all(isinstance(p, str) and p for p in raw):
        raise CatalogError(f"{where}: '{key}' must be a list of id patterns such as \"idle.*\"")
    return raw


def _profile_entry(raw: Any, reqs: dict[str, Requirement], where: str) -> ProfileEntry:
    """One explicit entry: an id, or {id, level, parameters: {name: {quick, full}}}."""
    if isinstance(raw, str):
        entry = ProfileEntry(raw)
    elif isinstance(raw, dict):
        if "id" not in raw or set(raw) - {"id", "level", "parameters"}:
            raise CatalogError(f"{where}: entry {raw!r} needs 'id' and only 'level'/'parameters' besides")
        if not isinstance(raw.get("parameters") or {}, dict):
            raise CatalogError(f"{where}: entry {raw['id']}: parameters must map names to {{quick, full}}")
        entry = ProfileEntry(str(raw["id"]), raw.get("level"), raw.get("parameters") or {})
    else:
        raise CatalogError(f"{where}: entry {raw!r} must be an id or a mapping with 'id'")
    if entry.id not in reqs:
        raise CatalogError(f"{where} names requirement '{entry.id}', which does not exist in profiles/requirements/")
    if entry.level is not None and entry.level not in LEVELS:
        raise CatalogError(f"{where}: level override {entry.level!r} for {entry.id} must be one of {', '.join(LEVELS)}")
    req = reqs[entry.id]
    for pname, over in entry.parameters.items():
        if pname not in req.parameters:
            known = ", ".join(req.parameters) or "none"
            raise CatalogError(f"{where}: {entry.id} has no parameter '{pname}' (it has: {known})")
        if not isinstance(over, dict) or not over or set(over) - {"quick", "full"}:
            raise CatalogError(f"{where}: {entry.id} parameter '{pname}': the override maps quick and/or full to values")
        for depth, value in over.items():
            if not value_has_type(value, req.parameters[pname].type):
                raise CatalogError(f"{where}: {entry.id} parameter '{pname}': {depth} value {value!r} "
                                   f"is not {req.parameters[pname].type}")
    return entry


def load_profiles(directory: Path, reqs: dict[str, Requirement]) -> dict[str, Profile]:
    """Profiles: explicit ``requirements`` entries, plus ids matched by ``include`` minus ``exclude`` patterns.

    ``levels`` (optional) limits what the include patterns pick up to those catalog levels; explicit
    entries are always kept.
    """
    profiles: dict[str, Profile] = {}
    for path in sorted(directory.glob("*.yaml")):
        data = _load_yaml(path)
        if not isinstance(data, dict):
            raise CatalogError(f"{path.name}: a profile is a mapping (name, title, description, requirements, include)")
        unknown = set(data) - _PROFILE_KEYS
        if unknown:
            raise CatalogError(f"{path.name}: unknown key(s) {', '.join(sorted(unknown))} "
                               f"(allowed: {', '.join(sorted(_PROFILE_KEYS))})")
        name = data.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", name):
            raise CatalogError(f"{path.name}: 'name' must be a lower-case word such as 'imap-push', not {name!r}")
        if name in profiles:
            raise CatalogError(f"{path.name}: duplicate profile name '{name}' (also {profiles[name].file})")
        where = f"profile '{name}' ({path.name})"
        explicit = data.get("requirements") or []
        if not isinstance(explicit, list):
            raise CatalogError(f"{where}: 'requirements' must be a list of ids or {{id, level, parameters}}")
        entries: dict[str, ProfileEntry] = {}
        for raw in explicit:
            entry = _profile_entry(raw, reqs, where)
            if entry.id in entries:
                raise CatalogError(f"{where}: requirement '{entry.id}' is listed twice")
            entries[entry.id] = entry
        excluded: set[str] = set()
        for pattern in _patterns(data, "exclude", where):
            matched = {rid for rid in reqs if fnmatch.fnmatchcase(rid, pattern)}
            if not matched:
                raise CatalogError(f"{where}: exclude pattern '{pattern}' matches no requirement")
            clash = sorted(matched & set(entries))
            if clash:
                raise CatalogError(f"{where}: exclude pattern '{pattern}' removes explicitly listed {', '.join(clash)}")
            excluded |= matched
        levels = data.get("levels") or list(LEVELS)
        if not isinstance(levels, list) or not levels or set(levels) - set(LEVELS):
            raise CatalogError(f"{where}: 'levels' (the catalog levels include patterns pick up) must be a list "
                               f"drawn from {', '.join(LEVELS)}, not {data.get('levels')!r}")
        for pattern in _patterns(data, "include", where):
            matched = [rid for rid in reqs if fnmatch.fnmatchcase(rid, pattern)]
            if not matched:
                raise CatalogError(f"{where}: include pattern '{pattern}' matches no requirement")
            for rid in matched:
                if rid not in excluded and reqs[rid].level in levels:
                    entries.setdefault(rid, ProfileEntry(rid))
        if not entries:
            raise CatalogError(f"{where} lists no requirements")
        profiles[name] = Profile(name, str(data.get("title") or name), str(data.get("description") or "").strip(),
                                 entries, path.name)
    if not profiles:
        raise CatalogError(f"{directory}: no profiles (*.yaml)")
    return profiles


def load_catalog(root: Path | None = None) -> Catalog:
    root = root or PROFILES_DIR
    reqs = load_requirements(root / "requirements")
    return Catalog(reqs, load_profiles(root, reqs))
