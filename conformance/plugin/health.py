"""When a target stops answering: a probe after a case that timed out, and the remaining cases ended at once.

A target that hangs (its process stopped, its host gone, its accept queue full) would otherwise cost every
remaining case its own deadline. After a case that timed out (a client waited out its deadline, a connection
attempt failed, the case ran past its time limit, or it did not pass and lasted a whole deadline), the process
probes each endpoint of the target with a fresh connection: the greeting (IMAP ``*``, SMTP ``220``) or an HTTP
status line, within the deadline. An endpoint whose probe fails too is marked stopped for the rest of this
process; every later case on that target that uses it ends at once as ``error`` ("target stopped answering at
T", the probe as evidence), never as ``fail`` (nothing was judged) and never as another deadline. Per pytest
process: each worker finds out on its own, after one timed-out case.
"""

from __future__ import annotations

import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..errors import HarnessError, ServerTimeout, TargetUnreachable
from .watchdog import CaseTimeout

TIMEOUTS = (ServerTimeout, TargetUnreachable, CaseTimeout, TimeoutError)  # socket.timeout is TimeoutError
PROBE_MAX_S = 5.0  # a probe waits at most this long (or the run's deadline when shorter)
EXPECT = {"imap": b"* ", "imaps": b"* ", "submission": b"220", "submissions": b"220"}


class TargetStopped(HarnessError):
    """The target stopped answering earlier in this run: the case was not tried (verdict error)."""

    def __init__(self, message: str, probe: dict[str, Any]) -> None:
        super().__init__(message)
        self.probe = probe


@dataclass
class Stopped:
    """An endpoint that did not answer a probe: when, after which case, what the probe saw."""

    endpoint: str
    at: float  # wall clock
    after: str  # the case that timed out first
    probe: dict[str, str]  # endpoint -> what its probe saw

    def message(self, target: str, run_started: float) -> str:
        when = time.strftime("%H:%M:%S", time.gmtime(self.at))
        return (f"target {target} stopped answering at {when}Z ({self.at - run_started:.0f} s into the run): after "
                f"{self.after} timed out, a fresh connection to its {self.endpoint} endpoint got no answer either "
                f"({self.probe[self.endpoint]}); this case was not tried")


def timed_out(exceptions: list[BaseException], verdict: str, duration_s: float, deadline_s: float) -> bool:
    """Whether a case ended the way a stopped target ends one."""
    if any(isinstance(e, TIMEOUTS) for e in exceptions):
        return True
    return verdict in ("fail", "error") and duration_s >= deadline_s


def probe_endpoint(ep, timeout: float) -> str | None:
    """None when the endpoint answers a fresh connection in time, else what went wrong (one line)."""
    t0 = time.monotonic()
    try:
        with socket.create_connection((ep.host, ep.port), timeout=timeout) as raw:
            raw.settimeout(max(0.1, timeout - (time.monotonic() - t0)))
            sock: socket.socket = raw
            if ep.scheme in ("imaps", "smtps", "submissions", "https"):
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # liveness only: the checks judge the certificate
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
                sock = ctx.wrap_socket(raw, server_hostname=ep.host)
            if ep.name == "jmap":
                sock.sendall(f"GET {ep.path or '/'} HTTP/1.1\r\nHost: {ep.host}\r\nConnection: close\r\n\r\n".encode())
                expect = b"HTTP/"
            else:
                expect = EXPECT.get(ep.name, b"")
            data = sock.recv(64)
    except (TimeoutError, socket.timeout):
        return f"{ep.url}: no answer within {timeout:g} s"
    except (OSError, ssl.SSLError) as e:
        return f"{ep.url}: {type(e).__name__}: {e}"
    if not data:
        return f"{ep.url}: closed without a word"
    if not data.startswith(expect):
        return f"{ep.url}: answered {data[:40]!r}, not {expect!r}"
    return None


def probe_target(target, timeout: float) -> dict[str, str | None]:
    """Every endpoint of ``target`` probed at once: endpoint -> None (answered) or what went wrong."""
    eps = list(target.endpoints.values())
    with ThreadPoolExecutor(max_workers=max(1, len(eps))) as pool:
        outcomes = list(pool.map(lambda ep: probe_endpoint(ep, timeout), eps))
    return {ep.name: outcome for ep, outcome in zip(eps, outcomes)}


@dataclass
class TargetHealth:
    """This process's view of which endpoints of which targets stopped answering."""

    deadline_s: float
    run_started: float = field(default_factory=time.time)
    stopped: dict[tuple[str, str], Stopped] = field(default_factory=dict)  # (--target value, endpoint) -> when
    probes: int = 0

    def after_case(self, spec: str, target, case: str) -> dict[str, Any] | None:
        """Probe ``target`` after ``case`` timed out; mark what does not answer. Returns the probe as evidence."""
        if target is None or all((spec, ep) in self.stopped for ep in target.endpoints):
            return None
        t0 = time.monotonic()
        outcomes = probe_target(target, min(self.deadline_s, PROBE_MAX_S))
        self.probes += 1
        seen = {ep: outcome or "answered" for ep, outcome in outcomes.items()}
        now = time.time()
        for ep, outcome in outcomes.items():
            if outcome is not None and (spec, ep) not in self.stopped:
                self.stopped[(spec, ep)] = Stopped(ep, now, case, seen)
        return {"after": case, "seconds": round(time.monotonic() - t0, 3), "endpoints": seen}

    def check(self, spec: str, name: str, uses: list[str]) -> None:
        """Raise TargetStopped when the case uses an endpoint of the target that stopped answering."""
        for ep in uses:
            stop = self.stopped.get((spec, ep))
            if stop is not None:
                raise TargetStopped(stop.message(name, self.run_started),
                                    {"endpoint": ep, "at": stop.at, "after": stop.after, "endpoints": stop.probe})
