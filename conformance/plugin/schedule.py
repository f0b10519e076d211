"""Which case runs where and when: the longest expected waits start first, so waiting cases overlap.

Most of a quick run is waiting (keepalive windows, idle timeouts, deadlines), not computing. A case that
waits holds an xdist worker but hardly any CPU, so ``lemonade run`` starts more workers than cores
(``worker_count``) and hands the cases out longest-expected-first (``LongestFirst``, plugged into
pytest-xdist through its ``pytest_xdist_make_scheduler`` hook). The expected duration of a case comes from
``durations.json`` (measured seconds per case of the default run, target left out: see ``case_key``;
``bench/quick_run.py --store-durations`` refreshes it); a case it does not know counts as short. The
expectation only orders the cases: a stale file costs speed, never a verdict.

An xdist worker runs an item only once it holds the next one too (it needs ``nextitem`` for teardown), so
whatever is sent to a worker is committed to run after the case it is running. ``LongestFirst`` therefore
sends the longest pending case to a worker whose current case is short, and the shortest pending case to a
worker whose current case is long (the short one then delays nothing much, and the worker is soon free for
the next long one): list scheduling, longest processing time first, with a look-ahead of one.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pytest

DURATIONS_FILE = Path(__file__).with_name("durations.json")
LONG_S = 1.0  # a case expected to take this long or longer is a "long" one for the look-ahead rule
UNKNOWN_S = 0.1  # what a case missing from durations.json is expected to take

# what one xdist worker costs before its first case, measured on the project's 2-core VM: a fork of the run's fork
# server (``conformance/forkserver.py``: pytest, mitmproxy and the checks imported once), its own pytest session
# and collection (CPU seconds; a fresh interpreter costs ~1 CPU-s more), and per target kind the start of its own
# server (CPU seconds, wall seconds); an external target (a file) is already running
WORKER_CPU_S = 0.3
WORKER_START_S = 0.3  # and the wall time before a started worker runs its first case (on the critical path)
TARGET_START = {"dovecot": (0.05, 0.3), "cyrus": (1.0, 3.0), "cyrus-push": (1.0, 3.0)}
CONTAINER_START = (0.3, 1.0)
CHECK_CPU_SHARE = 0.08  # of a case's duration, what is CPU (a quick run with 16 forked workers: ~9 CPU-s in 109 s of cases)
AUTO_WORKERS_MAX = 16
AUTO_SLACK = 1.02


def case_key(nodeid: str) -> str:
    """A case's id without its target: ``push/test_idle.py::test_x[nat-idle:timeout=3]``.

    The plugin's parametrisation names a case ``...[<target>|<scenario>]`` (plus the check's own parameter
    ids); the target part is dropped so one measured file serves every target.
    """
    return re.sub(r"\[[^|\]]*\|", "[", nodeid, count=1)


@lru_cache(maxsize=4)
def load_durations(path: Path = DURATIONS_FILE) -> dict[str, float]:
    """case_key -> expected seconds; empty when the file is missing or unreadable (the order then is the
    collection's, which costs speed only)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {str(k): float(v) for k, v in raw.get("cases", {}).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def expected_s(nodeid: str, durations: dict[str, float] | None = None) -> float:
    d = load_durations() if durations is None else durations
    return d.get(case_key(nodeid), UNKNOWN_S)


def store_durations(results: list[dict], path: Path = DURATIONS_FILE, keep_old: bool = True) -> int:
    """Write the measured durations of runs' results (a case's longest; with ``keep_old``, the slower of old and
    new, so a fast machine does not hide a wait). Returns how many cases the file holds."""
    measured: dict[str, float] = {}
    for r in results:  # a case seen in several runs: its longest duration
        key = case_key(r.get("nodeid", ""))
        if key and "duration_s" in r:
            measured[key] = max(float(r["duration_s"]), measured.get(key, 0.0))
    cases = dict(load_durations(path)) if keep_old else {}
    for key, seconds in measured.items():
        cases[key] = round(max(seconds, cases.get(key, 0.0)), 2)
    doc = {"about": "expected seconds per case of the default quick run (target left out), used only to start "
                    "the longest waits first; refreshed by bench/quick_run.py --store-durations",
           "cases": dict(sorted(cases.items()))}
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    load_durations.cache_clear()
    return len(cases)


def target_start(targets: list[str]) -> tuple[float, float]:
    """(CPU seconds, wall seconds) one worker spends starting the run's targets (each worker starts its own)."""
    from ..providers import NAMED, is_container_target

    cpu = wall = 0.0
    for t in targets:
        c, w = TARGET_START.get(t, CONTAINER_START if is_container_target(t) else (0.0, 0.0) if t not in NAMED
                                else (0.3, 1.0))
        cpu, wall = cpu + c, wall + w
    return cpu, wall


def auto_workers(expected: list[float], targets: list[str], cpus: int | None = None) -> int:
    """The worker count ``-n auto`` means for ``lemonade run`` (0: run in this process).

    Cases mostly wait, so a waiting case should not hold a core: the count is where two estimates of the run's
    wall time cross, the waits (the longest-first makespan over n workers, after the target start) falling with
    n and the CPU (each worker's start, its targets' start, the cases' own share) rising with n; of the counts
    within 10 % of the best, the smallest. A single case, a few short ones, or cases that together take about as
    long as the longest, run in this process.
    """
    cpus = cpus or os.cpu_count() or 1
    if len(expected) <= 1 or math.fsum(expected) <= max(expected) + UNKNOWN_S:
        return 0
    start_cpu, start_wall = target_start(targets)
    checks_cpu = CHECK_CPU_SHARE * math.fsum(expected)

    def estimate(n: int) -> float:  # n == 0: every case in this process, no worker to start
        waits = start_wall + makespan(expected, max(n, 1)) + (WORKER_START_S if n else 0.0)
        cpu = (n * (WORKER_CPU_S + start_cpu) + checks_cpu) / cpus
        return max(waits, cpu)

    counts = range(0, min(len(expected), AUTO_WORKERS_MAX) + 1)
    best = min(estimate(n) for n in counts)
    # the fewest workers that come within 10 % (and half a second) of the best: a worker's CPU is not free on a
    # shared machine, and a few short cases are quicker in this process than a worker takes to start
    return next(n for n in counts if estimate(n) <= best * AUTO_SLACK + 0.1)


@dataclass
class Lanes:
    """The look-ahead-of-one longest-first rule on its own (no xdist): which pending index to send to a worker
    whose current case is expected to take ``running_s``."""

    expected: list[float]  # seconds, by collection index
    long_s: float = LONG_S
    pending: list[int] = field(default_factory=list)

    def take(self, running_s: float | None) -> int:
        """Remove and return the pending index to commit next: the longest when the worker is free or running a
        short case, the shortest when it is running a long one."""
        if running_s is not None and running_s >= self.long_s:
            pick = min(self.pending, key=lambda i: (self.expected[i], i))
        else:
            pick = max(self.pending, key=lambda i: (self.expected[i], -i))
        self.pending.remove(pick)
        return pick


def makespan(expected: list[float], workers: int, long_s: float = LONG_S) -> float:
    """The wall time the rule gives with exact expectations (a model for the bench and the tests)."""
    lanes = Lanes(expected, long_s, list(range(len(expected))))
    free_at = [0.0] * workers
    queue: list[list[int]] = [[] for _ in range(workers)]
    for w in range(workers):  # initial: the longest as the current case, then the look-ahead
        for _ in range(2):
            if lanes.pending:
                queue[w].append(lanes.take(expected[queue[w][0]] if queue[w] else None))
    clock = [0.0] * workers
    while any(queue):
        w = min((w for w in range(workers) if queue[w]), key=lambda w: clock[w] + expected[queue[w][0]])
        clock[w] += expected[queue[w].pop(0)]
        free_at[w] = clock[w]
        if lanes.pending and queue[w]:
            queue[w].append(lanes.take(expected[queue[w][0]]))
    return max(free_at) if free_at else 0.0


def lower_bound(expected: list[float], workers: int) -> float:
    return max(max(expected, default=0.0), math.fsum(expected) / max(1, workers))


class LongestFirstPlugin:
    """Registered on xdist's controller only: hands the cases out longest-expected-first, from the moment the
    first worker is up (``staged_node_manager``)."""

    @pytest.hookimpl(hookwrapper=True)
    def pytest_sessionstart(self, session):
        from xdist import dsession

        before = getattr(dsession, "NodeManager", None)
        staged = staged_node_manager(before)
        if staged is not None:
            dsession.NodeManager = staged  # xdist's DSession makes its node manager in this hook
        try:
            yield
        finally:
            if staged is not None:
                dsession.NodeManager = before

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config, log):
        if config.getvalue("dist") != "load":
            return None  # --dist loadfile/loadscope/each/worksteal given on purpose: xdist's own
        return make_scheduler(config, log)


