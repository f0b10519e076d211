"""The per-case time limit (``--case-timeout``): a safety net under every deadline of the checks.

A case that runs past its limit is stopped with :class:`CaseTimeout` (a harness error, so the case is
``error``), whose message carries the stack of the case at the moment it was stopped: where it hung. The
run goes on with the next case. Setup and call share the limit; teardown gets a grace period of its own so
clients and intermediaries are still closed after a case was stopped. What a process does once for all its
cases (importing the client stack, starting a target, which has deadlines of its own) is not counted.

On the main thread (pytest and its xdist workers run cases there) a SIGALRM interval timer interrupts the
case, also inside a blocking socket call. Elsewhere a watchdog thread raises the exception in the case's
thread asynchronously (effective at the next Python instruction).
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from types import FrameType

import pytest

from ..errors import HarnessError

TEARDOWN_GRACE_S = 30.0
STACK_FRAMES = 12


class CaseTimeout(HarnessError):
    """The case ran past --case-timeout; the message says where it was."""


def stack_text(frame: FrameType | None) -> str:
    """The innermost frames of a stack, pytest's and pluggy's own left out (they say nothing about the hang)."""
    frames = [f for f in (traceback.extract_stack(frame) if frame is not None else [])
              if not any(part in f.filename for part in ("/_pytest/", "/pluggy/"))]
    return "".join(traceback.format_list(frames[-STACK_FRAMES:])).rstrip()


@dataclass
class CaseWatchdog:
    """Arms and disarms the limit around each phase of a case; one per pytest process."""

    limit_s: float
    grace_s: float = TEARDOWN_GRACE_S
    spent_s: float = 0.0  # setup and call time of the current case so far
    fired: bool = False
    _since: float = 0.0
    _armed: str = ""  # the phase the limit is armed for, "" when disarmed
    _timer: threading.Thread | None = field(default=None, repr=False)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _previous_handler: object = field(default=None, repr=False)

    def start_case(self) -> None:
        self.spent_s, self.fired = 0.0, False

    def arm(self, phase: str) -> None:
        budget = max(self.limit_s - self.spent_s, 0.001) if phase != "teardown" else self.grace_s
        self._since = time.monotonic()
        self._armed = phase
        message = (f"the case ran past its time limit (--case-timeout {self.limit_s:g} s"
                   + (f", then {self.grace_s:g} s to tear down" if phase == "teardown" else "")
                   + f") in {phase} and was stopped there; the run went on. Stack of the case when stopped:\n")
        if threading.current_thread() is threading.main_thread():
            def on_alarm(signum: int, frame: FrameType | None) -> None:
                self.fired = True
                raise CaseTimeout(message + stack_text(frame))

            self._previous_handler = signal.signal(signal.SIGALRM, on_alarm)
            signal.setitimer(signal.ITIMER_REAL, budget)
        else:
            self._cancel = threading.Event()
            self._timer = threading.Thread(target=self._watch, args=(threading.get_ident(), budget, message,
                                                                     self._cancel),
                                           name="lemonade-case-watchdog", daemon=True)
            self._timer.start()

    def disarm(self, phase: str) -> None:
        self._armed = ""
        if threading.current_thread() is threading.main_thread():
            signal.setitimer(signal.ITIMER_REAL, 0)
            if self._previous_handler is not None:
                signal.signal(signal.SIGALRM, self._previous_handler)  # type: ignore[arg-type]
                self._previous_handler = None
        else:
            self._cancel.set()
            if self._timer is not None:
                self._timer.join()
                self._timer = None
            if self.fired:  # fired as the phase ended: withdraw the exception if it is still pending
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(threading.get_ident()), None)
        if phase != "teardown":
            self.spent_s += time.monotonic() - self._since

    @contextlib.contextmanager
    def paused(self):
        """Work done once per process inside a case's setup (a target starting): not counted against the case."""
        phase = self._armed
        if not phase:
            yield
            return
        self.disarm(phase)
        try:
            yield
        finally:
            self.arm(phase)

    def _watch(self, ident: int, budget: float, message: str, cancel: threading.Event) -> None:
        if cancel.wait(budget):
            return
        frame = sys._current_frames().get(ident)  # noqa: SLF001 - the documented way to see another thread
        self.fired = True
        stopped = type("CaseTimeout", (CaseTimeout,), {"__init__": lambda s: CaseTimeout.__init__(
            s, message + stack_text(frame))})
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(stopped))


WATCHDOG = pytest.StashKey[CaseWatchdog]()


@contextlib.contextmanager
def paused(config: pytest.Config):
    """The case's time limit paused (no-op when the run has none)."""
    dog = config.stash.get(WATCHDOG, None)
    if dog is None:
        yield
        return
    with dog.paused():
        yield
