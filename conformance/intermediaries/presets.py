"""Field presets: named compositions of scenarios with cited parameters (data in profiles/presets/*.yaml).

``expand(name, depth)`` gives the scenario string for a depth (``full`` uses the sourced values, ``quick`` the
scaled ones); ``describe_for_case`` is what a result records about the preset (measurement ``preset``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..data import data_dir
from ..errors import BadInput

PRESETS_DIR = data_dir("profiles") / "presets"


@dataclass(frozen=True)
class PresetParam:
    intermediary: str
    name: str
    full: Any
    quick: Any
    source: str


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    environment: str
    draft: str
    elements: tuple[tuple[str, tuple[PresetParam, ...]], ...]

    def composition(self, depth: str) -> str:
        parts = []
        for name, params in self.elements:
            values = ",".join(f"{p.name}={p.full if depth == 'full' else p.quick}" for p in params)
            parts.append(f"{name}:{values}" if values else name)
        return "+".join(parts)

    @property
    def scaled(self) -> list[PresetParam]:
        return [p for _, params in self.elements for p in params if p.full != p.quick]


def load_presets(directory: Path = PRESETS_DIR) -> dict[str, Preset]:
    out: dict[str, Preset] = {}
    for path in sorted(directory.glob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        for raw in data.get("presets", []):
            where = f"{path.name}: preset {raw.get('name', '?')!r}"
            try:
                elements = []
                for el in raw["elements"]:
                    params = []
                    for pname, p in (el.get("parameters") or {}).items():
                        if "value" in p:
                            full = quick = p["value"]
                        else:
                            full, quick = p["full"], p["quick"]
                        if not str(p.get("source", "")).strip():
                            raise BadInput(f"{where}: parameter {pname} has no source")
                        source = " ".join(str(p["source"]).split())
                        params.append(PresetParam(el["intermediary"], pname, full, quick, source))
                    elements.append((el["intermediary"], tuple(params)))
                preset = Preset(raw["name"], raw["title"], " ".join(raw["environment"].split()), raw.get("draft", ""),
                                tuple(elements))
            except (KeyError, TypeError, AttributeError) as e:
                raise BadInput(f"{where}: malformed ({e})") from None
            if preset.name in out:
                raise BadInput(f"{where}: defined twice")
            out[preset.name] = preset
    return out


def preset(name: str) -> Preset:
    presets = load_presets()
    if name not in presets:
        raise BadInput(f"unknown preset {name!r} (known: {', '.join(sorted(presets))}; see 'lemonade scenarios list')")
    return presets[name]


def expand(name: str, depth: str) -> str:
    return preset(name).composition(depth)


def describe_for_case(scenario) -> dict[str, Any]:
    """The ``preset`` measurement of a result: which preset, at which depth, what was scaled, the sources."""
    p = preset(scenario.preset)
    scaled = [f"{x.intermediary} {x.name} {x.full} -> {x.quick}" for x in p.scaled]
    if scenario.depth == "quick" and scaled:
        note = (f"preset {p.name} ({p.title}) at quick depth, scaled down: {'; '.join(scaled)}; "
                f"composition {scenario.composition} (full depth: {p.composition('full')})")
    else:
        note = f"preset {p.name} ({p.title}) at {scenario.depth} depth with the field values: {scenario.composition}"
    return {"value": p.name, "depth": scenario.depth, "composition": scenario.composition,
            "scaled": scaled if scenario.depth == "quick" else [], "note": note,
            "sources": {f"{x.intermediary}.{x.name}": x.source for _, ps in p.elements for x in ps}}


def describe_presets() -> list[dict[str, Any]]:
    """Rows for ``lemonade scenarios list``."""
    return [{"name": f"preset:{p.name}", "kind": "preset", "path": p.composition("full"),
             "summary": f"{p.title}: {p.environment} Quick depth: {p.composition('quick')}.", "params": []}
            for p in load_presets().values()]
