"""NetworkPath: the started intermediaries of one case between the suite's clients and the target.

Checks never connect to the target directly; they ask the path: ``path.open("imap")`` returns a connected
socket (through the intermediaries, or direct), ``path.address("jmap")`` where to point an HTTP client.
Faults on demand: ``path.kill()`` cuts live connections, ``path.kill_after(n)`` arms a cut after n client
octets, ``path.blackhole()`` silently stops forwarding on live connections. ``path.harness_errors`` lists the
faults of the intermediary itself (exceptions in its own code): a case whose path has any is ``error``.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from ..errors import Blocked, HarnessError, NotApplicable, TargetUnreachable
from ..protocols.connection import CapturedConnection
from ..protocols.http import open_tunnel
from ..providers.base import free_port
from ..targets import Endpoint, Target
from ..transcript import Transcript
from .addons.clear import HideCompress
from .addons.common import Blackhole, RawTcp, StreamResponses, Trigger
from .addons.kill import Kill
from .addons.record import HttpLegIn, HttpLegOut, ServerLegIn, ServerLegOut
from .host import ProxyHost
from .scenario import Element, Emulator, Scenario

__all__ = ["Blocked", "NetworkPath"]  # Blocked lives in errors.py; named here for the checks that import it


class NetworkPath:
    def __init__(self, scenario: Scenario, target: Target, transcript: Transcript) -> None:
        self.scenario = scenario
        self.target = target
        self.transcript = transcript
        self.host: ProxyHost | None = None
        self.reverse: dict[str, tuple[str, int]] = {}  # endpoint name -> proxy listen address
        self.forward_proxy: tuple[str, int] | None = None  # explicit HTTP proxy (https-only, inspecting)
        self.addons: list[Any] = []
        self.options: dict[str, Any] = {}
        self.intercepts_tls = False  # the path terminates TLS with its own CA (inspecting, reverse https)
        self.terminate_tls: set[str] = set()  # implicit-TLS endpoints whose TLS the relay terminates (set before start)
        self.harness_errors: list[str] = []  # faults of the intermediary itself, one line each
        self.keep_logs: Path | None = None  # the run's logs/ directory (real programs copy their logs there)
        self.facts: dict[str, dict[str, Any]] = {}  # measurements the path contributes (a real program's version)

    @classmethod
    def for_scenario(cls, scenario: Scenario, target: Target, transcript: Transcript) -> "NetworkPath":
        """The path of a case: mitmproxy addons, or the real program a real element runs (its own class)."""
        real = scenario.real
        if real is not None:
            return real.spec.real(scenario, target, transcript)
        return cls(scenario, target, transcript)

    @property
    def leg(self) -> str:
        return "direct" if self.scenario.is_direct else "client-proxy"

    @property
    def proxy_url(self) -> str | None:
        """The explicit HTTP proxy HTTP clients must use (httpx ``proxy=``), or None when there is none."""
        if self.forward_proxy is None:
            return None
        return f"http://{self.forward_proxy[0]}:{self.forward_proxy[1]}"

    @property
    def ca_file(self) -> str | None:
        """The CA file clients must trust when the path terminates TLS itself (httpx ``verify=``), else None
        (then the target's own TLS policy applies). The key stays in the case's private temporary directory."""
        if self.host is None or not self.intercepts_tls:
            return None
        return str(self.host.ca_file)

    def note_preset(self) -> None:
        """A preset's scaling and sources become the ``preset`` measurement and a transcript note."""
        if self.scenario.preset:
            from .presets import describe_for_case

            self.facts["preset"] = describe_for_case(self.scenario)
            self.transcript.note(self.facts["preset"]["note"])

    def start(self) -> "NetworkPath":
        self.note_preset()
        if self.scenario.is_direct:
            return self
        others = [e for e in self.scenario.elements if not isinstance(e.spec, Emulator)]
        if others:  # a real element runs in its own NetworkPath subclass (for_scenario)
            raise HarnessError(f"scenario {self.scenario}: this NetworkPath runs emulators only, not "
                               + ", ".join(f"{e.name} ({e.spec.kind})" for e in others))
        behaviour: list[Any] = []
        for element in self.scenario.elements:
            addons, opts = self._build(element)
            behaviour += addons
            self.options.update(opts)
        self.options.update(self.upstream_tls_options())
        if not any(isinstance(a, Kill) for a in behaviour):
            behaviour.append(Kill())  # on-demand cuts are always available to checks
        if self.terminate_tls:
            behaviour.append(HideCompress())  # a relay read in clear keeps the IMAP stream uncompressed
        paths = self.scenario.paths
        forward = "http-forward" in paths
        reverse_http = "http-reverse" in paths
        self.addons = [ServerLegIn(self.transcript), HttpLegIn(self.transcript), RawTcp(), StreamResponses(),
                       *behaviour, Blackhole(),
                       HttpLegOut(self.transcript), ServerLegOut(self.transcript)]
        self.addons = _dedupe(self.addons)
        plan: list[tuple[str, str]] = []  # (endpoint name or "proxy", mode without listen port)
        if forward:
            plan.append(("proxy", "regular"))
            self.intercepts_tls = any(e.name == "inspecting" for e in self.scenario.elements)
        else:
            for name, ep in self.target.endpoints.items():
                if not self.scenario.supports(name):
                    continue
                if name == "jmap" and reverse_http:
                    scheme = "https" if ep.scheme == "https" else "http"
                    self.intercepts_tls = self.intercepts_tls or scheme == "https"
                    plan.append((name, f"reverse:{scheme}://{ep.host}:{ep.port}"))
                elif name in self.terminate_tls and ep.scheme in ("imaps", "submissions"):
                    # a relay a check reads in clear: TLS to the client with the path's CA, TLS again upstream
                    self.intercepts_tls = True
                    plan.append((name, f"reverse:tls://{ep.host}:{ep.port}"))
                elif "tcp" in paths or not reverse_http:
                    plan.append((name, f"reverse:tcp://{ep.host}:{ep.port}"))
        if not plan:
            raise NotApplicable(f"scenario {self.scenario} carries none of the endpoints of target {self.target.name}")
        for attempt in range(3):  # a chosen port can be taken before mitmproxy binds it: choose again
            modes = [f"{m}@127.0.0.1:{free_port()}" for _, m in plan]
            self.harness_errors.clear()  # what a failed attempt logged is not this path's fault
            self.host = ProxyHost(self.transcript, faults=self.harness_errors)
            try:
                listen = self.host.start(modes, self.addons, self.options)
                break
            except HarnessError as e:
                if attempt == 2 or "address" not in str(e).lower():
                    raise
        for (name, _), mode in zip(plan, modes):
            addr = listen.get(mode) or next((v for k, v in listen.items() if k.endswith(mode.rsplit("@", 1)[1])), None)
            if addr is None:
                raise HarnessError(f"intermediary has no listener for {name}")
            if name == "proxy":
                self.forward_proxy = addr
            else:
                self.reverse[name] = addr
        where = [f"{k} on {v[0]}:{v[1]}" for k, v in self.reverse.items()]
        if self.forward_proxy:
            where.append(f"HTTP proxy on {self.proxy_url}")
        self.transcript.note(f"scenario {self.scenario}: intermediary listening for " + ", ".join(where)
                             + f" (ready in {self.host.started_in:.3f} s)")
        return self

    def upstream_tls_options(self) -> dict[str, Any]:
        """mitmproxy options for the proxy-server leg: the target's TLS settings hold there too (a target that says
        ``verify = true`` or names a ``ca_file`` has its certificate verified by the intermediary that terminates
        TLS in front of it; ``verify = false`` keeps mitmproxy's upstream leg unverified, as before)."""
        tls = self.target.tls
        if not (tls.verify or tls.ca_file):
            return {}
        return {"ssl_insecure": False, **({"ssl_verify_upstream_trusted_ca": str(tls.ca_file)} if tls.ca_file else {})}

    def _build(self, element: Element) -> tuple[list[Any], dict[str, Any]]:
        """An emulated element's addon and option values (it may need the target's ports by endpoint)."""
        spec = element.spec
        assert isinstance(spec, Emulator)
        return spec.build(dict(element.params), {k: (ep.scheme, ep.port) for k, ep in self.target.endpoints.items()})

    def endpoint(self, name: str) -> Endpoint:
        """The endpoint a client should use: the target's own, or the intermediary's listener in front of it.

        Behind an explicit HTTP proxy (https-only, inspecting) ``endpoint("jmap")`` is the target's own URL,
        to be requested through ``proxy_url``; other endpoints are reachable only through ``open(name)``.
        """
        ep = self.target.endpoint(name)
        if ep is None:
            raise NotApplicable(f"target {self.target.name} has no {name} endpoint")
        if self.scenario.is_direct:
            return ep
        if self.forward_proxy is not None:
            if name == "jmap":
                return ep
            raise NotApplicable(f"scenario {self.scenario} reaches {name} only through its HTTP proxy: "
                                f"use path.open({name!r}) (CONNECT) instead of a direct connection")
        if name not in self.reverse:
            raise NotApplicable(f"scenario {self.scenario} does not carry {name}")
        host, port = self.reverse[name]
        return ep.with_address(host, port)

    def address(self, name: str) -> tuple[str, int]:
        ep = self.endpoint(name)
        return ep.host, ep.port

    def open(self, name: str, timeout: float = 10.0) -> socket.socket:
        """A connected socket to ``name`` through the path (a CONNECT tunnel behind an explicit proxy).

        Raises ``Blocked`` when the intermediary refuses (403), ``TargetUnreachable`` when the target is not
        there, ``HarnessError`` when the suite's own listener or proxy fails.
        """
        if self.forward_proxy is not None:
            return self._connect_tunnel(name, timeout)
        host, port = self.address(name)
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            if self.scenario.is_direct:
                raise TargetUnreachable(f"cannot connect to the target for {name} at {host}:{port}: {e}") from e
            raise HarnessError(f"cannot connect to the suite's own intermediary for {name} at {host}:{port}: "
                               f"{e}") from e
        return sock

    def _connect_tunnel(self, name: str, timeout: float) -> socket.socket:
        ep = self.target.endpoint(name)
        if ep is None:
            raise NotApplicable(f"target {self.target.name} has no {name} endpoint")
        assert self.forward_proxy is not None
        conn = CapturedConnection.connect(*self.forward_proxy, transcript=self.transcript, label=f"connect {name}",
                                          leg=self.leg, timeout=timeout, via="HTTP proxy")
        authority = f"[{ep.host}]:{ep.port}" if ":" in ep.host else f"{ep.host}:{ep.port}"
        try:
            status, status_line = open_tunnel(conn, authority, time.monotonic() + timeout,
                                              f"the suite's HTTP proxy {self.proxy_url}")
        except BaseException:
            conn.close()
            raise
        if status == 200:
            sock = conn.detach()
            sock.settimeout(timeout)
            return sock
        conn.close()
        reason = status_line.split(" ", 2)[2] if status_line.count(" ") >= 2 else ""
        if status == 403:
            raise Blocked(name, status, reason, f"HTTP proxy {self.proxy_url}")
        raise TargetUnreachable(f"CONNECT {authority} through {self.proxy_url} answered {status_line!r}")

    # -- faults on demand -------------------------------------------------------------------------
    def _kill_addon(self) -> Kill:
        kill = next((a for a in self.addons if isinstance(a, Kill)), None)
        if kill is None or self.host is None:
            raise HarnessError(f"scenario {self.scenario} cannot cut connections (use a non-direct scenario)")
        return kill

    def _port(self, endpoint: str | None) -> int | None:
        if endpoint is None:
            return None
        ep = self.target.endpoint(endpoint)
        if ep is None:
            raise HarnessError(f"target {self.target.name} has no {endpoint} endpoint to act on")
        return ep.port

    def kill(self, how: str = "rst", endpoint: str | None = None) -> int:
        """Cut every live connection through this path now (only those to ``endpoint`` when given) with an RST
        or a FIN to both sides. Returns how many were cut."""
        kill, port = self._kill_addon(), self._port(endpoint)
        return self.host.call(lambda: kill.kill_now(how, port))

    def blackhole(self, endpoint: str | None = None) -> int:
        """Black-hole every live connection through this path now (only those to ``endpoint`` when given):
        nothing is forwarded either way from now on and nobody is told, as a NAT that silently forgot its
        mappings. Returns how many connections were black-holed."""
        kill, port = self._kill_addon(), self._port(endpoint)
        return self.host.call(lambda: kill.blackhole_now(port))

    def kill_after(self, octets: int, side: str = "client", how: str = "rst", endpoint: str | None = None) -> None:
        """Arm a one-shot cut: after ``octets`` from ``side`` on the next matching connection, cut it."""
        kill, port = self._kill_addon(), self._port(endpoint)
        self.host.call(lambda: kill.kill_after(Trigger(octets, side, how, port)))

    def record_messages(self, on: bool) -> None:
        """Record every relayed message into the transcript (the default), or only what happens to connections:
        a load run's thousands of sessions need no per-message evidence, and recording is the path's own cost."""
        if self.host is not None:
            value = "all" if on else "connections"
            self.host.call(lambda: self.host.master.options.update(lemonade_record=value))

    def relay_cpu(self) -> float | None:
        """CPU seconds the intermediary's own thread has used so far (None when the path has none): what relaying
        costs the suite, measured by load runs and benchmarks."""
        if self.host is None:
            return None
        return self.host.call(time.thread_time)

    def stop(self) -> None:
        if self.host:
            self.host.stop()
            self.host = None


def _dedupe(addons: list[Any]) -> list[Any]:
    """One instance per addon class (mitmproxy refuses two addons with the same name); the first place wins."""
    out: list[Any] = []
    seen: set[type] = set()
    for a in addons:
        if type(a) in seen:
            continue
        seen.add(type(a))
        out.append(a)
    return out
