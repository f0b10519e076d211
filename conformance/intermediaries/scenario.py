"""Scenario strings and the registry of intermediaries: parse, validate, fill depth defaults, describe.

Grammar: ``direct`` or ``ELEMENT[+ELEMENT...]``, ELEMENT = ``name[:key=value[,key=value...]]``.
Example: ``nat-idle:timeout=30,mode=silent`` or ``link:latency=200+nat-idle:timeout=60``.
The canonical string (every parameter, in declaration order) is what results record.
A **real** element (``real-nginx``, ``real-nat``, ...; conformance/intermediaries/real/) runs the actual program
and stands alone; it names the emulated elements it corresponds to, so ``scenario.element("nat-idle")`` under
``real-nat:mode=strict`` answers the matching ``nat-idle:mode=silent``. ``preset:NAME`` expands a field preset
(profiles/presets/) into its composition for the depth.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

from ..errors import BadInput

DEPTHS = ("quick", "full")


@dataclass(frozen=True)
class Param:
    name: str
    type: type  # float, int or str
    quick: Any
    full: Any
    help: str
    choices: tuple[str, ...] = ()
    unit: str = ""
    check: Callable[[Any], str | None] | None = None  # returns what is wrong with a value, or None

    def default(self, depth: str) -> Any:
        return self.quick if depth == "quick" else self.full

    def convert(self, raw: str, where: str) -> Any:
        try:
            value = self.type(raw)
        except ValueError:
            raise BadInput(f"{where}: parameter '{self.name}' must be {self.type.__name__}, got {raw!r}") from None
        if self.check is not None and (problem := self.check(value)):
            raise BadInput(f"{where}: parameter '{self.name}' {problem}, got {raw!r}")
        if self.choices and value not in self.choices:
            raise BadInput(f"{where}: parameter '{self.name}' must be one of {', '.join(self.choices)}, got {raw!r}")
        if self.type in (int, float) and value < 0:
            raise BadInput(f"{where}: parameter '{self.name}' must not be negative")
        return value


@dataclass(frozen=True)
class Intermediary:
    """One kind of intermediary: its name, the path it sits on, its parameters and how to build it."""

    name: str
    path: str  # "tcp" (reverse TCP proxy in front of every endpoint), "http-forward", "http-reverse"
    summary: str
    params: tuple[Param, ...] = ()
    # build(params) -> (list of addon objects, dict of mitmproxy option values)
    build: Callable[[dict[str, Any]], tuple[list[Any], dict[str, Any]]] | None = None
    endpoints: tuple[str, ...] = ("imap", "imaps", "submission", "submissions", "jmap")
    # a real program: real(scenario, target, transcript) -> the case's path (a NetworkPath subclass)
    real: Callable[..., Any] | None = None
    # the emulated elements that behave alike with these parameters: params -> ((name, {param: value}), ...)
    emulates: Callable[[dict[str, Any]], tuple[tuple[str, dict[str, Any]], ...]] | None = None

    @property
    def kind(self) -> str:
        return "real" if self.real is not None else "emulated"

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


REGISTRY: dict[str, Intermediary] = {}


def register(spec: Intermediary) -> Intermediary:
    REGISTRY[spec.name] = spec
    return spec


@dataclass(frozen=True)
class Element:
    name: str
    params: tuple[tuple[str, Any], ...]

    @property
    def spec(self) -> Intermediary:
        return REGISTRY[self.name]

    def get(self, key: str) -> Any:
        return dict(self.params)[key]

    @property
    def equivalents(self) -> tuple["Element", ...]:
        """The emulated elements a real element corresponds to (empty for an emulated one)."""
        if self.spec.emulates is None:
            return ()
        out = []
        for name, values in self.spec.emulates(dict(self.params)):
            spec = REGISTRY[name]
            out.append(Element(name, tuple((p.name, values[p.name]) for p in spec.params if p.name in values)))
        return tuple(out)

    def __str__(self) -> str:
        if not self.params:
            return self.name
        return self.name + ":" + ",".join(f"{k}={_fmt(v)}" for k, v in self.params)


@dataclass(frozen=True)
class Scenario:
    elements: tuple[Element, ...] = ()
    depth: str = "quick"
    given: str = field(default="direct", compare=False)  # as the user wrote it
    preset: str = ""  # the field preset this composition came from (profiles/presets/), if any

    @property
    def is_direct(self) -> bool:
        return not self.elements

    def __str__(self) -> str:
        if self.preset:
            return f"preset:{self.preset}"
        return self.composition

    @property
    def composition(self) -> str:
        """The elements with every parameter (a preset's expansion for its depth)."""
        return "direct" if self.is_direct else "+".join(str(e) for e in self.elements)

    def element(self, name: str) -> Element | None:
        """The element called ``name``, or the emulated equivalent a real element declares."""
        found = next((e for e in self.elements if e.name == name), None)
        if found is None:
            found = next((q for e in self.elements for q in e.equivalents if q.name == name), None)
        return found

    @property
    def names(self) -> set[str]:
        """Element names, with the emulated equivalents of real elements (checks pinned to ``nat-idle`` also
        run under ``real-nat``)."""
        if self.is_direct:
            return {"direct"}
        return {e.name for e in self.elements} | {q.name for e in self.elements for q in e.equivalents}

    @property
    def real(self) -> Element | None:
        return next((e for e in self.elements if e.spec.kind == "real"), None)

    def supports(self, endpoint: str) -> bool:
        return all(endpoint in e.spec.endpoints for e in self.elements)

    @property
    def paths(self) -> set[str]:
        return {e.spec.path for e in self.elements}


def _fmt(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def parse_scenario(text: str, depth: str = "quick") -> Scenario:
    """Parse and validate a scenario string; unknown names or parameters raise BadInput."""
    _load_builtin()
    if depth not in DEPTHS:
        raise BadInput(f"unknown depth {depth!r} (quick or full)")
    raw = (text or "").strip()
    if raw in ("", "direct"):
        return Scenario((), depth, "direct")
    if raw.startswith("preset:"):
        from .presets import expand

        composition = expand(raw.removeprefix("preset:").strip(), depth)
        return replace(parse_scenario(composition, depth), given=raw, preset=raw.removeprefix("preset:").strip())
    elements = []
    seen = set()
    for part in raw.split("+"):
        part = part.strip()
        name, _, args = part.partition(":")
        name = name.strip()
        where = f"scenario {raw!r}"
        if name not in REGISTRY:
            raise BadInput(f"{where}: unknown intermediary '{name}' (known: direct, {', '.join(sorted(REGISTRY))}; "
                           "see 'lemonade scenarios list')")
        if name in seen:
            raise BadInput(f"{where}: '{name}' appears twice")
        seen.add(name)
        spec = REGISTRY[name]
        given: dict[str, Any] = {}
        for kv in filter(None, (a.strip() for a in args.split(","))):
            key, eq, value = kv.partition("=")
            if not eq:
                raise BadInput(f"{where}: '{kv}' is not key=value")
            p = spec.param(key.strip())
            if p is None:
                known = ", ".join(x.name for x in spec.params) or "none"
                raise BadInput(f"{where}: '{name}' has no parameter '{key.strip()}' (parameters: {known})")
            given[p.name] = p.convert(value.strip(), where)
        params = tuple((p.name, given.get(p.name, p.default(depth))) for p in spec.params)
        elements.append(Element(name, params))
    real = [e.name for e in elements if e.spec.kind == "real"]
    if real and len(elements) > 1:
        raise BadInput(f"scenario {raw!r}: {real[0]} runs a real program and stands alone "
                       "(compose emulated intermediaries with '+', or use a preset)")
    # several http-forward elements (https-only+inspecting) compose into one explicit proxy
    return Scenario(tuple(elements), depth, raw)


_loaded = False


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        from . import (
            builtin,  # noqa: F401  registers the built-in intermediaries
            real,  # noqa: F401  registers the real programs
        )


def describe_all(depth: str = "quick") -> list[dict[str, Any]]:
    _load_builtin()
    out = [{"name": "direct", "kind": "-", "path": "-", "summary": "No intermediary: clients talk to the target "
            "directly.", "params": []}]
    for spec in sorted(REGISTRY.values(), key=lambda s: (s.kind, s.name)):
        out.append({
            "name": spec.name, "kind": spec.kind, "path": spec.path, "summary": spec.summary,
            "params": [{"name": p.name, "type": p.type.__name__, "quick": p.quick, "full": p.full,
                        "unit": p.unit, "choices": list(p.choices), "help": p.help} for p in spec.params],
        })
    from .presets import describe_presets

    out += describe_presets()
    return out
