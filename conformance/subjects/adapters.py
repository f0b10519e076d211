"""Client adapters as data: ``clients/<name>/client.toml`` read strictly, installed or not, and their versions."""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import data_dir
from ..errors import BadInput

CLIENTS_DIR = data_dir("clients")
CASES = ("fetch-once", "push", "sync")
FEATURES = ("idle", "notify", "qresync", "condstore", "starttls", "imaps", "jmap", "eventsource", "proxy")
PROTOCOLS = ("imap", "jmap")
_KEYS = {"name", "summary", "package", "program", "version_command", "protocols", "supports", "cases", "notes"}
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,40}$")


@dataclass(frozen=True)
class Adapter:
    """One client program under test: where its adapter is and what it says it supports."""

    name: str
    directory: Path
    summary: str
    package: str
    program: str
    version_command: tuple[str, ...]
    protocols: tuple[str, ...]
    supports: tuple[str, ...]
    cases: tuple[str, ...]
    notes: str = ""
    extra_env: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def executable(self) -> Path:
        return self.directory / "run"

    def argv(self) -> list[str]:
        """How to start the adapter: ``run`` itself, or its shebang's interpreter when the file lost its
        executable bit (package data copied without modes)."""
        if os.access(self.executable, os.X_OK):
            return [str(self.executable)]
        first = self.executable.read_text(encoding="utf-8", errors="replace").split("\n", 1)[0]
        interpreter = shlex.split(first[2:]) if first.startswith("#!") else ["/bin/sh"]
        return [*interpreter, str(self.executable)]

    def installed(self) -> bool:
        if self.program.startswith("python:"):  # a library in the suite's environment (PyPI package)
            import importlib.util

            return importlib.util.find_spec(self.program.removeprefix("python:")) is not None
        return bool(self.program) and (shutil.which(self.program) is not None or Path(self.program).is_file())

    def version(self) -> str:
        if self.program.startswith("python:") and not self.version_command:
            from importlib import metadata

            try:
                return metadata.version(self.package.removeprefix('pypi:'))
            except metadata.PackageNotFoundError:
                return ""
        return probe_version(self.version_command)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "summary": self.summary, "package": self.package, "version": self.version(),
                "installed": self.installed(), "protocols": list(self.protocols), "supports": list(self.supports),
                "cases": list(self.cases), "directory": str(self.directory)}


@functools.lru_cache(maxsize=64)
def probe_version(command: tuple[str, ...]) -> str:
    """The first line of the version command's output that names a version, or '' when it cannot run."""
    if not command:
        return ""
    try:
        p = subprocess.run(list(command), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    for line in (p.stdout + "\n" + p.stderr).splitlines():
        if m := re.search(r"\d+\.\d+(?:[.\w~-]*\w)?", line):
            return m.group(0)[:40]
    return ""


def read_adapter(directory: Path) -> Adapter:
    where = directory / "client.toml"
    try:
        data = tomllib.loads(where.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BadInput(f"{where}: cannot read: {e}") from None
    unknown = set(data) - _KEYS
    if unknown:
        raise BadInput(f"{where}: unknown key(s) {', '.join(sorted(unknown))} (allowed: {', '.join(sorted(_KEYS))})")
    name = data.get("name")
    if not isinstance(name, str) or not NAME.match(name) or name != directory.name:
        raise BadInput(f"{where}: 'name' must be the folder's name ({directory.name!r}), got {name!r}")

    def strings(key: str, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BadInput(f"{where}: '{key}' must be a list of strings")
        if allowed is not None and (bad := [v for v in value if v not in allowed]):
            raise BadInput(f"{where}: '{key}' has unknown value(s) {', '.join(bad)} (known: {', '.join(allowed)})")
        return tuple(value)

    adapter = Adapter(name=name, directory=directory, summary=str(data.get("summary", "")),
                      package=str(data.get("package", "")), program=str(data.get("program", "")),
                      version_command=strings("version_command"), protocols=strings("protocols", PROTOCOLS),
                      supports=strings("supports", FEATURES), cases=strings("cases", CASES),
                      notes=str(data.get("notes", "")))
    if not adapter.protocols:
        raise BadInput(f"{where}: 'protocols' must name imap or jmap")
    if not adapter.executable.is_file():
        raise BadInput(f"{where}: no executable 'run' beside it")
    return adapter


def load_adapters(directory: Path = CLIENTS_DIR) -> dict[str, Adapter]:
    """Every adapter folder (folders starting with '_' are shared code, not clients)."""
    out: dict[str, Adapter] = {}
    if not directory.is_dir():
        return out
    for d in sorted(directory.iterdir()):
        if d.is_dir() and not d.name.startswith(("_", ".")) and (d / "client.toml").exists():
            out[d.name] = read_adapter(d)
    return out


def find_adapter(spec: str) -> Adapter:
    """A client named on the command line: an adapter name under clients/, or a path to an adapter folder."""
    p = Path(spec)
    if "/" in spec or p.is_dir() and (p / "client.toml").exists():
        if not (p / "client.toml").is_file():
            raise BadInput(f"client {spec!r}: no client.toml in that folder")
        return read_adapter(p.resolve())
    known = load_adapters()
    if spec not in known:
        raise BadInput(f"unknown client {spec!r} (known: {', '.join(known) or 'none'}; see 'lemonade clients list')")
    return known[spec]