def make_scheduler(config, log):
    from xdist.scheduler import LoadScheduling

    class LongestFirst(LoadScheduling):
        """xdist's load scheduling with the case order of ``Lanes``; it starts as soon as the first worker has
        collected (xdist's own waits for all of them), and a worker that collects later joins when it is ready
        (its collection compared with the first, as xdist does for a replaced worker)."""

        @property
        def collection_is_completed(self) -> bool:
            return bool(self.node2collection)

        def schedule(self) -> None:
            assert self.collection_is_completed
            if self.collection is not None:
                for node in self.nodes:
                    if node in self.node2collection:
                        self.check_schedule(node)
                return
            if not self._check_nodes_have_same_collection():
                self.log("**Different tests collected, aborting run**")
                return
            self.collection = next(iter(self.node2collection.values()))
            durations = load_durations()
            self.lanes = Lanes([expected_s(n, durations) for n in self.collection])
            self.lanes.pending = self.pending
            self.pending[:] = range(len(self.collection))
            if not self.collection:
                return
            for node in self.node2collection:  # the longest first on each worker, then its look-ahead
                self.check_schedule(node)

        def _send_one(self, node) -> None:
            queued = self.node2pending[node]
            index = self.lanes.take(self.lanes.expected[queued[0]] if queued else None)
            queued.append(index)
            node.send_runtest_some([index])

        def check_schedule(self, node, duration: float = 0) -> None:
            if node.shutting_down or node not in self.node2collection:
                return
            while len(self.node2pending[node]) < 2 and self.pending:
                self._send_one(node)
            if not self.pending:  # a worker runs its last case only once it knows no other follows
                node.shutdown()

    return LongestFirst(config, log)


