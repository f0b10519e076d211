"""RealPath: a case's path whose intermediary is a real program, offering the same endpoints as an emulated one.

A subclass writes the program's configuration and starts it in ``launch()``, then fills ``reverse`` (endpoint
name -> listener) or ``forward_proxy`` (an explicit HTTP proxy; CONNECT and ``Blocked`` come from NetworkPath)
and, when it terminates TLS, ``tls_ca``. What the program is (version, package, kept logs) becomes the
``intermediary`` measurement of every result, with a link to the calibration table.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from ...errors import NotApplicable
from ...targets import Target
from ...transcript import Transcript
from ..path import NetworkPath
from ..scenario import Element, Scenario
from .program import CALIBRATION_LINK, Program, Running, give_to


class RealPath(NetworkPath):
    program: Program  # set by each subclass

    def __init__(self, scenario: Scenario, target: Target, transcript: Transcript) -> None:
        super().__init__(scenario, target, transcript)
        element = scenario.real
        assert element is not None
        self.element: Element = element
        self.params: dict[str, Any] = dict(element.params)
        self.running: Running | None = None
        self.workdir: Path | None = None
        self.tls_ca: Path | None = None
        self.log_prefix = f"{element.name}-{os.getpid()}-{secrets.token_hex(3)}-"  # unique per case in logs/

    @property
    def who(self) -> str:
        return self.element.name

    @property
    def ca_file(self) -> str | None:
        return str(self.tls_ca) if self.intercepts_tls and self.tls_ca else None

    def start(self) -> "RealPath":
        self.note_preset()
        try:
            self.launch()
        except BaseException:
            self.stop()
            raise
        where = [f"{k} on {v[0]}:{v[1]}" for k, v in self.reverse.items()]
        if self.forward_proxy:
            where.append(f"HTTP proxy on {self.proxy_url}")
        started = f" (ready in {self.running.started_in:.3f} s)" if self.running else ""
        self.transcript.note(f"scenario {self.scenario}: {self.describe()} listening for " + ", ".join(where) + started)
        return self

    def launch(self) -> None:
        raise NotImplementedError

    def upstream_trust(self, user: str | None) -> dict[str, Any]:
        """How the program verifies the target's certificate on its own leg: the target's TLS settings hold there
        (``verify``: bool; ``ca``: a copy of the target's ca_file the program's user can read, or the system bundle)."""
        tls = self.target.tls
        if not (tls.verify or tls.ca_file):
            return {"verify": False, "ca": ""}
        ca = Path("/etc/ssl/certs/ca-certificates.crt")
        if tls.ca_file:
            assert self.workdir is not None
            ca = self.workdir / "upstream-ca.pem"
            shutil.copy(tls.ca_file, ca)
            give_to(user, ca)
        return {"verify": True, "ca": str(ca)}

    def describe(self) -> str:
        """One line: which program, which version, from which package."""
        version = self.facts.get("intermediary", {}).get("value", "")
        return f"{self.who} ({version})" if version else self.who

    def record_program(self, extra: dict[str, Any] | None = None) -> None:
        """The ``intermediary`` fact: the program's own version string and its Debian package version."""
        p = self.program
        logs = [f"logs/{self.log_prefix}{f.name}" for f in self.running.all_logs()] if self.running else []
        self.facts["intermediary"] = {
            "value": f"{p.name} {p.version()}", "package": f"{p.package} {p.package_version()}".strip(),
            "scenario": str(self.element), "calibration": CALIBRATION_LINK,
            **({"logs": logs} if logs and self.keep_logs else {}), **(extra or {}),
        }

    # -- faults on demand ------------------------------------------------------------------------
    def kill(self, how: str = "rst", endpoint: str | None = None) -> int:
        raise NotApplicable(f"{self.who} runs the real program, which has no way to cut connections on demand "
                            "(use an emulated scenario such as kill)")

    def kill_after(self, octets: int, side: str = "client", how: str = "rst", endpoint: str | None = None) -> None:
        raise NotApplicable(f"{self.who} runs the real program, which cannot cut a connection after N octets "
                            "(use the emulated kill scenario)")

    def blackhole(self, endpoint: str | None = None) -> int:
        raise NotApplicable(f"{self.who} runs the real program, which cannot black-hole a connection on demand "
                            "(real-nat can; or use nat-idle:mode=silent)")

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop(self.keep_logs, self.log_prefix)
            self.running = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
