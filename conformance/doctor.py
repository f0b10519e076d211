"""`lemonade doctor`: what this machine has and lacks for each part of the suite, and the command that installs it.

Each probe looks at the real thing (a program's own version line, Debian's package database, the Cyrus
cache, the container engine's answer) and says what it is needed for. The Debian package lists are the
ones scripts/setup.sh installs (data folder ``apt.d``), so the advice and the README commands agree.
Exit code 1 when something the default run (`lemonade run`: embedded Dovecot) needs is missing, else 0.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from . import __version__
from .data import DISTRIBUTION, checkout_root, data_dir, installed_from_wheel

DEFAULT_RUN = "default run (lemonade run)"


@dataclass
class Finding:
    part: str                 # what was looked for
    needed_for: str           # which command or option needs it
    ok: bool
    detail: str               # what was found, or what is missing
    fix: str = ""             # one command that installs or starts it
    default_run: bool = False  # the default run cannot work without it
    apt: list[str] = field(default_factory=list)  # Debian packages the fix installs (joined into one command)

    @property
    def status(self) -> str:
        if self.ok:
            return "ok"
        return "MISSING" if self.default_run else "missing"


# -- small probes ---------------------------------------------------------------------------------
def first_line(cmd: list[str], timeout: float = 10) -> str:
    """The first non-empty line a program prints about itself (stdout or stderr), or '' if it cannot run."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return ""
    for line in (p.stdout + "\n" + p.stderr).splitlines():
        if line.strip():
            return line.strip()[:120]
    return ""


def version_of(line: str, name: str) -> str:
    """'nginx version: nginx/1.22.1' -> 'nginx 1.22.1' (the first dotted number), else the line itself."""
    m = re.search(r"\d+(?:\.\d+)+", line)
    return f"{name} {m.group(0)}" if m else line


def apt_lists() -> dict[str, tuple[str, list[str]]]:
    """scripts/apt.d/*.txt: file stem -> (its first comment line, its packages)."""
    out: dict[str, tuple[str, list[str]]] = {}
    folder = data_dir("apt.d")
    for f in sorted(folder.glob("*.txt")) if folder.is_dir() else []:
        text = f.read_text(encoding="utf-8")
        about = next((ln.lstrip("# ").strip() for ln in text.splitlines() if ln.startswith("#")), f.stem)
        packages = [p for ln in text.splitlines() for p in ln.split("#", 1)[0].split()]
        out[f.stem] = (about, packages)
    return out


def dpkg_missing(packages: list[str]) -> list[str] | None:
    """The packages Debian's database does not list as installed; None when there is no dpkg here."""
    if not packages:
        return []
    if shutil.which("dpkg-query") is None:
        return None
    p = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Status}\n", *packages], capture_output=True,
                       text=True, timeout=30)
    installed = {ln.split()[0] for ln in p.stdout.splitlines() if ln.endswith("install ok installed")}
    return [pkg for pkg in packages if pkg not in installed]


def apt_fix(packages: list[str]) -> str:
    return "sudo apt-get install -y --no-install-recommends " + " ".join(packages) if packages else ""


# -- the probes -----------------------------------------------------------------------------------
def probe_python() -> list[Finding]:
    ok = sys.version_info >= (3, 11)
    found = [Finding(f"Python {sys.version.split()[0]}", "everything", ok, sys.executable,
                     "" if ok else "install Python 3.11 or newer", default_run=True)]
    try:
        requires = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return found + [Finding("Python packages", "everything", False,
                                f"{DISTRIBUTION} is not installed in {sys.prefix}",
                                "pip install lemonade-conformance (or: bash scripts/setup.sh in a checkout)",
                                default_run=True)]
    missing, have = [], []
    for spec in requires:
        if "extra ==" in spec:
            continue
        name = re.split(r"[<>=!~;\[ (]", spec, maxsplit=1)[0]
        try:
            have.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            missing.append(spec.split(";")[0].strip())
    fix = (f"{shlex.quote(sys.executable)} -m pip install " + " ".join(shlex.quote(m) for m in missing)) if missing else ""
    detail = f"missing: {', '.join(missing)}" if missing else f"{len(have)} dependencies installed"
    return found + [Finding("Python packages", "everything", not missing, detail, fix, default_run=True)]