STAGED_JOIN_S = 60.0  # at the session's end, how long to wait for workers still being started
STAGED_STARTERS = 2  # workers started at once after the first


def staged_node_manager(base):
    """xdist's NodeManager, except that ``setup_nodes`` returns once the first worker is started and starts the
    others in the background (STAGED_STARTERS at a time), each joining the session as it comes up; ``None`` when
    this xdist has another layout.

    xdist starts its workers one after the other and handles no worker's events before the last has started:
    with sixteen forked workers that is 1.2 s in which the worker that could run the longest case waits idle. The
    scheduler (``LongestFirst``) already begins with the first worker that has collected and takes the others
    as they join, as xdist does with a worker that replaced a crashed one. Everything else stays xdist's: the same
    ``setup_node``, the same events, the same teardown (after the starting threads are done).
    """
    from xdist import workermanage

    if base is not workermanage.NodeManager:
        return None

    class StagedNodeManager(base):
        def setup_nodes(self, putevent):
            dsession = self.config.pluginmanager.getplugin("dsession")
            active = getattr(dsession, "_active_nodes", None)
            if not isinstance(active, set) or len(self.specs) < 2:
                return super().setup_nodes(putevent)
            self.config.hook.pytest_xdist_setupnodes(config=self.config, specs=self.specs)
            first = self.setup_node(self.specs[0], putevent)
            self.stopping = threading.Event()
            self.starting = threading.Thread(target=self.setup_later, args=(self.specs[1:], putevent, active),
                                             name="lemonade-xdist-workers", daemon=True)
            self.starting.start()
            return [first]

        def setup_later(self, specs, putevent, active: set) -> None:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(STAGED_STARTERS, thread_name_prefix="lemonade-xdist-start") as pool:
                list(pool.map(lambda spec: self.setup_one(spec, putevent, active), specs))

        def setup_one(self, spec, putevent, active: set) -> None:
            if self.stopping.is_set():
                return
            # a worker's events wait until it is one of the session's active nodes (its end removes it)
            joined = threading.Event()

            def put(event):
                joined.wait(STAGED_JOIN_S)
                putevent(event)

            try:
                active.add(self.setup_node(spec, put))
            except Exception as e:  # noqa: BLE001 - the run goes on with the workers that started
                print(f"lemonade: pytest worker {getattr(spec, 'id', spec)} could not be started: "
                      f"{str(e).strip()[:300]}; the run goes on without it", file=sys.stderr, flush=True)
            finally:
                joined.set()

        def teardown_nodes(self) -> None:
            starting = getattr(self, "starting", None)
            if starting is not None:
                self.stopping.set()
                starting.join(STAGED_JOIN_S)
            super().teardown_nodes()

    return StagedNodeManager
