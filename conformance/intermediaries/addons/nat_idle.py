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
    blackhole,
    cut,
    keep_proxy_timeout_above,
    options,
    seconds,
    shared,
)


class NatIdle:
    def load(self, loader) -> None:
        loader.add_option("nat_idle_timeout", str, "30", "Seconds without traffic after which the mapping is dropped.")
        loader.add_option("nat_idle_mode", str, "rst", "What the drop looks like: rst, fin or silent.")

    def configure(self, updated) -> None:
        if "nat_idle_timeout" in updated:
            keep_proxy_timeout_above(seconds("nat_idle_timeout"))

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        asyncio.get_running_loop().create_task(self._watch(flow))

    async def _watch(self, flow: tcp.TCPFlow) -> None:
        s = shared()
        cid = flow.client_conn.id
        timeout, mode = seconds("nat_idle_timeout"), options().nat_idle_mode
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


addons = [RawTcp(), NatIdle(), Blackhole()]
