"""Where the suite's data lives: one resolver for every folder of data the code reads at run time.

In a checkout the data folders sit at the top level (``profiles/``, ``servers/``, ``clients/``,
``scripts/apt.d/``). A wheel carries the same folders as package data under ``conformance/_data/<name>/``
(setup.py's build step copies every folder of ``DATA_FOLDERS``; MANIFEST.in puts them in the sdist). At run
time the packaged copy wins; an editable install or a plain checkout falls back to the top-level folders.
Standard library only: setup.py loads this file before any dependency is installed.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

# name inside the package (conformance/_data/<name>) -> folder in a checkout, relative to its root.
# Adding a data folder is one line here (setup.py, MANIFEST.in's check and the tests read this mapping).
DATA_FOLDERS: dict[str, str] = {
    "profiles": "profiles",          # requirement catalogs and profiles
    "servers": "servers",            # reference-server definitions (config templates, build scripts)
    "clients": "clients",            # client adapters (one folder per client program under test)
    "apt.d": "scripts/apt.d",        # the Debian packages each feature needs (setup.sh and `lemonade doctor`)
}
PACKAGED = "_data"
DISTRIBUTION = "lemonade-conformance"


def checkout_root() -> Path | None:
    """The repository this code runs from (a checkout or an editable install), else None (a wheel)."""
    root = Path(__file__).resolve().parents[1]
    pyproject = root / "pyproject.toml"
    try:
        if f'name = "{DISTRIBUTION}"' in pyproject.read_text(encoding="utf-8"):
            return root
    except OSError:
        pass
    return None


def packaged_dir(name: str) -> Path:
    """Where a wheel puts data folder ``name`` (it may be absent: a checkout, or a folder not yet written)."""
    return Path(str(resources.files("conformance").joinpath(PACKAGED, name)))


def data_dir(name: str) -> Path:
    """The folder holding data ``name`` (a key of DATA_FOLDERS): the packaged copy when present, else the
    checkout's. The path may not exist (e.g. ``clients`` before any adapter is written); callers check."""
    if name not in DATA_FOLDERS:
        raise KeyError(f"unknown data folder {name!r}; known: {', '.join(DATA_FOLDERS)}")
    packaged = packaged_dir(name)
    if packaged.is_dir():
        return packaged
    root = checkout_root()
    if root is not None:
        return root / DATA_FOLDERS[name]
    return packaged


def installed_from_wheel() -> bool:
    """True when the data comes from the package (a wheel install), False in a checkout."""
    return packaged_dir("profiles").is_dir()


def reports_dir() -> Path:
    """Where `lemonade run` writes run directories without --output: $LEMONADE_REPORTS, else the checkout's
    reports/ (git-ignored), else reports/ under the current directory."""
    if os.environ.get("LEMONADE_REPORTS"):
        return Path(os.environ["LEMONADE_REPORTS"])
    root = checkout_root()
    return (root if root is not None else Path.cwd()) / "reports"
