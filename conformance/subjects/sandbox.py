"""Running a client program under test, bounded: an unprivileged user, RLIMITs, a deadline, an output cap.

A client written by strangers may flood, never exit, fork, or write where it should not (issue 20). Each
play of an adapter runs:
- as the dedicated system user ``lemonade-client`` when the suite runs as root (``scripts/setup.sh``
  creates it), else as the suite's own user;
- in its own process group, with a run id in its environment: at the deadline (or when the output folder
  outgrows its cap) the group gets SIGTERM, then SIGKILL, and so does every process still carrying the run
  id (a child that left the group with setsid is found through /proc);
- under RLIMITs for address space, open files, file size, CPU time and processes;
- with its standard output and error kept as a ring of the last ``log_kib`` KiB (plus a count of what was
  dropped), secrets scrubbed before anything leaves the process.
After the play, files the client user created outside its own folders in /tmp, /var/tmp and /dev/shm are
listed in the case's notes: writing there is reported, never silently tolerated (nor deleted: the suite
removes nothing it cannot attribute for sure).
"""

from __future__ import annotations

import os
import pwd
import resource
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import HarnessError

CLIENT_USER = "lemonade-client"
RUN_ID_VAR = "LEMONADE_RUN_ID"
NOT_SUPPORTED = 127  # an adapter that does not support a case exits with this (the QUIC interop runner's code)
SANDBOX_ROOT = Path(tempfile.gettempdir()) / "lemonade-clients"  # every play's folders live below this


def play_root(label: str) -> Path:
    """A fresh folder for one client session's output, state and secrets, below SANDBOX_ROOT."""
    SANDBOX_ROOT.mkdir(mode=0o755, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{label}-", dir=SANDBOX_ROOT))


@dataclass(frozen=True)
class Limits:
    wall_s: float = 60.0  # a play is stopped at this age (push plays are stopped by the check before it)
    memory_mib: int = 1536  # RLIMIT_AS: address space (thread stacks of Python/Perl clients count here)
    open_files: int = 256
    file_size_mib: int = 64  # RLIMIT_FSIZE: one file the client writes
    cpu_s: int = 300
    processes: int = 512  # RLIMIT_NPROC counts every process of the user: leave room for parallel workers
    output_mib: int = 64  # the output folder as a whole
    log_kib: int = 256  # ring of the client's own stdout/stderr


@dataclass
class Ring:
    """The last ``limit`` octets of a stream, and how many were dropped before them."""

    limit: int
    data: bytearray = field(default_factory=bytearray)
    dropped: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, chunk: bytes) -> None:
        with self._lock:
            self.data += chunk
            if len(self.data) > self.limit:
                cut = len(self.data) - self.limit
                del self.data[:cut]
                self.dropped += cut

    def text(self) -> str:
        with self._lock:
            head = f"[{self.dropped} earlier octets dropped]\n" if self.dropped else ""
            return head + bytes(self.data).decode("utf-8", errors="backslashreplace")


def client_identity() -> tuple[int, int, str]:
    """(uid, gid, name) the client programs run as."""
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam(CLIENT_USER)
        except KeyError:
            raise HarnessError(f"running as root needs the system user {CLIENT_USER!r} for client programs: "
                               "run scripts/setup.sh (it creates the user)") from None
        return pw.pw_uid, pw.pw_gid, CLIENT_USER
    return os.geteuid(), os.getegid(), pwd.getpwuid(os.geteuid()).pw_name


def make_dirs(root: Path, names: tuple[str, ...]) -> dict[str, Path]:
    """Folders the client may write, owned by the client user; ``root`` itself stays the suite's."""
    uid, gid, _ = client_identity()
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    out = {}
    for n in names:
        d = root / n
        d.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            os.chown(d, uid, gid)
        os.chmod(d, 0o700)
        out[n] = d
    return out


def write_secret(path: Path, text: str) -> Path:
    uid, gid, _ = client_identity()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    if os.geteuid() == 0:
        os.chown(path, uid, gid)
    return path


def _limit(limits: Limits) -> Callable[[], None]:
    def apply() -> None:  # runs in the child between fork and exec: plain syscalls only
        mib = 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mib * mib, limits.memory_mib * mib))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_mib * mib, limits.file_size_mib * mib))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 5))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if os.geteuid() == 0:  # only meaningful for the dedicated user (a shared uid would count the suite too)
            resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
    return apply


