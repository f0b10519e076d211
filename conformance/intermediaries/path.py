"""NetworkPath: the started intermediaries of one case between the suite's clients and the target.

Checks never connect to the target directly; they ask the path: ``path.open("imap")`` returns a connected
socket (through the intermediaries, or direct), ``path.address("jmap")`` where to point an HTTP client,
``path.kill()`` cuts live connections on demand, ``path.kill_after(n)`` arms a cut after n client octets.
"""

from __future__ import annotations

import socket
from typing import Any

from ..errors import HarnessError, NotApplicable, TargetUnreachable
from ..targets import Endpoint, Target
from ..transcript import Transcript
from .addons.common import Blackhole, RawTcp, shared
from .addons.kill import Kill, Trigger
from .addons.record import ServerLegIn, ServerLegOut
from .host import ProxyHost, free_port
from .scenario import Scenario


class NetworkPath:
    def __init__(self, scenario: Scenario, target: Target, transcript: Transcript) -> None:
        self.scenario = scenario
        self.target = target
        self.transcript = transcript
        self.host: ProxyHost | None = None
        self.reverse: dict[str, tuple[str, int]] = {}  # endpoint name -> proxy listen address
        self.forward_proxy: tuple[str, int] | None = None
        self.addons: list[Any] = []
        self.options: dict[str, Any] = {}

    @property
    def leg(self) -> str:
        return "direct" if self.scenario.is_direct else "client-proxy"

    def start(self) -> "NetworkPath":
        if self.scenario.is_direct:
            return self
        behaviour: list[Any] = []
        for element in self.scenario.elements:
            addons, opts = element.spec.build(dict(element.params))
            behaviour += addons
            self.options.update(opts)
        if not any(isinstance(a, Kill) for a in behaviour):
            behaviour.append(Kill())  # on-demand cuts are always available to checks
        self.addons = [ServerLegIn(self.transcript), RawTcp(), *behaviour, Blackhole(), ServerLegOut(self.transcript)]
        modes = []
        names = []
        if "tcp" in self.scenario.paths or not self.scenario.paths - {"tcp"}:
            for name, ep in self.target.endpoints.items():
                if self.scenario.supports(name):
                    modes.append(f"reverse:tcp://{ep.host}:{ep.port}@127.0.0.1:{free_port()}")
                    names.append(name)
        for attempt in range(3):  # a chosen port can be taken before mitmproxy binds it: choose again
            self.host = ProxyHost(self.transcript)
            try:
                listen = self.host.start(modes, self.addons, self.options)
                break
            except HarnessError as e:
                if attempt == 2 or "address" not in str(e).lower():
                    raise
                modes = [m.rsplit(":", 1)[0] + f":{free_port()}" for m in modes]
        self.host.call(self._attach_recorder)
        for name, mode in zip(names, modes):
            addr = next((v for k, v in listen.items() if k == mode or k.startswith(mode.split("@")[0] + "@")), None)
            if addr is None:
                raise HarnessError(f"intermediary has no listener for {name}")
            self.reverse[name] = addr
        self.transcript.note(f"scenario {self.scenario}: intermediary listening for "
                             + ", ".join(f"{k} on {v[0]}:{v[1]}" for k, v in self.reverse.items()))
        return self

    def _attach_recorder(self) -> None:
        s = shared()
        s.record = lambda who, text, conn="": self.transcript.action(who, text, conn)

    def endpoint(self, name: str) -> Endpoint:
        """The endpoint a client should use: the target's own, or the intermediary's listener in front of it."""
        ep = self.target.endpoint(name)
        if ep is None:
            raise NotApplicable(f"target {self.target.name} has no {name} endpoint")
        if self.scenario.is_direct:
            return ep
        if name not in self.reverse:
            raise NotApplicable(f"scenario {self.scenario} does not carry {name}")
        host, port = self.reverse[name]
        return ep.with_address(host, port)

    def address(self, name: str) -> tuple[str, int]:
        ep = self.endpoint(name)
        return ep.host, ep.port

    def open(self, name: str, timeout: float = 10.0) -> socket.socket:
        host, port = self.address(name)
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OSError as e:
            who = "target" if self.scenario.is_direct else "the suite's own intermediary"
            raise TargetUnreachable(f"cannot connect to {who} for {name} at {host}:{port}: {e}") from e
        return sock

    # -- faults on demand -------------------------------------------------------------------------
    def _kill_addon(self) -> Kill:
        kill = next((a for a in self.addons if isinstance(a, Kill)), None)
        if kill is None or self.host is None:
            raise HarnessError(f"scenario {self.scenario} cannot cut connections (use a non-direct scenario)")
        return kill

    def kill(self, how: str = "rst", endpoint: str | None = None) -> int:
        """Cut every live connection through this path now (only those to ``endpoint`` when given)."""
        kill = self._kill_addon()
        port = self.target.endpoint(endpoint).port if endpoint else None
        return self.host.call(lambda: kill.kill_now(how, port))

    def kill_after(self, octets: int, side: str = "client", how: str = "rst", endpoint: str | None = None) -> None:
        """Arm a one-shot cut: after ``octets`` from ``side`` on the next matching connection, cut it."""
        kill = self._kill_addon()
        port = self.target.endpoint(endpoint).port if endpoint else None
        self.host.call(lambda: kill.kill_after(Trigger(octets, side, how, port)))

    def stop(self) -> None:
        if self.host:
            self.host.stop()
            self.host = None
