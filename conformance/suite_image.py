"""The suite's own container image, ``lemonade/suite``: this checkout's wheel on a debootstrapped Debian 12 base.

Built locally like the server images (no registry): ``scripts/build-images suite``. The build context is
made here: ``image/Dockerfile`` and ``image/entrypoint.sh``, the Debian packages of the embedded Dovecot
(``apt.d/core.txt``), the dependencies' wheels (``pip wheel``, so pip's cache serves a rebuild) and the suite's
wheel (``pip wheel``, the same build as ``python -m build``). The image is tagged
``lemonade/suite:<hash of the sources>`` (reused when present) and also ``:<version>`` and ``:latest``.
Building needs the checkout (the sources of the wheel).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from . import __version__
from .data import DATA_FOLDERS, checkout_root, data_dir
from .errors import HarnessError

REPOSITORY = "lemonade/suite"
SUITE = "bookworm"  # Debian 12: Python 3.11 and Dovecot 2.3, as on the machines the suite is developed on
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "conformance", "image",
           *DATA_FOLDERS.values())


def source_files(root: Path) -> Iterator[tuple[str, Path]]:
    """Every file the image is made from (relative name, path), in a stable order."""
    for name in SOURCES:
        p = root / name
        files = [p] if p.is_file() else sorted(p.rglob("*")) if p.is_dir() else []
        for f in files:
            if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
                yield str(f.relative_to(root)), f


def image_tag(root: Path) -> str:
    h = hashlib.sha256(SUITE.encode())
    for rel, f in source_files(root):
        h.update(rel.encode() + b"\0" + f.read_bytes() + b"\0")
    return f"{REPOSITORY}:{h.hexdigest()[:12]}"


def suite_image_problem() -> str | None:
    """None when the image of this code is present, else why not (for `lemonade doctor`)."""
    from .providers.engine import engine_problem, image_exists

    problem = engine_problem()
    if problem:
        return problem
    root = checkout_root()
    tag = image_tag(root) if root else f"{REPOSITORY}:{__version__}"
    if image_exists(tag):
        return None
    if root and image_exists(f"{REPOSITORY}:latest"):
        return f"{tag} not built: {REPOSITORY}:latest is of older sources"
    return f"{tag} not built"


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=1800)
    if p.returncode != 0:
        tail = " | ".join([ln for ln in (p.stdout + p.stderr).splitlines() if "is ignored" not in ln][-6:])
        raise HarnessError(f"{what} failed (exit {p.returncode}): {tail}")


def make_context(root: Path, ctx: Path, timings: dict[str, float]) -> None:
    """image/ + core.txt + dist/<the suite's wheel> + deps/<its dependencies' wheels>."""
    for f in ("Dockerfile", "entrypoint.sh"):
        shutil.copy2(root / "image" / f, ctx / f)
    shutil.copy2(data_dir("apt.d") / "core.txt", ctx / "core.txt")
    t0 = time.monotonic()
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps", "--wheel-dir",
          str(ctx / "dist"), str(root)], "building the wheel")
    wheel = next((ctx / "dist").glob("*.whl"))
    timings["wheel"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    # wheels of the dependencies for the image's Python (3.11, like this interpreter when it is 3.11; the
    # image's pip fetches any that do not fit from the index)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--wheel-dir",
          str(ctx / "deps"), str(wheel)], "collecting the dependencies' wheels")
    for w in (ctx / "deps").glob("lemonade_conformance-*.whl"):
        w.unlink()
    timings["dependency wheels"] = round(time.monotonic() - t0, 1)


def prune_older(keep: str) -> None:
    """Remove the hash tags of older builds (the layers they share with the new one stay)."""
    from .providers.engine import docker_client

    for image in docker_client().images.list(name=REPOSITORY):
        for t in image.tags:
            label = t.rsplit(":", 1)[1]
            if t != keep and len(label) == 12 and all(c in "0123456789abcdef" for c in label):
                try:
                    docker_client().images.remove(t, noprune=False)
                except Exception:  # noqa: BLE001 - in use by a running container: leave it
                    pass


def build(force: bool = False, timings: dict[str, float] | None = None) -> str:
    """The image of this checkout, built (with its base) when its tag is missing; returns the tag."""
    from .providers.engine import image_exists
    from .providers.images import STATE_DIR, build_lock, docker_build, ensure_base, log

    timings = timings if timings is not None else {}
    root = checkout_root()
    if root is None:
        raise HarnessError("building the suite image needs the source checkout (git clone; scripts/build-images suite)")
    tag = image_tag(root)
    if image_exists(tag) and not force:
        return tag
    with build_lock():
        if image_exists(tag) and not force:
            return tag
        base = ensure_base(SUITE, timings)
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="lemonade-suite-image-") as tmp:
            ctx = Path(tmp)
            make_context(root, ctx, timings)
            log(f"building {tag} (FROM {base})")
            t1 = time.monotonic()
            docker_build(ctx, tag, base, STATE_DIR / "build-suite.log", also=("latest", __version__))
            timings["image"] = round(time.monotonic() - t1, 1)
        timings["suite total"] = round(time.monotonic() - t0, 1)
        prune_older(tag)
        log(f"{tag} built in {timings['suite total']:.1f} s: " + json.dumps(timings))
    return tag
