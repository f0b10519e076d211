"""The `container` provider: reference servers of other versions in locally built container images.

``--target dovecot-2.3`` (Debian 12 packages), ``--target dovecot-2.4`` (Debian 13, IMAP4rev2) and
``--target cyrus-3.10`` (Debian 13's source rebuilt with WebSockets, so JMAP push works). Each image is
built from ``servers/<name>/`` FROM a base image made by debootstrap of the Debian release it needs and
imported with ``docker import``: no registry is involved anywhere. Images are tagged by a hash of their
directory, so each is built once and reused; builds are serialised across processes by a lock file.

Containers run with host networking and listen on 127.0.0.1 ports chosen at start (nothing is published
on other addresses and the engine needs no bridge or iptables: see scripts/dockerd-up). The provider
renders the server configuration into a host directory mounted at /lemonade, starts the container with
testcontainers, waits on protocol probes, and relays submission to the same SMTP sink as the embedded
target. testcontainers' registry-needing defaults are switched off (Ryuk reaper disabled, connection mode
docker_host: /.dockerenv misleads its Docker-in-Docker detection). Podman works through DOCKER_HOST.
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
from typing import Any, Iterator

import jinja2

from .. import __version__
from ..data import checkout_root
from ..errors import HarnessError
from ..targets import Account, Endpoint, Target, TlsPolicy
from .dovecot import ACCOUNTS, SERVERS_DIR, free_port, load_settings, make_certificate, probe
from .smtpsink import SmtpSink
from .workdir import keep_logs_and_remove

# testcontainers reads these when first imported; set them before that happens
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")

MOUNT = "/lemonade"
DEBIAN_MIRROR = os.environ.get("LEMONADE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
STATE_DIR = Path(os.environ.get("LEMONADE_IMAGE_STATE", "/var/tmp/lemonade-images"))


class EngineUnavailable(HarnessError):
    """No container engine answers: container targets are skipped, not errors."""


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


# -- engine ----------------------------------------------------------------------------------------
_client = None


def docker_client():
    """A docker-py client for DOCKER_HOST (or the default socket); EngineUnavailable when none answers."""
    global _client
    if _client is not None:
        return _client
    try:
        import docker
    except ImportError as e:  # pragma: no cover - a dependency of testcontainers
        raise EngineUnavailable(f"the docker Python package is missing ({e})") from None
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except Exception as e:  # noqa: BLE001 - any failure here means: no engine
        first = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise EngineUnavailable(f"no container engine answers at {where} ({first}); start one with "
                                f"scripts/dockerd-up (root) or point DOCKER_HOST at a podman socket") from None
    _client = client
    return client


def engine_problem() -> str | None:
    """None when a container engine answers, else one line saying why not."""
    try:
        docker_client()
        return None
    except EngineUnavailable as e:
        return str(e)


def image_exists(tag: str) -> bool:
    import docker.errors

    try:
        docker_client().images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


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


# -- building --------------------------------------------------------------------------------------
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


# -- running ---------------------------------------------------------------------------------------
class ContainerProvider:
    """Starts one server container (host networking, 127.0.0.1, free ports) and stops it."""

    def __init__(self, name: str, depth: str = "quick", keep_logs: Path | None = None,
                 settings: dict[str, Any] | None = None) -> None:
        if name not in IMAGES:
            raise HarnessError(f"no container image named {name}")
        self.spec = IMAGES[name]
        self.depth = depth
        self.keep_logs = keep_logs
        self.settings = load_settings(depth) if self.spec.kind == "dovecot" else {}
        self.settings.update(settings or {})
        self.dir: Path | None = None
        self.container = None
        self.sink: SmtpSink | None = None
        self.target: Target | None = None
        self.ready_seconds: float | None = None

    def start(self, attempts: int = 3) -> Target:
        tag = ensure_image(self.spec.name)
        t0 = time.monotonic()
        last = ""
        for _ in range(attempts):
            try:
                target = self._start_once(tag)
                self.ready_seconds = time.monotonic() - t0
                return target
            except HarnessError as e:  # most likely a port taken between choosing and binding: retry
                last = str(e)
                self.stop()
        raise HarnessError(f"{self.spec.name} did not become ready after {attempts} attempts: {last}")

    def _render(self, template_dir: Path, name: str, **values: Any) -> str:
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(template_dir), undefined=jinja2.StrictUndefined,
                                 keep_trailing_newline=True)
        return env.get_template(name).render(**values)

    def _start_once(self, tag: str) -> Target:
        from testcontainers.core.config import testcontainers_config
        from testcontainers.core.container import DockerContainer

        testcontainers_config.ryuk_disabled = True
        self.dir = d = Path(tempfile.mkdtemp(prefix=f"lemonade-{self.spec.name}-"))
        os.chmod(d, 0o755)
        (d / "log").mkdir()
        os.chmod(d / "log", 0o777)
        make_certificate(d)
        (d / "passwd").write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in ACCOUNTS))
        self.sink = SmtpSink(spool=d / "sink").start()
        if self.spec.kind == "dovecot":
            ports = {"imap": free_port(), "imaps": free_port(), "submission": free_port()}
            template_dir = self.spec.directory if (self.spec.directory / "dovecot.conf.j2").exists() \
                else SERVERS_DIR / "dovecot"
            conf = self._render(template_dir, "dovecot.conf.j2", instance=f"{self.spec.name}-{ports['imap']}",
                                dir=MOUNT, ports=ports, sink_port=self.sink.port, settings=self.settings,
                                internal_user="dovecot", internal_group="dovecot", login_user="dovenull",
                                mail_user="dovecot", mail_group="dovecot")
            (d / "dovecot.conf").write_text(conf)
            tmpfs = {f"{MOUNT}/home": "", f"{MOUNT}/run": "", f"{MOUNT}/state": ""}
        else:
            ports = {"imap": free_port(), "imaps": free_port(), "http": free_port()}  # Cyrus has no submission
            for tname in ("imapd.conf.j2", "cyrus.conf.j2"):
                (d / tname.removesuffix(".j2")).write_text(self._render(
                    self.spec.directory, tname, dir=MOUNT, ports=ports, sink_port=self.sink.port))
            tmpfs = {f"{MOUNT}/spool": "", f"{MOUNT}/conf": "", f"{MOUNT}/run": ""}
        self.ports = ports
        c = DockerContainer(tag)
        c.with_volume_mapping(str(d), MOUNT, "rw")
        c.tmpfs.update(tmpfs)
        c.with_kwargs(network_mode="host", labels={"org.lemonade.target": self.spec.name},
                      init=False, stop_signal="SIGTERM")
        self.container = c
        try:
            c.start()
        except Exception as e:  # noqa: BLE001 - docker errors become one line
            raise HarnessError(f"starting {tag} failed: {str(e).splitlines()[0][:200]}") from None
        deadline = time.monotonic() + (20 if self.spec.kind == "dovecot" else 40)
        try:
            probe("127.0.0.1", ports["imap"], b"* OK", deadline)
            if "submission" in ports:
                probe("127.0.0.1", ports["submission"], b"220", deadline)
            if "http" in ports:
                self._probe_http(ports["http"], deadline)
            if self.spec.kind == "cyrus":
                self._autocreate(ports["imap"])
        except HarnessError as e:
            raise HarnessError(f"{e}; container log: {self._log_tail()}") from None
        endpoints = {
            "imap": Endpoint("imap", "imap", "127.0.0.1", ports["imap"]),
            "imaps": Endpoint("imaps", "imaps", "127.0.0.1", ports["imaps"]),
        }
        if "submission" in ports:
            endpoints["submission"] = Endpoint("submission", "smtp", "127.0.0.1", ports["submission"])
        if "http" in ports:
            endpoints["jmap"] = Endpoint("jmap", "http", "127.0.0.1", ports["http"], "/.well-known/jmap")
        self.target = Target(
            name=self.spec.name, endpoints=endpoints, accounts=[Account(u, p) for u, p in ACCOUNTS],
            tls=TlsPolicy(verify=False, ca_file=None), provider="container", version=self._version(),
            settings={"image": tag, "base": base_tag(self.spec.suite),
                      **{k: v for k, v in self.settings.items() if k != "extra" or v}},
            logs=[d / "log" / ("dovecot.log" if self.spec.kind == "dovecot" else "syslog")],
            sink=self.sink, workdir=d,
        )
        return self.target

    def _autocreate(self, port: int) -> None:
        """Cyrus creates each account's INBOX and special-use folders at its first login (autocreate_*)."""
        import imaplib

        for user, password in ACCOUNTS:
            try:
                m = imaplib.IMAP4("127.0.0.1", port, timeout=10)
                m.starttls(ssl_context=TlsPolicy(verify=False).client_context())  # allowplaintext: no
                m.login(user, password)
                m.logout()
            except (OSError, imaplib.IMAP4.error) as e:
                raise HarnessError(f"first login of {user} (creates the mailboxes) failed: {e}") from None

    def _probe_http(self, port: int, deadline: float) -> None:
        import http.client

        last = ""
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/.well-known/jmap")
                status = conn.getresponse().status
                conn.close()
                if status < 500:
                    return
                last = f"HTTP {status}"
            except OSError as e:
                last = str(e)
            time.sleep(0.1)
        raise HarnessError(f"no HTTP answer on 127.0.0.1:{port} before the deadline ({last})")

    def _exec(self, cmd: list[str]) -> str:
        try:
            res = self.container.get_wrapped_container().exec_run(cmd)
            return res.output.decode(errors="replace").strip() if res.exit_code == 0 else ""
        except Exception:  # noqa: BLE001
            return ""

    def _version(self) -> str:
        if self.spec.kind == "dovecot":
            v = self._exec(["dovecot", "--version"])
            return f"Dovecot {v.split()[0]}" if v else "Dovecot"
        v = self._exec(["sh", "-c", "dpkg-query -W -f '${Version}' cyrus-common"])
        return f"Cyrus IMAP {v}" if v else "Cyrus IMAP"

    def _log_tail(self, n: int = 8) -> str:
        text = ""
        if self.dir:
            for p in sorted((self.dir / "log").glob("*")):
                text += p.read_text(errors="replace")
        if self.container is not None:
            try:
                out, err = self.container.get_logs()
                text += (out or b"").decode(errors="replace") + (err or b"").decode(errors="replace")
            except Exception:  # noqa: BLE001
                pass
        return " | ".join(text.strip().splitlines()[-n:]) or "(empty)"

    def stop(self) -> None:
        if self.container is not None:
            try:
                # files the server wrote into the mount belong to container users: hand them back
                # (-xdev: not the tmpfs mounts below it, whose owners the server still needs while it stops)
                self._exec(["find", MOUNT, "-xdev", "-exec", "chown", f"{os.getuid()}:{os.getgid()}", "{}", "+"])
                wrapped = self.container.get_wrapped_container()
                wrapped.stop(timeout=5)
                wrapped.remove(force=True, v=True)
            except Exception:  # noqa: BLE001
                try:
                    self.container.stop(force=True, delete_volume=True)
                except Exception:  # noqa: BLE001
                    pass
            self.container = None
        if self.sink:
            self.sink.stop()
            self.sink = None
        keep_logs_and_remove(self.dir, self.keep_logs, self.spec.name, pattern="*")
        self.dir = None

    def __enter__(self) -> Target:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


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


