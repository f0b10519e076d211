"""The run's own processes: the marker each carries, the registry of what the run started, and the sweep that
ends them all, so that no server, proxy, worker or client program outlives its run.

``lemonade run`` gives itself a marker (``LEMONADE_RUN_MARKER`` in its environment: every process it starts
inherits it, and ``child_env`` adds it where a caller passes an environment of its own) and a registry folder
(``<run>/processes.d``): each process that starts something in a process group or session of its own (a server,
a real intermediary, a client play) records it there with its start time, and every pytest worker records
itself. ``members()`` finds the run's living processes three ways: recorded PIDs (still the same process: same
start time), every member of a recorded process group or session, and every process whose environment carries
the marker (a program that cleans its environment, as Dovecot does for its children, stays in its session).

A reaper process (``Reaper``, started first, in a session of its own) holds a pipe from ``lemonade run``. When
the pipe ends without the word that the run finished (the run was killed, even with SIGKILL), it sweeps: SIGTERM
to every member, SIGKILL to what is left after a grace period, containers of the run removed, a note written to
``processes.d/reaper.log``. A run that ends, or is stopped with Ctrl-C or SIGTERM, sweeps the same way itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

MARKER_VAR = "LEMONADE_RUN_MARKER"  # space-separated: a run started inside another run carries both markers
REGISTRY_VAR = "LEMONADE_RUN_REGISTRY"
REGISTRY_DIR = "processes.d"
FINISHED = b"finished\n"  # what lemonade run writes to the reaper before it exits on its own
CONTAINER_LABEL = "org.lemonade.run"
WORKER = "pytest worker"  # what a worker records itself as


@dataclass(frozen=True)
class ProcInfo:
    """What /proc says about one process (None when it is gone or is a zombie: a zombie holds nothing)."""

    pid: int
    pgid: int
    sid: int
    start: int  # clock ticks after boot: with the PID, identifies the process (PIDs are reused)
    name: str

    @classmethod
    def read(cls, pid: int) -> "ProcInfo | None":
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except (OSError, ValueError):
            return None
        name = raw[raw.find("(") + 1:raw.rfind(")")]
        rest = raw[raw.rfind(")") + 2:].split()
        if rest[0] in ("Z", "X"):
            return None
        return cls(pid, int(rest[2]), int(rest[3]), int(rest[19]), name)


def living() -> Iterator[ProcInfo]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            info = ProcInfo.read(int(entry.name))
            if info is not None:
                yield info


def carries(pid: int, marker: str) -> bool:
    """Whether the process's environment (as it was at exec) holds ``marker`` among LEMONADE_RUN_MARKER's words."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        return False
    prefix = MARKER_VAR.encode() + b"="
    for entry in env.split(b"\0"):
        if entry.startswith(prefix) and marker.encode() in entry[len(prefix):].split():
            return True
    return False


def note_started(pid: int, what: str, *, leads: bool = True) -> None:
    """Record a process this one started (by default in a process group or session of its own), when it runs
    inside a ``lemonade run`` (a no-op elsewhere)."""
    run = RunProcesses.current()
    if run is not None:
        run.record(pid, what, leads=leads)


def new_marker() -> str:
    return f"lemonade-{uuid.uuid4().hex[:16]}"


def child_env(env: dict[str, str] | None) -> dict[str, str] | None:
    """``env`` with the run's marker added (a process started with an environment of its own still carries it)."""
    if env is None or MARKER_VAR not in os.environ:
        return env
    return {**env, MARKER_VAR: os.environ[MARKER_VAR]}


