"""kill: cuts or black-holes connections on demand. The path calls ``kill_now``/``blackhole_now`` or arms
``kill_after`` (N octets from one side); checks reach them through ``NetworkPath.kill()``, ``kill_after()``
and ``blackhole()``.

Alone, the trigger is a marker in the client's bytes: ``--set kill_marker=KILLME`` cuts any connection whose
client sends that string (the marker itself is not forwarded).
"""

from __future__ import annotations

from mitmproxy import tcp

# Trigger lives in common: a dataclass cannot be defined in a script mitmdump loads with -s
from conformance.intermediaries.addons.common import (
    RawTcp,
    Trigger,
    add_options,
    blackhole,
    check_options,
    cut,
    later,
    shared,
    value,
)
from conformance.intermediaries.scenario import Emulator, Param

MARKER = Param("marker", str, "", "", "Cut a connection whose client sends this string (standalone use).",
               option="kill_marker", scenario=False)


class Kill:
    OPTIONS = (MARKER,)

    def __init__(self) -> None:
        self.triggers: list[Trigger] = []
        self.passed: dict[str, int] = {}
        self.flows: dict[str, tcp.TCPFlow] = {}
        self.marker = b""

    def load(self, loader) -> None:
        add_options(loader, self.OPTIONS)

    def configure(self, updated) -> None:
        check_options(self.OPTIONS, updated)
        if MARKER.option in updated:
            self.marker = value(MARKER).encode()

    def live(self, port: int | None = None) -> list[tcp.TCPFlow]:
        """The live connections (to upstream ``port`` when given)."""
        s = shared()
        return [f for f in self.flows.values() if s.live(f)
                and (port is None or not f.server_conn.address or f.server_conn.address[1] == port)]

    def kill_now(self, how: str = "rst", port: int | None = None) -> int:
        """Cut every live connection (to ``port`` when given). Returns how many were cut."""
        s = shared()
        n = 0
        for flow in self.live(port):
            s.record("kill", f"connection cut on demand with {how.upper()}", s.label(flow))
            if cut(flow, how, "kill on demand"):
                n += 1
        return n

    def blackhole_now(self, port: int | None = None) -> int:
        """Black-hole every live connection (to ``port`` when given): nothing is forwarded either way from now on
        and neither side is told. Returns how many were black-holed (not counting those already)."""
        s = shared()
        n = 0
        for flow in self.live(port):
            if flow.client_conn.id in s.blackholed:
                continue
            blackhole(flow)
            s.record("blackhole", "mapping dropped silently on demand (nothing forwarded from now on, "
                                  "no FIN or RST to either side)", s.label(flow))
            n += 1
        return n

    def kill_after(self, trigger: Trigger) -> None:
        self.triggers.append(trigger)

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        self.flows[flow.client_conn.id] = flow

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        self.flows.pop(flow.client_conn.id, None)

    tcp_error = tcp_end

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        marker = self.marker
        if not marker and not self.triggers:  # nothing armed: the common case costs one test per message
            return
        m = flow.messages[-1]
        s = shared()
        if marker and m.from_client and marker in m.content:
            m.content = m.content.split(marker, 1)[0]
            s.record("kill", "marker seen in client data, connection cut", s.label(flow))
            later(0.05, "kill marker cut", cut, flow, "rst", "kill marker")
            return
        side = "client" if m.from_client else "server"
        for trig in list(self.triggers):
            if trig.side != side:
                continue
            if trig.port is not None and flow.server_conn.address and flow.server_conn.address[1] != trig.port:
                continue
            key = f"{flow.client_conn.id}:{side}"
            before = self.passed.get(key, 0)
            self.passed[key] = before + len(m.content)
            if before + len(m.content) > trig.after:
                allowed = max(0, trig.after - before)
                m.content = m.content[:allowed]
                s.record("kill", f"{trig.after} octets from the {side} passed; the rest of this segment dropped "
                                 f"and the connection cut with {trig.how.upper()}", s.label(flow))
                if trig.once:
                    self.triggers.remove(trig)
                # let the allowed part reach the other side before the cut
                later(0.05, "kill-after cut", cut, flow, trig.how, "kill after octets")
                return


SCENARIO = Emulator(
    name="kill", path="tcp", addon=Kill,
    summary="Cuts connections on demand: checks drop every connection now, or after N octets from one side.")
addons = [RawTcp(), Kill()]
