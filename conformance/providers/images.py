"""Container images of the reference servers, built locally: a debootstrap base per Debian release
(imported with ``docker import``; no registry is involved anywhere), then ``servers/<name>/`` FROM it.

Images are tagged by a hash of their directory, so each is built once and reused; builds are serialised
across processes by a lock file. ``build_all`` builds what is missing (scripts/build-images, ``lemonade run``
before the first container case).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import HarnessError
from .base import SERVERS_DIR
from .engine import docker_client, image_exists

DEBIAN_MIRROR = os.environ.get("LEMONADE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
STATE_DIR = Path(os.environ.get("LEMONADE_IMAGE_STATE", "/var/tmp/lemonade-images"))


@dataclass(frozen=True)
class ImageSpec:
    name: str          # target name and servers/<name>/
    suite: str         # Debian release of the base image
    kind: str          # dovecot | cyrus
    description: str

    @property
    def directory(self) -> Path:
        return SERVERS_DIR / self.name

    @property
    def repository(self) -> str:
        return f"lemonade/{self.name}"

    def tag(self) -> str:
        """lemonade/<name>:<hash of the build context and base suite> (templates are rendered at run time)."""
        h = hashlib.sha256(self.suite.encode())
        for f in sorted(self.directory.rglob("*")):
            if f.is_file() and not f.name.endswith(".j2"):
                h.update(str(f.relative_to(self.directory)).encode() + b"\0" + f.read_bytes())
        return f"{self.repository}:{h.hexdigest()[:12]}"


IMAGES: dict[str, ImageSpec] = {
    "dovecot-2.3": ImageSpec("dovecot-2.3", "bookworm", "dovecot", "Dovecot 2.3 (Debian 12) in a container"),
    "dovecot-2.4": ImageSpec("dovecot-2.4", "trixie", "dovecot", "Dovecot 2.4 (Debian 13) in a container"),
    "cyrus-3.10": ImageSpec("cyrus-3.10", "trixie", "cyrus",
                            "Cyrus 3.10 (Debian 13 source with WebSockets: JMAP push) in a container"),
}


def base_tag(suite: str) -> str:
    return f"lemonade/base:{suite}"


@contextmanager
def build_lock() -> Iterator[None]:
    """One builder at a time across processes (xdist workers, parallel runs)."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "build.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def log(msg: str) -> None:
    print(f"lemonade images: {msg}", flush=True)


def ensure_base(suite: str, timings: dict[str, float] | None = None) -> str:
    """lemonade/base:<suite>: debootstrap --variant=minbase, imported with the engine. Built once."""
    tag = base_tag(suite)
    if image_exists(tag):
        return tag
    if shutil.which("debootstrap") is None:
        raise HarnessError(f"image {tag} is missing and debootstrap is not installed (apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise HarnessError(f"image {tag} is missing; building it needs root: run scripts/build-images as root")
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f"base-{suite}-", dir=STATE_DIR))
    logf = STATE_DIR / f"debootstrap-{suite}.log"
    t0 = time.monotonic()
    log(f"debootstrap {suite} (log {logf})")
    try:
        with open(logf, "wb") as out:
            rc = subprocess.run(["debootstrap", "--variant=minbase", suite, str(root), DEBIAN_MIRROR],
                                stdout=out, stderr=subprocess.STDOUT, timeout=900).returncode
        if rc != 0:
            tail = " | ".join(logf.read_text(errors="replace").strip().splitlines()[-3:])
            raise HarnessError(f"debootstrap {suite} failed with {rc}: {tail}")
        t1 = time.monotonic()
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        try:
            docker_client().api.import_image_from_stream(tar.stdout, repository="lemonade/base", tag=suite)
        finally:
            tar.stdout.close()
            tar.wait(60)
        if not image_exists(tag):
            raise HarnessError(f"importing the {suite} root file system did not produce {tag}")
        if timings is not None:
            timings[f"debootstrap {suite}"] = round(t1 - t0, 1)
            timings[f"import {suite}"] = round(time.monotonic() - t1, 1)
        log(f"{tag} ready: debootstrap {t1 - t0:.1f} s, import {time.monotonic() - t1:.1f} s")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return tag


def ensure_image(name: str, timings: dict[str, float] | None = None) -> str:
    """The image for target ``name``, built (with its base) when its tag is missing."""
    tag = IMAGES[name].tag()
    if image_exists(tag):
        return tag
    with build_lock():
        return _build_image(name, timings)


def _build_image(name: str, timings: dict[str, float] | None) -> str:
    """Build one image unless its tag exists; the caller holds the build lock."""
    spec = IMAGES[name]
    tag = spec.tag()
    if image_exists(tag):  # another process built it while we waited
        return tag
    base = ensure_base(spec.suite, timings)
    t0 = time.monotonic()
    log(f"building {tag} from {spec.directory} (FROM {base})")
    docker_build(spec.directory, tag, base, STATE_DIR / f"build-{name}.log")
    dt = time.monotonic() - t0
    if timings is not None:
        timings[f"image {name}"] = round(dt, 1)
    log(f"{tag} built in {dt:.1f} s")
    return tag


def docker_build(context: Path, tag: str, base: str, logf: Path, also: tuple[str, ...] = ("latest",)) -> None:
    """Build ``context`` (a Dockerfile with ``ARG BASE``) as ``tag`` with host networking, its output in
    ``logf``; the image also gets the floating tags in ``also``. HarnessError with the log's tail on failure."""
    api = docker_client().api
    lines: list[str] = []
    error = ""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(logf, "w") as out:
        for chunk in api.build(path=str(context), tag=tag, buildargs={"BASE": base}, network_mode="host",
                               rm=True, forcerm=True, decode=True, timeout=3600):
            if "stream" in chunk:
                out.write(chunk["stream"])
                lines.append(chunk["stream"])
            if "error" in chunk:
                error = chunk["error"]
                out.write(error + "\n")
    if error or not image_exists(tag):
        tail = " | ".join("".join(lines).strip().splitlines()[-4:])
        raise HarnessError(f"building {tag} failed: {error.strip() or 'no image'} ({tail}; log {logf})")
    repository = tag.rsplit(":", 1)[0]
    for extra in also:  # floating tags point at the newest build, for people typing docker commands
        try:
            docker_client().images.get(tag).tag(repository, extra)
        except Exception:  # noqa: BLE001
            pass


def build_all(names: list[str]) -> dict[str, float]:
    """Build the named images (and their bases) now, concurrently (debootstrap and apt are mostly
    network-bound); returns the build times in seconds."""
    from concurrent.futures import ThreadPoolExecutor

    timings: dict[str, float] = {}
    missing = [n for n in names if not image_exists(IMAGES[n].tag())]
    if not missing:
        return timings
    with build_lock():
        suites = sorted({IMAGES[n].suite for n in missing if not image_exists(base_tag(IMAGES[n].suite))})
        with ThreadPoolExecutor(max_workers=max(1, len(suites))) as pool:
            for f in [pool.submit(ensure_base, s, timings) for s in suites]:
                f.result()
        with ThreadPoolExecutor(max_workers=len(missing)) as pool:
            for f in [pool.submit(_build_image, n, timings) for n in missing]:
                f.result()
    return timings