def probe_installation() -> Finding:
    folders = {n: data_dir(n) for n in ("profiles", "servers")}
    absent = [n for n, p in folders.items() if not p.is_dir()]
    where = "wheel" if installed_from_wheel() else f"checkout {checkout_root()}"
    return Finding(f"lemonade-conformance {__version__}", "everything", not absent,
                   f"data from the {where}" if not absent else f"data folders missing: {', '.join(absent)}",
                   "" if not absent else "reinstall the wheel (pip install --force-reinstall lemonade_conformance-*.whl)",
                   default_run=True)


def probe_apt_feature(about: str, packages: list[str], needed_for: str, default_run: bool,
                      version: Callable[[], str] | None = None) -> Finding:
    missing = dpkg_missing(packages)
    seen = version() if version else ""
    if missing is None:  # not a Debian system: judge by the program alone
        ok = bool(seen) if version else True
        return Finding(about, needed_for, ok, seen or "no dpkg here: cannot check " + ", ".join(packages),
                       "" if ok else f"install: {' '.join(packages)}", default_run, packages if not ok else [])
    detail = seen or f"{len(packages)} Debian packages installed"
    if missing:
        detail = f"missing Debian packages: {' '.join(missing)}"
    return Finding(about, needed_for, not missing, detail, apt_fix(missing), default_run, missing)


def probe_dovecot_and_tls(lists: dict[str, tuple[str, list[str]]]) -> list[Finding]:
    _, packages = lists.get("core", ("", ["dovecot-core", "dovecot-imapd", "dovecot-submissiond", "openssl"]))

    def version() -> str:
        dv = first_line(["dovecot", "--version"])
        ov = first_line(["openssl", "version"])
        return ", ".join(version_of(x, n) for x, n in ((dv, "Dovecot"), (ov, "OpenSSL")) if x)

    f = probe_apt_feature("embedded Dovecot (the default target)", packages, DEFAULT_RUN, True, version)
    if f.ok and not shutil.which("dovecot") and not Path("/usr/sbin/dovecot").exists():
        f.ok, f.detail, f.fix = False, "the dovecot program is not on PATH", apt_fix(["dovecot-core"])
    return [f]


def probe_cyrus(lists: dict[str, tuple[str, list[str]]]) -> list[Finding]:
    from .errors import HarnessError
    from .providers.cyrus import VARIANTS, cache_root, find_build

    _, libs = lists.get("jmap", ("", []))
    missing_libs = dpkg_missing(libs) or []
    build_sh = data_dir("servers") / "cyrus" / "build.sh"
    out = []
    for variant, name in VARIANTS.items():
        try:
            where = find_build(variant)
            ok, detail = not missing_libs, str(where)
            if missing_libs:
                detail = f"built in {where}, but runtime libraries are missing: {' '.join(missing_libs)}"
        except HarnessError:
            ok, detail = False, f"no {name} build in {cache_root()}"
        fix = ""
        if not ok:
            fix = " && ".join(x for x in (apt_fix(missing_libs), f"sudo bash {shlex.quote(str(build_sh))} {variant}") if x)
        out.append(Finding(f"Cyrus ({name})", f"--target {name}" + (" (JMAP push)" if variant == "push" else " (JMAP)"),
                           ok, detail, fix, False, missing_libs if not ok else []))
    return out


def probe_containers(lists: dict[str, tuple[str, list[str]]]) -> list[Finding]:
    from .providers.engine import engine_problem, image_exists
    from .providers.images import IMAGES

    _, packages = lists.get("containers", ("", ["docker.io", "debootstrap"]))
    missing = dpkg_missing(packages) or []
    root = checkout_root()
    start = ("sudo bash " + shlex.quote(str(root / "scripts" / "dockerd-up"))) if root else \
        "sudo systemctl start docker (or: sudo dockerd &)"
    problem = engine_problem()
    if problem:
        fix = " && ".join(x for x in (apt_fix(missing), start) if x)
        return [Finding("container engine", "--target dovecot-2.3 | dovecot-2.4 | cyrus-3.10, the suite image",
                        False, problem.split(";")[0], fix, False, missing)]
    from .providers.engine import docker_client

    try:
        version = docker_client().version().get("Version", "?")
    except Exception:  # noqa: BLE001 - the engine answered a ping; its version is decoration
        version = "?"
    out = [Finding("container engine", "--target dovecot-2.3 | dovecot-2.4 | cyrus-3.10, the suite image", True,
                   f"engine {version} at {os.environ.get('DOCKER_HOST', 'unix:///var/run/docker.sock')}")]
    build = (shlex.join(["bash", str(root / "scripts" / "build-images")]) if root
             else f"sudo {shlex.quote(sys.executable)} -m conformance.providers.build_images")
    for name, spec in IMAGES.items():
        tag = spec.tag()
        ok = image_exists(tag)
        out.append(Finding(f"image {tag}", f"--target {name}", ok, "built" if ok else "not built yet "
                           "(built on first use: debootstrap and apt, minutes)", "" if ok else f"{build} {name}"))
    from .suite_image import suite_image_problem

    problem = suite_image_problem()
    fix = f"{build} suite" if root else "in a checkout of lemonade-conformance: bash scripts/build-images suite"
    out.append(Finding("suite image lemonade/suite", "docker run lemonade/suite (the suite in a container)",
                       problem is None, problem or "built", "" if problem is None else fix))
    return out


