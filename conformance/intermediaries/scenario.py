"""Scenario strings and the registry of intermediaries: parse, validate, fill depth defaults, describe.

Grammar: ``direct`` or ``ELEMENT[+ELEMENT...]``, ELEMENT = ``name[:key=value[,key=value...]]``.
Example: ``nat-idle:timeout=30,mode=silent`` or ``link:latency=200+nat-idle:timeout=60``.
The canonical string (every parameter, in declaration order) is what results record.

The registry holds one ``Intermediary`` per name. An emulated one is an ``Emulator``: declared in its addon
module (``SCENARIO = Emulator(..., addon=TheAddon)``), its parameters are the addon's own mitmproxy options
(``TheAddon.OPTIONS``), so a scenario string and ``mitmdump --set`` accept and refuse the same values. Other
kinds register a plain ``Intermediary`` with ``register()``: a **real** element (``real-nginx``, ``real-nat``,
...; conformance/intermediaries/real/) names the NetworkPath subclass that runs the actual program (``real=``)
and stands alone; it names the emulated elements it corresponds to (``emulates=``), so
``scenario.element("nat-idle")`` under ``real-nat:mode=strict`` answers the matching ``nat-idle:mode=silent``.
``preset:NAME`` expands a field preset (profiles/presets/) into its composition for the depth.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Callable, Mapping

from ..errors import BadInput

DEPTHS = ("quick", "full")
ENDPOINTS = ("imap", "imaps", "submission", "submissions", "jmap")


@dataclass(frozen=True)
class Param:
    """One parameter of an intermediary, declared once.

    The scenario grammar reads ``name``, ``type``, the depth defaults, ``choices``, ``unit`` and ``check``. An
    emulator's addon declares the same object as its mitmproxy option ``option`` (``common.add_options`` in
    ``load()``: the full-depth default, the help, ``choices=``) and validates it in ``configure()``, so
    ``--scenario nat-idle:mode=bogus`` and ``mitmdump --set nat_idle_mode=bogus`` are refused alike.
    """

    name: str
    type: type  # float, int or str
    quick: Any
    full: Any
    help: str
    choices: tuple[str, ...] = ()
    unit: str = ""
    check: Callable[[Any], str | None] | None = None  # returns what is wrong with a value, or None
    option: str = ""  # the mitmproxy option carrying it (an emulator's addon); "" when there is none
    scenario: bool = True  # False: a setting for standalone mitmdump only, not a scenario parameter

    def default(self, depth: str) -> Any:
        return self.quick if depth == "quick" else self.full

    def parse(self, raw: Any) -> Any:
        """The typed, validated value of ``raw`` (text from a scenario string or ``--set``, or a typed value);
        ValueError saying what is wrong otherwise."""
        try:
            value = self.type(raw)
        except (TypeError, ValueError):
            raise ValueError(f"must be {self.type.__name__}, got {raw!r}") from None
        if self.check is not None and (problem := self.check(value)):
            raise ValueError(f"{problem}, got {raw!r}")
        if self.choices and value not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)}, got {raw!r}")
        if self.type in (int, float) and value < 0:
            raise ValueError("must not be negative")
        return value

    def convert(self, raw: str, where: str) -> Any:
        try:
            return self.parse(raw)
        except ValueError as e:
            raise BadInput(f"{where}: parameter '{self.name}' {e}") from None

    # -- as a mitmproxy option ---------------------------------------------------------------------
    @property
    def option_type(self) -> type:
        """mitmproxy's ``--set`` parses only str, int and bool: a float travels as text (e.g. "0.5")."""
        return str if self.type is float else self.type

    def option_value(self, value: Any) -> Any:
        return _fmt(value) if self.type is float else value


@dataclass(frozen=True)
class Intermediary:
    """What the registry knows of one kind of intermediary: its name, the path it sits on ("tcp": a reverse TCP
    proxy in front of every endpoint, "http-forward": an explicit HTTP proxy, "http-reverse": a reverse HTTP
    proxy for jmap), its parameters and the endpoints it can carry. How it runs: an ``Emulator`` is mitmproxy
    addons in the path's master; a real program names the NetworkPath subclass that runs it (``real``).
    ``kind`` says which (``lemonade scenarios list`` shows it)."""

    name: str
    path: str
    summary: str
    params: tuple[Param, ...] = ()
    endpoints: tuple[str, ...] = ENDPOINTS
    # a real program: real(scenario, target, transcript) -> the case's path (a NetworkPath subclass)
    real: Callable[..., Any] | None = None
    # the emulated elements that behave alike with these parameters: params -> ((name, {param: value}), ...)
    emulates: Callable[[dict[str, Any]], tuple[tuple[str, dict[str, Any]], ...]] | None = None

    @property
    def kind(self) -> str:
        return "real" if self.real is not None else "emulated"

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