def main(argv: list[str] | None = None) -> int:
    """scripts/build-images: python -m conformance.providers.container [--check] [NAME ...]"""
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="build-images", description="build the container targets' images")
    ap.add_argument("names", nargs="*", help=f"images to build (default: all of {', '.join(IMAGES)}); "
                                             "'suite' builds the suite's own image (conformance/suite_image.py)")
    ap.add_argument("--check", action="store_true", help="only say which images are present")
    args = ap.parse_args(argv)
    names = args.names or list(IMAGES)
    suite = "suite" in names
    names = [n for n in names if n != "suite"]
    unknown = [n for n in names if n not in IMAGES]
    if unknown:
        print(f"build-images: unknown image(s) {', '.join(unknown)}; known: {', '.join(IMAGES)}")
        return 2
    problem = engine_problem()
    if problem:
        print(f"build-images: {problem}")
        return 3
    if args.check:
        tags = [IMAGES[n].tag() for n in names]
        if suite:
            from ..suite_image import REPOSITORY, image_tag

            root = checkout_root()
            tags.append(image_tag(root) if root else f"{REPOSITORY}:{__version__}")
        for tag in tags:
            print(f"{tag:40} {'present' if image_exists(tag) else 'missing'}")
        return 0
    t0 = time.monotonic()
    try:
        timings = build_all(names)
        if suite:
            from ..suite_image import build as build_suite

            build_suite(timings=timings)
    except HarnessError as e:
        print(f"build-images: {e}")
        return 1
    timings["total"] = round(time.monotonic() - t0, 1)
    print("build-images: " + json.dumps(timings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
