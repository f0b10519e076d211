"""A real intermediary program as a private process of one case: found, versioned, configured, started, watched.

Each program runs from a private directory (config, pid file, logs, temporary files) in its own process group
on loopback ports chosen free at start; it is stopped by its process group id and its logs are copied to the
run's ``logs/`` directory. A log watcher turns the log lines that report an intermediary's action (a time-out,
a refusal, a close) into transcript actions while the case runs, so checks see them on the case clock.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ...errors import HarnessError, NotApplicable
from ...providers.base import free_port  # noqa: F401  (the real programs' modules take it from here)
from ...providers.workdir import log_tail, stop_process_group
from ...transcript import Transcript

SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
CALIBRATION_LINK = "README.md#calibration-emulators-against-real-intermediaries"


@dataclass(frozen=True)
class Program:
    """One Debian-packaged program: where it is, which package brings it, how it states its version."""

    name: str  # scenario word: nginx, haproxy, squid, tinyproxy
    binary: str
    package: str
    version_args: tuple[str, ...]
    version_pattern: str  # first group = version

    def path(self) -> str | None:
        found = shutil.which(self.binary)
        if found:
            return found
        return next((f"{d}/{self.binary}" for d in SBIN if os.access(f"{d}/{self.binary}", os.X_OK)), None)

    def require(self) -> str:
        """The binary's path, or NotApplicable naming the package that brings it."""
        path = self.path()
        if path is None:
            raise NotApplicable(f"{self.name} is not installed (Debian package {self.package}; "
                                "`bash scripts/setup.sh` installs it as root)")
        return path

    def version(self) -> str:
        out = subprocess.run([self.require(), *self.version_args], capture_output=True, text=True, timeout=10)
        m = re.search(self.version_pattern, out.stdout + out.stderr)
        return m.group(1) if m else (out.stdout + out.stderr).strip().splitlines()[0][:80]

    def package_version(self) -> str:
        try:
            out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", self.package], capture_output=True,
                                 text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""


def service_user(*names: str) -> str | None:
    """The first of ``names`` that exists, when running as root (programs drop to it as Debian's config says)."""
    if os.geteuid() != 0:
        return None
    for n in names:
        try:
            pwd.getpwnam(n)
            return n
        except KeyError:
            continue
    return None


def give_to(user: str | None, *paths: Path) -> None:
    if user is None:
        return
    pw = pwd.getpwnam(user)
    for p in paths:
        os.chown(p, pw.pw_uid, pw.pw_gid)


@dataclass
class LogRule:
    """A log line worth recording: ``pattern`` searched in each new line, ``describe`` makes the text. ``action``:
    the program did it (a time-out, a refusal: an intermediary action); else a note of what a peer did."""

    pattern: re.Pattern[str]
    describe: Callable[[re.Match[str], str], str]
    action: bool = True


@dataclass
class Running:
    """A started program: its process group, private directory and log watcher."""

    program: Program
    workdir: Path
    argv: list[str]
    transcript: Transcript
    logs: list[Path]
    rules: list[LogRule] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    started_in: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _watcher: threading.Thread | None = None

    @property
    def who(self) -> str:
        return f"real-{self.program.name}"

    def start(self, ports: list[int], timeout: float = 10.0) -> "Running":
        """Start and wait until every port in ``ports`` accepts a connection (or the program exits)."""
        t0 = time.monotonic()
        out = open(self.workdir / "log" / "stdout.log", "ab")
        try:
            self.proc = subprocess.Popen(self.argv, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            out.close()
        deadline = t0 + timeout
        waiting = list(ports)
        while waiting:
            if self.proc.poll() is not None:
                raise HarnessError(f"{self.program.name} exited with status {self.proc.returncode} during start: "
                                   f"{log_tail(self.workdir / 'log', tuple(p.name for p in self.all_logs()))}")
            if time.monotonic() > deadline:
                self.stop()
                raise HarnessError(f"{self.program.name} did not listen on {waiting} within {timeout:g} s")
            try:
                with socket.create_connection(("127.0.0.1", waiting[0]), timeout=0.2):
                    waiting.pop(0)
            except OSError:
                time.sleep(0.01)
        self.started_in = time.monotonic() - t0
        self._watcher = threading.Thread(target=self._watch, name=f"{self.who}-log", daemon=True)
        self._watcher.start()
        return self

    def all_logs(self) -> list[Path]:
        return [*self.logs, self.workdir / "log" / "stdout.log"]

    def _watch(self) -> None:
        """Follow the logs; a line matching a rule becomes a transcript action (checked every 50 ms)."""
        offsets: dict[Path, int] = {}
        partial: dict[Path, str] = {}
        while True:
            stopping = self._stop.is_set()
            for path in self.all_logs():
                try:
                    with open(path, "rb") as f:
                        f.seek(offsets.get(path, 0))
                        chunk = f.read(1 << 20)
                        offsets[path] = f.tell()
                except OSError:
                    continue
                if not chunk:
                    continue
                text = partial.pop(path, "") + chunk.decode("utf-8", errors="replace")
                lines = text.split("\n")
                if lines[-1]:
                    partial[path] = lines[-1]
                for line in lines[:-1]:
                    self._match(line)
            if stopping:
                return
            self._stop.wait(0.05)

    def _match(self, line: str) -> None:
        for rule in self.rules:
            m = rule.pattern.search(line)
            if m:
                if rule.action:
                    self.transcript.action(self.who, rule.describe(m, line))
                else:
                    self.transcript.add(self.who, "N", f"{self.who}: {rule.describe(m, line)}")
                return

    def stop(self, keep_logs: Path | None = None, prefix: str = "") -> list[str]:
        """Stop the process group, read the last log lines, copy the logs; returns the kept file names."""
        if self.proc is not None:
            stop_process_group(self.proc, grace=3.0)
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(5)
        kept = []
        if keep_logs is not None:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for path in self.all_logs():
                if path.exists():  # even empty: the result links every log it names
                    name = f"{prefix}{path.name}"
                    shutil.copy(path, keep_logs / name)
                    kept.append(name)
        return kept


def make_workdir(name: str, owner: str | None) -> Path:
    """A private directory for one program run: ``log/`` and ``tmp/`` writable by the user it drops to."""
    d = Path(tempfile.mkdtemp(prefix=f"lemonade-real-{name}-"))
    (d / "log").mkdir()
    (d / "tmp").mkdir()
    os.chmod(d, 0o755)
    give_to(owner, d / "log", d / "tmp")
    return d