@dataclass
class RunProcesses:
    """The processes of one run (``marker``) and their registry folder."""

    marker: str
    registry: Path

    @classmethod
    def current(cls) -> "RunProcesses | None":
        """The run this process belongs to (None outside a ``lemonade run``, e.g. in the suite's own tests)."""
        markers = os.environ.get(MARKER_VAR, "").split()
        registry = os.environ.get(REGISTRY_VAR)
        if not markers or not registry:
            return None
        return cls(markers[-1], Path(registry))

    def enter(self) -> dict[str, str | None]:
        """Make this process (and whatever it starts from now on) part of the run; returns what ``leave`` restores."""
        self.registry.mkdir(parents=True, exist_ok=True)
        before = {k: os.environ.get(k) for k in (MARKER_VAR, REGISTRY_VAR)}
        outer = os.environ.get(MARKER_VAR, "").split()
        os.environ[MARKER_VAR] = " ".join([*outer, self.marker])
        os.environ[REGISTRY_VAR] = str(self.registry)
        return before

    @staticmethod
    def leave(before: dict[str, str | None]) -> None:
        """The environment as it was before ``enter`` (a run made inside a longer-lived process, e.g. a test)."""
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    # -- the registry ------------------------------------------------------------------------------
    def record(self, pid: int, what: str, *, leads: bool = False, **extra: Any) -> None:
        """Note a process of the run. ``leads``: the run started it in a process group or session of its own, whose
        members are the run's too (never said of ``lemonade run`` itself: its group may hold the user's pager)."""
        info = ProcInfo.read(pid)
        if info is not None:
            self.note(what, pid=pid, start=info.start, pgid=info.pgid, sid=info.sid, leads=leads, **extra)

    def note(self, what: str, **extra: Any) -> None:
        """A line in this process's registry file (a process, or something else the sweep must end)."""
        line = {"what": what, "by": os.getpid(), "marker": self.marker, **extra}
        self.registry.mkdir(parents=True, exist_ok=True)
        with open(self.registry / f"{os.getpid()}.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    def records(self) -> list[dict[str, Any]]:
        out = []
        for p in sorted(self.registry.glob("*.jsonl")):
            for line in p.read_text(encoding="utf-8", errors="replace").split("\n"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # torn by a kill mid-write
        return out

    # -- who belongs to the run ----------------------------------------------------------------------
    def members(self, exclude: set[int] | frozenset[int] = frozenset()) -> dict[int, str]:
        """Living processes of the run: pid -> why it counts (recorded, group or session of a recorded leader,
        marker)."""
        # only this marker's records: a resumed run shares the registry folder with the runs before it
        mine = [r for r in self.records() if "pid" in r and r.get("marker") == self.marker]
        recorded = {r["pid"]: (r["start"], r["what"]) for r in mine}
        groups = {r["pgid"]: r["what"] for r in mine if r.get("leads") and r["pgid"] == r["pid"]}
        sessions = {r["sid"]: r["what"] for r in mine if r.get("leads") and r["sid"] == r["pid"]}
        found: dict[int, str] = {}
        skip = set(exclude) | {os.getpid()}
        for info in living():
            if info.pid in skip:
                continue
            if info.pid in recorded and recorded[info.pid][0] == info.start:
                found[info.pid] = f"recorded: {recorded[info.pid][1]}"
            elif info.pgid in groups:
                found[info.pid] = f"process group of {groups[info.pgid]}"
            elif info.sid in sessions:
                found[info.pid] = f"session of {sessions[info.sid]}"
            elif carries(info.pid, self.marker):
                found[info.pid] = f"carries {self.marker}"
        return found

    def workers(self) -> list[int]:
        """Recorded pytest workers of this run still alive (the same processes)."""
        out = []
        for r in self.records():
            if r.get("what", "").startswith(WORKER) and r.get("marker") == self.marker:
                info = ProcInfo.read(r["pid"])
                if info is not None and info.start == r["start"]:
                    out.append(r["pid"])
        return out

    # -- ending them -----------------------------------------------------------------------------
    def sweep(self, grace_s: float = 3.0, limit_s: float = 15.0,
              exclude: set[int] | frozenset[int] = frozenset()) -> dict[int, str]:
        """End the run's processes: first its pytest workers (SIGTERM: each ends its case and stops the servers
        it started; a case cut short leaves no result, so a resume runs it again), then every member left:
        SIGTERM, SIGKILL after ``grace_s``, until none is left or ``limit_s`` passed (a member that starts
        another process while it ends is found by the next round). Returns pid -> why it belonged to the run."""
        ended: dict[int, str] = {}
        t0 = time.monotonic()
        exclude = set(exclude) | {os.getpid()}
        workers = [pid for pid in self.workers() if pid not in exclude]
        for pid in workers:
            ended[pid] = "recorded: pytest worker"
            try:
                os.kill(pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass
        while workers and time.monotonic() - t0 < grace_s:
            time.sleep(0.05)
            workers = [pid for pid in workers if ProcInfo.read(pid) is not None]
        t1 = time.monotonic()
        while time.monotonic() - t0 < limit_s:
            found = self.members(exclude)
            if not found:
                break
            sig = signal.SIGTERM if time.monotonic() - t1 < grace_s else signal.SIGKILL
            for pid, why in found.items():
                ended.setdefault(pid, why)
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.1)
        if any(r.get("what") == "container" for r in self.records()):
            remove_containers(self.marker)
        return ended


def remove_containers(marker: str) -> list[str]:
    """Remove every container labelled with the run's marker (the engine outlives the run's processes)."""
    try:
        from .providers.engine import docker_client

        client = docker_client()
        gone = []
        for c in client.containers.list(all=True, filters={"label": f"{CONTAINER_LABEL}={marker}"}):
            c.remove(force=True, v=True)
            gone.append(c.name)
        return gone
    except Exception:  # noqa: BLE001 - the engine may be gone too; nothing more can be done here
        return []


@dataclass
class Reaper:
    """The process that ends the run's processes when ``lemonade run`` dies without finishing."""

    run: RunProcesses
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def start(self) -> "Reaper":
        env = {k: v for k, v in os.environ.items() if k != MARKER_VAR}  # not a member of the run it sweeps
        self.proc = subprocess.Popen([sys.executable, "-m", "conformance.processes", self.run.marker,
                                      str(self.run.registry)],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env=env, start_new_session=True)
        self.run.record(self.proc.pid, "reaper")
        return self

    def finish(self) -> None:
        """The run ended on its own: the reaper leaves without sweeping."""
        if self.proc is None or self.proc.stdin is None:
            return
        try:
            self.proc.stdin.write(FINISHED)
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.proc = None


def reap(marker: str, registry: Path) -> int:
    """The reaper's life: wait for the end of the pipe from lemonade run; sweep unless it said it finished."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the run: the run handles it
    said = b""
    while True:
        chunk = os.read(0, 64)
        if not chunk:
            break
        said += chunk
    if said.endswith(FINISHED):
        return 0
    t0 = time.monotonic()
    run = RunProcesses(marker, registry)
    ended = run.sweep()
    with open(registry / "reaper.log", "a", encoding="utf-8") as f:
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} lemonade run ended without finishing; "
                f"ended {len(ended)} process(es) of the run in {time.monotonic() - t0:.1f} s"
                + "".join(f"\n  {pid}: {why}" for pid, why in sorted(ended.items())) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(reap(sys.argv[1], Path(sys.argv[2])))
