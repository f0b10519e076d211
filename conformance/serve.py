"""`lemonade serve`: a reference server (optionally behind a scenario's intermediaries) kept up for others' clients.

``lemonade serve --target cyrus-push [--scenario nat-idle:timeout=30] [--write FILE]`` starts the target the way
``lemonade run`` does (a provider: local process or container), starts the scenario's path in front of it when one
is given, prints a target file (TOML, the format ``--target FILE`` reads; every other line is a TOML comment, so the
whole output is a valid target file) and the endpoints, and keeps everything up until SIGINT or SIGTERM. Then it
stops what it started: the path, then the provider (which ends exactly the process group it started). A target file
given to ``--target`` is not started (it is already running): only the path is put in front of it.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from .errors import BadInput, HarnessError
from .targets import Target
from .transcript import Entry, Transcript

READY = "# ready"


class ServeLog(Transcript):
    """The transcript of a long-lived path: intermediary actions and notes go to a stream as they happen; wire
    lines are counted, not kept (a path that runs for days must not grow without bound)."""

    def __init__(self, stream: TextIO, secrets: set[str]) -> None:
        super().__init__(secrets=secrets)
        self.stream = stream

    def add(self, leg: str, direction: str, text: str, nbytes: int = 0, conn: str = "") -> Entry:
        entry = Entry(self.now(), leg, direction, text, nbytes, conn)
        if direction in ("I", "N"):
            line = self.redactor().scrub(text).replace("\n", " ")
            print(f"# t={entry.t:.3f} {line}", file=self.stream, flush=True)
        else:
            self.dropped += 1
        return entry


def toml_string(value: str) -> str:
    """A TOML basic string (JSON's escapes are valid TOML escapes)."""
    return json.dumps(value, ensure_ascii=False)


def target_toml(target: Target) -> str:
    """``target`` as a target file (README "Target files"); carries the passwords, like any target file."""
    lines = [f"name = {toml_string(target.name)}"]
    if target.version:
        lines.append(f"version = {toml_string(target.version)}")
    lines.append("[endpoints]")
    lines += [f"{k} = {toml_string(ep.url)}" for k, ep in target.endpoints.items()]
    lines.append("[tls]")
    if target.tls.ca_file:
        lines.append(f"ca_file = {toml_string(str(target.tls.ca_file))}")
    else:
        lines.append(f"verify = {'true' if target.tls.verify else 'false'}")
    for a in target.accounts:
        lines += ["[[accounts]]", f"username = {toml_string(a.username)}", f"password = {toml_string(a.password)}"]
    return "\n".join(lines) + "\n"


@dataclass
class Served:
    """What ``serve`` keeps up: the server as started, the target as clients should see it, the path between."""

    spec: str
    server: Target
    target: Target
    provider: Any = None  # None for a target file: nothing was started
    path: Any = None
    direct_only: dict[str, str] = field(default_factory=dict)  # endpoints the scenario does not carry -> their URL
    proxy_url: str | None = None  # an explicit HTTP proxy clients must use (https-only, inspecting, real-squid)
    path_ca: str | None = None  # the CA of a path that terminates TLS itself (an https reverse proxy, inspecting)

    def alive(self) -> str | None:
        """Why the server is gone, or None while its process runs."""
        proc = getattr(self.provider, "proc", None)
        if proc is not None and proc.poll() is not None:
            return f"the server process {proc.pid} exited with {proc.returncode}"
        return None

    def stop(self) -> None:
        if self.path is not None:
            self.path.stop()
            self.path = None
        if self.provider is not None:
            self.provider.stop()
            self.provider = None


def start(spec: str, scenario: str | None, depth: str, logs: Path | None, stream: TextIO) -> Served:
    """Start the target (and the scenario's path in front of it); the caller stops it with ``Served.stop``."""
    from .intermediaries.path import NetworkPath
    from .intermediaries.scenario import parse_scenario
    from .providers import NAMED, provider_for

    parsed = parse_scenario(scenario, depth) if scenario else None  # bad input before anything starts
    provider = provider_for(spec, depth, logs)
    server = provider.start()
    served = Served(spec, server, server, provider if spec in NAMED else None)
    try:
        if parsed is not None and not parsed.is_direct:
            log = ServeLog(stream, server.secrets())
            path = NetworkPath.for_scenario(parsed, server, log)
            served.path = path
            path.keep_logs = logs
            path.start()
            endpoints = {}
            for name, ep in server.endpoints.items():
                try:
                    endpoints[name] = path.endpoint(name)
                except Exception:  # noqa: BLE001 - NotApplicable: the scenario does not carry this endpoint
                    served.direct_only[name] = ep.url
            served.proxy_url = path.proxy_url
            served.path_ca = path.ca_file
            # the target's own TLS settings stay: a path that terminates TLS (jmap behind a reverse proxy) does so
            # with its own CA, but TCP endpoints pass through with the server's certificate (see describe())
            served.target = replace(server, name=f"{server.name} via {parsed}", endpoints=endpoints)
    except BaseException:
        served.stop()
        raise
    return served


def describe(served: Served, written: Path | None) -> str:
    """The comment block printed above the target file: what runs, where, and how to stop it."""
    t = served.target
    out = [f"# lemonade serve: {served.server.name} ({served.server.version or served.server.provider})"]
    if served.path is not None:
        out.append(f"# scenario: {served.path.scenario} in front of it")
    out.append("# endpoints:")
    for name, ep in t.endpoints.items():
        out.append(f"#   {name:<11} {ep.url}")
    for name, url in served.direct_only.items():
        out.append(f"#   {name:<11} {url}  (not carried by the scenario: the server itself)")
    if served.proxy_url:
        out.append(f"#   proxy       {served.proxy_url}  (explicit HTTP proxy: clients reach the endpoints through it)")
    if served.path_ca:
        out.append(f"# the scenario terminates TLS for HTTP with its own CA: {served.path_ca} (TCP endpoints keep the "
                   "server's certificate; the target file keeps the server's TLS settings)")
    for a in t.accounts:
        out.append(f"# account: {a.username}")
    if written is not None:
        out.append(f"# target file written to {written}")
    return "\n".join(out)


def cmd_serve(args) -> int:
    """Start, print the target file, wait for SIGINT/SIGTERM, stop what was started."""
    from .cli import die

    stop = threading.Event()

    def on_signal(signum, frame) -> None:  # noqa: ARG001
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    served: Served | None = None
    try:
        try:
            served = start(args.target, args.scenario, args.depth, Path(args.logs) if args.logs else None, sys.stderr)
        except (BadInput, HarnessError, OSError) as e:
            return die(f"cannot serve {args.target}: {e}")
        text = target_toml(served.target)
        written = None
        if args.write:
            written = Path(args.write)
            written.write_text(text)
            written.chmod(0o600)
        print(describe(served, written), flush=True)
        print(text, end="", flush=True)
        print(f"{READY}: point clients at the endpoints above; SIGINT (Ctrl-C) or SIGTERM stops everything", flush=True)
        while not stop.wait(1.0):
            gone = served.alive()
            if gone:
                return die(f"{gone}; stopping")
        print("# stopping", flush=True)
        return 0
    finally:
        t0 = time.monotonic()
        if served is not None:
            served.stop()
            print(f"# stopped in {time.monotonic() - t0:.1f} s", file=sys.stderr, flush=True)
        for s, handler in old.items():
            signal.signal(s, handler)
