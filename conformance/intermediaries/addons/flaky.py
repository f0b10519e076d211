"""flaky: a mobile link that keeps resetting: every connection is reset after a seeded random lifetime.

Each new connection draws its lifetime uniformly from [0.5, 1.5] x ``flaky_reset_every`` seconds from a
random generator seeded with ``flaky_seed``, so a run with the same seed and the same order of connections
sees the same schedule. At the end of its lifetime the connection is reset (RST to both sides).
Alone: ``mitmdump --mode reverse:tcp://127.0.0.1:143@10143 -s flaky.py --set flaky_reset_every=2``.
"""

from __future__ import annotations

import asyncio
import random

from mitmproxy import tcp

from conformance.intermediaries.addons.common import RawTcp, add_options, check_options, cut, shared, spawn, value
from conformance.intermediaries.scenario import Emulator, Param

RESET_EVERY = Param("reset_every", float, 1.0, 3.0, "mean connection lifetime before a reset (drawn from 0.5x to 1.5x)",
                    unit="s", option="flaky_reset_every")
SEED = Param("seed", int, 1, 1, "seed of the random lifetimes: the same seed gives the same schedule",
             option="flaky_seed")


class Flaky:
    OPTIONS = (RESET_EVERY, SEED)

    def __init__(self) -> None:
        self.rng: random.Random | None = None
        self.seed: int | None = None

    def load(self, loader) -> None:
        add_options(loader, self.OPTIONS)

    def configure(self, updated) -> None:
        check_options(self.OPTIONS, updated)

    def lifetime(self) -> float:
        """The next connection's lifetime in seconds, from the seeded generator."""
        seed = value(SEED)
        if self.rng is None or self.seed != seed:
            self.rng, self.seed = random.Random(seed), seed
        return value(RESET_EVERY) * self.rng.uniform(0.5, 1.5)

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        spawn(self._reset_later(flow, self.lifetime()), "flaky timer")

    async def _reset_later(self, flow: tcp.TCPFlow, lifetime: float) -> None:
        await asyncio.sleep(lifetime)
        s = shared()
        if not s.live(flow):
            return
        s.record("flaky", f"link reset after {lifetime:.3f} s (seeded lifetime), RST to both sides", s.label(flow))
        cut(flow, "rst", "flaky link reset")


SCENARIO = Emulator(
    name="flaky", path="tcp", addon=Flaky,
    summary="Unreliable mobile link: each connection is reset after a seeded random lifetime around `reset_every`.")
addons = [RawTcp(), Flaky()]