@dataclass(frozen=True)
class Emulator(Intermediary):
    """An intermediary emulated by one mitmproxy addon class in the path's master. Its parameters are the
    addon's ``OPTIONS`` that are scenario parameters; ``resolve(params, target_endpoints)`` adds option values
    that depend on the target (https-only's endpoint ports)."""

    addon: type | None = None
    resolve: Callable[[dict[str, Any], dict[str, tuple[str, int]]], dict[str, Any]] | None = None
    params: tuple[Param, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        if self.addon is None:
            raise TypeError(f"emulator {self.name} names no addon class")
        object.__setattr__(self, "params", tuple(p for p in getattr(self.addon, "OPTIONS", ()) if p.scenario))

    def build(self, values: dict[str, Any],
              target_endpoints: dict[str, tuple[str, int]]) -> tuple[list[Any], dict[str, Any]]:
        """A fresh addon and the mitmproxy option values for one scenario element's parameter values.
        ``target_endpoints``: endpoint name -> (scheme, port) of the target behind the path."""
        options = {p.option: p.option_value(values[p.name]) for p in self.params if p.option}
        if self.resolve is not None:
            options.update(self.resolve(values, target_endpoints))
        return [self.addon()], options


REGISTRY: dict[str, Intermediary] = {}


def register(spec: Intermediary) -> Intermediary:
    """Add an intermediary to the registry (the built-in ones are registered by ``builtin.py``)."""
    known = REGISTRY.get(spec.name)
    if known is not None and known != spec:
        raise ValueError(f"an intermediary named {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec
    return spec


def registry() -> Mapping[str, Intermediary]:
    """Every registered intermediary by name, the built-in ones included (read-only)."""
    from . import (  # noqa: F401  importing them registers the built-in emulators and real programs once
        builtin,
        real,
    )

    return MappingProxyType(REGISTRY)


@dataclass(frozen=True)
class Element:
    name: str
    params: tuple[tuple[str, Any], ...]

    @property
    def spec(self) -> Intermediary:
        return registry()[self.name]

    def get(self, key: str) -> Any:
        return dict(self.params)[key]

    @property
    def equivalents(self) -> tuple["Element", ...]:
        """The emulated elements a real element corresponds to (empty for an emulated one)."""
        if self.spec.emulates is None:
            return ()
        out = []
        for name, values in self.spec.emulates(dict(self.params)):
            spec = registry()[name]
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
    known = registry()
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
        if name not in known:
            raise BadInput(f"{where}: unknown intermediary '{name}' (known: direct, {', '.join(sorted(known))}; "
                           "see 'lemonade scenarios list')")
        if name in seen:
            raise BadInput(f"{where}: '{name}' appears twice")
        seen.add(name)
        spec = known[name]
        given: dict[str, Any] = {}
        for kv in filter(None, (a.strip() for a in args.split(","))):
            key, eq, value = kv.partition("=")
            if not eq:
                raise BadInput(f"{where}: '{kv}' is not key=value")
            p = spec.param(key.strip())
            if p is None:
                params = ", ".join(x.name for x in spec.params) or "none"
                raise BadInput(f"{where}: '{name}' has no parameter '{key.strip()}' (parameters: {params})")
            given[p.name] = p.convert(value.strip(), where)
        params = tuple((p.name, given.get(p.name, p.default(depth))) for p in spec.params)
        elements.append(Element(name, params))
    real = [e.name for e in elements if e.spec.kind == "real"]
    if real and len(elements) > 1:
        raise BadInput(f"scenario {raw!r}: {real[0]} runs a real program and stands alone "
                       "(compose emulated intermediaries with '+', or use a preset)")
    # several http-forward elements (https-only+inspecting) compose into one explicit proxy
    return Scenario(tuple(elements), depth, raw)


def describe_all(depth: str = "quick") -> list[dict[str, Any]]:
    out = [{"name": "direct", "kind": "-", "path": "-", "summary": "No intermediary: clients talk to the target "
            "directly.", "params": []}]
    for spec in sorted(registry().values(), key=lambda s: (s.kind, s.name)):
        out.append({
            "name": spec.name, "kind": spec.kind, "path": spec.path, "summary": spec.summary,
            "params": [{"name": p.name, "type": p.type.__name__, "quick": p.quick, "full": p.full,
                        "unit": p.unit, "choices": list(p.choices), "help": p.help} for p in spec.params],
        })
    from .presets import describe_presets

    out += describe_presets()
    return out