def probe_programs(title: str, programs: list[tuple[str, list[str], str, str]],
                   lists: dict[str, tuple[str, list[str]]]) -> list[Finding]:
    """Programs (name, version command, Debian package, what needs it) of one feature; one finding each."""
    listed = {p for _, pkgs in lists.values() for p in pkgs}
    out = []
    for name, cmd, package, needed_for in programs:
        path = shutil.which(cmd[0]) or next((p for p in (f"/usr/sbin/{cmd[0]}", f"/sbin/{cmd[0]}")
                                             if Path(p).exists()), None)
        seen = version_of(first_line([path, *cmd[1:]]), name) if path else ""
        note = "" if package in listed else " (not yet in scripts/apt.d)"
        out.append(Finding(f"{title}: {name}", needed_for, bool(path), (seen or path or "") if path else
                           f"{cmd[0]} not found{note}", "" if path else apt_fix([package]), False,
                           [] if path else [package]))
    return out


REAL_INTERMEDIARIES = [  # name, version command, Debian package, what needs it
    ("nginx", ["nginx", "-v"], "nginx", "--scenario real-nginx"),
    ("haproxy", ["haproxy", "-v"], "haproxy", "--scenario real-haproxy"),
    ("squid", ["squid", "-v"], "squid", "--scenario real-squid"),
    ("tinyproxy", ["tinyproxy", "-v"], "tinyproxy", "--scenario real-tinyproxy"),
    ("iproute2", ["ip", "-V"], "iproute2", "--scenario real-nat (network namespaces)"),
    ("nftables", ["nft", "--version"], "nftables", "--scenario real-nat (NAT rules)"),
]
# the client programs issue 14 names, for an installation that ships no adapters (clients/<name>/client.toml)
CLIENT_PROGRAMS = [(name, cmd, package, f"lemonade run --client {name}") for name, cmd, package in (
    ("fetchmail", ["fetchmail", "--version"], "fetchmail"), ("getmail6", ["getmail", "--version"], "getmail6"),
    ("interimap", ["interimap", "--version"], "interimap"), ("imapfilter", ["imapfilter", "-V"], "imapfilter"),
    ("mbsync", ["mbsync", "--version"], "isync"), ("offlineimap3", ["offlineimap", "--version"], "offlineimap3"),
    ("curl", ["curl", "--version"], "curl"))]
PYTHON_CLIENTS = [("jmapc", "jmapc", "jmapc")]  # name, module, PyPI distribution


def client_adapters() -> list[dict]:
    """clients/<name>/client.toml of every adapter this installation ships (folders starting with _ are code)."""
    import tomllib

    folder = data_dir("clients")
    out = []
    for meta in sorted(folder.glob("*/client.toml")) if folder.is_dir() else []:
        if meta.parent.name.startswith(("_", ".")):
            continue
        try:
            out.append(tomllib.loads(meta.read_text(encoding="utf-8")) | {"name": meta.parent.name})
        except (tomllib.TOMLDecodeError, OSError):
            out.append({"name": meta.parent.name, "broken": str(meta)})
    return out


def probe_python_clients(clients: list[tuple[str, str, str]]) -> list[Finding]:
    """Clients under test that are Python libraries in the suite's environment (name, module, PyPI name)."""
    import importlib.util

    out = []
    for name, module, dist in clients:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        seen = ""
        if found:
            try:
                seen = f"{name} {importlib.metadata.version(dist)}"
            except importlib.metadata.PackageNotFoundError:
                seen = name
        out.append(Finding(f"client: {name} (PyPI)", f"lemonade run --client {name}", found, seen or "not installed",
                           "" if found else f"{shlex.quote(sys.executable)} -m pip install {dist}"))
    return out