def folder_size(path: Path, cap: int) -> int:
    """Octets under ``path`` (stops counting once past ``cap``)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                continue
            if total > cap:
                return total
    return total


class SandboxedProcess:
    """One play of an adapter. ``stop()`` is idempotent; ``wait()`` enforces the deadline."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, limits: Limits, output: Path,
                 secrets: set[str] | None = None, scrub: Callable[[str], str] | None = None) -> None:
        self.argv, self.limits, self.output, self.cwd = argv, limits, output, cwd
        self.run_id = uuid.uuid4().hex
        self.env = {**env, RUN_ID_VAR: self.run_id}
        self.ring = Ring(limits.log_kib * 1024)
        self.scrub = scrub or (lambda s: s)
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self.ended: float | None = None
        self.returncode: int | None = None
        self.stopped_by: str = ""  # "", "deadline", "output cap", "suite"
        self.stray_files: list[str] = []
        self._lock = threading.Lock()
        self._marker: Path | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "SandboxedProcess":
        uid, gid, _ = client_identity()
        kw: dict = {}
        if os.geteuid() == 0:
            kw = {"user": uid, "group": gid, "extra_groups": []}
        fd, marker = tempfile.mkstemp(prefix="lemonade-client-mark-")
        os.close(fd)
        self._marker = Path(marker)
        try:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, process_group=0,
                                         preexec_fn=_limit(self.limits), close_fds=True, **kw)
        except OSError as e:
            raise HarnessError(f"cannot start client adapter {self.argv[0]}: {e}") from e
        self.started = time.monotonic()
        threading.Thread(target=self._pump, daemon=True, name=f"client-log-{self.proc.pid}").start()
        threading.Thread(target=self._guard, daemon=True, name=f"client-guard-{self.proc.pid}").start()
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for chunk in iter(lambda: self.proc.stdout.read1(65536), b""):
            self.ring.add(chunk)

    def _guard(self) -> None:
        """Deadline and output cap, checked every 0.2 s while the process lives."""
        cap = self.limits.output_mib * 1024 * 1024
        while self.proc is not None and self.proc.poll() is None:
            if time.monotonic() - self.started > self.limits.wall_s:
                self._terminate("deadline")
                return
            if folder_size(self.output, cap) > cap:
                self._terminate("output cap")
                return
            time.sleep(0.2)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the end of the play (at most ``timeout``, and never past the deadline). None: still running."""
        assert self.proc is not None
        limit = self.started + self.limits.wall_s + 10
        end = min(limit, time.monotonic() + timeout) if timeout is not None else limit
        try:
            self.proc.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            if time.monotonic() >= limit:
                self._terminate("deadline")
            else:
                return None
        return self._finish()

    def stop(self, reason: str = "suite") -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self._terminate(reason)
        return self._finish()

    def kill(self, reason: str = "killed by the suite") -> int | None:
        """SIGKILL the whole play at once (a crash or an out-of-memory kill, no chance to clean up)."""
        with self._lock:
            if not self.stopped_by:
                self.stopped_by = reason
        self._signal_all(signal.SIGKILL)
        return self._finish()

    def _terminate(self, reason: str) -> None:
        with self._lock:
            if self.stopped_by or self.proc is None:
                return
            self.stopped_by = reason
        for sig in (signal.SIGTERM, signal.SIGKILL):
            self._signal_all(sig)
            try:
                self.proc.wait(timeout=3)
                if sig == signal.SIGTERM and not self._leftovers():
                    break
            except subprocess.TimeoutExpired:
                continue
        self._signal_all(signal.SIGKILL)

    def _signal_all(self, sig: int) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        for pid in self._leftovers():
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    def _leftovers(self) -> list[int]:
        """Processes still carrying this play's run id in their environment (children that left the group)."""
        needle = f"{RUN_ID_VAR}={self.run_id}".encode()
        found = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/environ", "rb") as f:
                    if needle in f.read().split(b"\0"):
                        found.append(int(entry.name))
            except OSError:
                continue
        return found

    def _finish(self) -> int | None:
        assert self.proc is not None
        if self.ended is None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._signal_all(signal.SIGKILL)
                self.proc.wait(timeout=5)
            for pid in self._leftovers():  # an orphan that kept the run id outlives the group: end it too
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            self.ended = time.monotonic()
            self.returncode = self.proc.returncode
            self.stray_files = self._strays()
        return self.returncode

    def _strays(self) -> list[str]:
        """Files the client user made in shared temporary folders during the play (listed in the case's notes)."""
        if os.geteuid() != 0 or self._marker is None:
            return []
        uid, _, _ = client_identity()
        since = self._marker.stat().st_mtime
        found = []
        for top in ("/tmp", "/var/tmp", "/dev/shm"):
            for dirpath, dirs, files in os.walk(top):
                if dirpath.count(os.sep) - top.count(os.sep) >= 2:
                    dirs[:] = []
                for name in dirs + files:
                    p = os.path.join(dirpath, name)
                    try:
                        st = os.lstat(p)
                    except OSError:
                        continue
                    if st.st_uid == uid and st.st_mtime >= since and not p.startswith(str(SANDBOX_ROOT)):
                        found.append(p)
        # listed, not removed: another process of the same user (a play of another run, a user's own test)
        # may have made them, and the suite never deletes what it cannot attribute for sure
        self._marker.unlink(missing_ok=True)
        return sorted(found)[:50]

    def log(self) -> str:
        return self.scrub(self.ring.text())
