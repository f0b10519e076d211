"""lifetime: connections are cut at age T whatever their traffic (a proxy or carrier session limit).

Alone: ``mitmdump --mode reverse:tcp://127.0.0.1:143@10143 -s lifetime.py --set lifetime_max=60``.
"""

from __future__ import annotations

import asyncio

from mitmproxy import tcp

from conformance.intermediaries.addons.common import (
    RawTcp,
    cut,
    keep_proxy_timeout_above,
    options,
    seconds,
    shared,
)


class Lifetime:
    def load(self, loader) -> None:
        loader.add_option("lifetime_max", str, "300", "Maximum age of a connection in seconds.")
        loader.add_option("lifetime_mode", str, "fin", "How the cut looks: rst or fin.")

    def configure(self, updated) -> None:
        if "lifetime_max" in updated:
            keep_proxy_timeout_above(seconds("lifetime_max"))

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        asyncio.get_running_loop().create_task(self._cut_later(flow))

    async def _cut_later(self, flow: tcp.TCPFlow) -> None:
        await asyncio.sleep(seconds("lifetime_max"))
        s = shared()
        if s.live(flow):
            s.record("lifetime", f"connection reached its maximum age of {seconds('lifetime_max'):g} s, "
                                 f"cut with {options().lifetime_mode.upper()}", s.label(flow))
            cut(flow, options().lifetime_mode, "lifetime")


addons = [RawTcp(), Lifetime()]