def probe_clients(lists: dict[str, tuple[str, list[str]]]) -> list[Finding]:
    """The client programs under test: from the adapters' client.toml, else the programs issue 14 names."""
    adapters = client_adapters()
    if not adapters:
        return probe_programs("client", CLIENT_PROGRAMS, lists) + probe_python_clients(PYTHON_CLIENTS)
    programs, modules, broken = [], [], []
    for a in adapters:
        if "broken" in a:
            broken.append(Finding(f"client: {a['name']}", f"lemonade run --client {a['name']}", False,
                                  f"unreadable {a['broken']}", "reinstall lemonade-conformance"))
            continue
        program, package = str(a.get("program", a["name"])), str(a.get("package", a["name"]))
        if program.startswith("python:"):
            modules.append((a["name"], program.removeprefix("python:"), package.removeprefix("pypi:")))
        else:
            cmd = [str(c) for c in a.get("version_command") or []] or [program, "--version"]
            programs.append((a["name"], cmd, package, f"lemonade run --client {a['name']}"))
    return probe_programs("client", programs, lists) + probe_python_clients(modules) + broken


def probe_chromium(lists: dict[str, tuple[str, list[str]]]) -> list[Finding]:
    path = os.environ.get("LEMONADE_CHROMIUM", "/usr/bin/chromium")
    _, packages = lists.get("reports", ("", ["chromium"]))
    seen = first_line([path, "--version"]) if Path(path).exists() else ""
    return [Finding("Chromium", "the project's browser tests (tests/reports, tests/site)",
                    bool(seen), version_of(seen, "Chromium") if seen else f"{path} not found",
                    "" if seen else apt_fix(packages), False,
                    [] if seen else packages)]


def diagnose() -> list[Finding]:
    lists = apt_lists()
    found = probe_python() + [probe_installation()] + probe_dovecot_and_tls(lists)
    found += probe_cyrus(lists) + probe_containers(lists) + probe_chromium(lists)
    found += probe_programs("real intermediary", REAL_INTERMEDIARIES, lists)
    found += probe_clients(lists)
    return found


def install_everything(found: list[Finding]) -> str:
    """One command line that installs everything missing: the Debian packages in one apt-get, then the other
    steps once each (image builds joined into one scripts/build-images call)."""
    apt = sorted({p for f in found if not f.ok for p in f.apt})
    steps = [apt_fix(apt)] if apt else []
    images: list[str] = []
    build = ""
    for f in found:
        if f.ok or not f.fix:
            continue
        for step in f.fix.split(" && "):
            if step.startswith("sudo apt-get install") or step in steps:
                continue
            if "build-images" in step or "conformance.providers.build_images" in step:
                build, name = step.rsplit(" ", 1)
                images.append(name)
                continue
            steps.append(step)
    if images:
        steps.append(f"{build} {' '.join(images)}")
    return " && ".join(steps)


def main(fmt: str = "text") -> int:
    found = diagnose()
    code = 1 if any(not f.ok and f.default_run for f in found) else 0
    everything = install_everything(found)
    if fmt == "json":
        print(json.dumps({"suite_version": __version__, "default_run_ready": code == 0,
                          "findings": [asdict(f) | {"status": f.status} for f in found],
                          "install_everything": everything}, indent=1))
        return code
    from rich.table import Table

    from .cli import console

    con = console()
    table = Table(title=f"lemonade doctor: lemonade-conformance {__version__} on this machine", show_lines=False)
    for col in ("part", "needed for", "status", "found", "install with"):
        table.add_column(col, overflow="fold")
    style = {"ok": "green", "missing": "yellow", "MISSING": "bold red"}
    for f in found:
        table.add_row(f.part, f.needed_for, f"[{style[f.status]}]{f.status}[/]", f.detail, f.fix or "")
    con.print(table)
    if code:
        con.print("[bold red]the default run cannot work here:[/] install what is marked MISSING", markup=True)
    else:
        con.print("[green]the default run (embedded Dovecot) can run here[/]", markup=True)
    if everything:
        con.print("everything missing, in one command:", markup=False)
        con.print("  " + everything, markup=False, soft_wrap=True)
    return code
