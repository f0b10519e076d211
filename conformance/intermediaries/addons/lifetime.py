"""lifetime: connections are cut at age T whatever their traffic (a proxy or carrier session limit).

Alone: ``mitmdump --mode reverse:tcp://127.0.0.1:143@10143 -s lifetime.py --set lifetime_max=60``.
"""

from __future__ import annotations

import asyncio

from mitmproxy import tcp

from conformance.intermediaries.addons.common import RawTcp, add_options, check_options, cut, shared, spawn, value
from conformance.intermediaries.scenario import Emulator, Param

MAX = Param("max", float, 5.0, 300.0, "maximum connection age", unit="s", option="lifetime_max")
MODE = Param("mode", str, "fin", "fin", "how the cut looks", choices=("rst", "fin"), option="lifetime_mode")


class Lifetime:
    OPTIONS = (MAX, MODE)

    def load(self, loader) -> None:
        add_options(loader, self.OPTIONS)

    def configure(self, updated) -> None:
        check_options(self.OPTIONS, updated)

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        spawn(self._cut_later(flow), "lifetime timer")

    async def _cut_later(self, flow: tcp.TCPFlow) -> None:
        await asyncio.sleep(value(MAX))
        s = shared()
        if s.live(flow):
            s.record("lifetime", f"connection reached its maximum age of {value(MAX):g} s, "
                                 f"cut with {value(MODE).upper()}", s.label(flow))
            cut(flow, value(MODE), "lifetime")


SCENARIO = Emulator(
    name="lifetime", path="tcp", addon=Lifetime,
    summary="Carrier/proxy session limit: every connection is cut at age `max` whatever its traffic.")
addons = [RawTcp(), Lifetime()]
