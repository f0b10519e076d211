"""kill: cuts connections on demand. Checks call ``kill_now`` or arm ``kill_after`` (N octets from one side).

Alone, the trigger is a marker in the client's bytes: ``--set kill_marker=KILLME`` cuts any connection whose
client sends that string (the marker itself is not forwarded).
"""

from __future__ import annotations

import asyncio

from mitmproxy import tcp

# Trigger lives in common: a dataclass cannot be defined in a script mitmdump loads with -s
from conformance.intermediaries.addons.common import RawTcp, Trigger, cut, options, shared


class Kill:
    def __init__(self) -> None:
        self.triggers: list[Trigger] = []
        self.passed: dict[str, int] = {}
        self.flows: dict[str, tcp.TCPFlow] = {}
        self.marker = b""

    def load(self, loader) -> None:
        loader.add_option("kill_marker", str, "", "Cut a connection whose client sends this string (standalone use).")

    def kill_now(self, how: str = "rst", port: int | None = None) -> int:
        """Cut every live connection (to ``port`` when given). Returns how many were cut."""
        s = shared()
        n = 0
        for flow in list(self.flows.values()):
            if not s.live(flow):
                continue
            if port is not None and flow.server_conn.address and flow.server_conn.address[1] != port:
                continue
            s.record("kill", f"connection cut on demand with {how.upper()}", s.label(flow))
            if cut(flow, how, "kill on demand"):
                n += 1
        return n

    def kill_after(self, trigger: Trigger) -> None:
        self.triggers.append(trigger)

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        self.flows[flow.client_conn.id] = flow

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        self.flows.pop(flow.client_conn.id, None)

    tcp_error = tcp_end

    def configure(self, updated) -> None:
        if "kill_marker" in updated:
            self.marker = options().kill_marker.encode()

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        marker = self.marker
        if not marker and not self.triggers:  # nothing armed: the common case costs one test per message
            return
        m = flow.messages[-1]
        s = shared()
        if marker and m.from_client and marker in m.content:
            m.content = m.content.split(marker, 1)[0]
            s.record("kill", "marker seen in client data, connection cut", s.label(flow))
            asyncio.get_running_loop().call_later(0.05, cut, flow, "rst", "kill marker")
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
                asyncio.get_running_loop().call_later(0.05, cut, flow, trig.how, "kill after octets")
                return


addons = [RawTcp(), Kill()]
