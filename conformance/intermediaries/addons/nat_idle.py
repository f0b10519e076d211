"""nat-idle: a NAT or stateful firewall that drops a connection after T seconds without a byte either way.

mode=rst resets both sides, mode=fin closes both sides in order, mode=silent forgets the mapping and
black-holes the connection: nothing is forwarded any more and neither side is told.
Alone: ``mitmdump --mode reverse:tcp://127.0.0.1:143@10143 -s nat_idle.py --set nat_idle_timeout=30``.
"""

from __future__ import annotations

import asyncio
import time

from mitmproxy import tcp

from conformance.intermediaries.addons.common import (
    Blackhole,
    RawTcp,
    add_options,
    blackhole,
    check_options,
    cut,
    shared,
    spawn,
    value,
)
from conformance.intermediaries.scenario import Emulator, Param

TIMEOUT = Param("timeout", float, 3.0, 30.0, "idle seconds before the mapping is dropped", unit="s",
                option="nat_idle_timeout")
MODE = Param("mode", str, "rst", "rst", "rst: reset both sides; fin: orderly close; silent: black hole, nobody told",
             choices=("rst", "fin", "silent"), option="nat_idle_mode")


class NatIdle:
    OPTIONS = (TIMEOUT, MODE)

    def load(self, loader) -> None:
        add_options(loader, self.OPTIONS)

    def configure(self, updated) -> None:
        check_options(self.OPTIONS, updated)

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        spawn(self._watch(flow), "nat-idle watch")

    async def _watch(self, flow: tcp.TCPFlow) -> None:
        s = shared()
        cid = flow.client_conn.id
        timeout, mode = value(TIMEOUT), value(MODE)
        while s.live(flow) and cid not in s.blackholed:
            left = s.last.get(cid, 0) + timeout - time.monotonic()
            if left <= 0:
                idle = time.monotonic() - s.last.get(cid, 0)
                label = s.label(flow)
                if mode == "silent":
                    blackhole(flow)
                    s.record("nat-idle", f"{idle:.3f} s without traffic, mapping dropped silently "
                                         "(nothing forwarded from now on, no FIN or RST to either side)", label)
                else:
                    s.record("nat-idle", f"{idle:.3f} s without traffic, connection closed with "
                                         f"{'RST' if mode == 'rst' else 'FIN'} to both sides", label)
                    cut(flow, mode, "nat-idle timeout")
                return
            await asyncio.sleep(left)


SCENARIO = Emulator(
    name="nat-idle", path="tcp", addon=NatIdle,
    summary="NAT/stateful firewall that drops a connection after `timeout` seconds without a byte either way.")
addons = [RawTcp(), NatIdle(), Blackhole()]
