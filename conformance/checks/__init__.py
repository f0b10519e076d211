"""The checks, one folder per family. Each module is a pytest test module run by the lemonade plugin.

``index()`` reads the requirement markers of every check without running pytest, for coverage tables.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path

CHECKS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class CheckInfo:
    check: str  # family/function
    requirements: tuple[str, ...]
    module: str
    doc: str


def index() -> list[CheckInfo]:
    """Every check function with its requirement ids (imports the check modules, runs nothing)."""
    out: list[CheckInfo] = []
    for mod in pkgutil.walk_packages([str(CHECKS_DIR)], prefix=f"{__name__}."):
        if not mod.name.rsplit(".", 1)[-1].startswith("test_"):
            continue
        module = importlib.import_module(mod.name)
        family = mod.name.split(".")[-2]
        for name, fn in vars(module).items():
            if not name.startswith("test_") or not callable(fn):
                continue
            reqs = tuple(a for m in getattr(fn, "pytestmark", []) if m.name == "requirement" for a in m.args)
            out.append(CheckInfo(f"{family}/{name.removeprefix('test_')}", reqs, mod.name,
                                 (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""))
    return out
