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

from conformance.intermediaries.addons.common import RawTcp, cut, options, seconds, shared


class Flaky:
    def __init__(self) -> None:
        self.rng: random.Random | None = None
        self.seed: int | None = None

    def load(self, loader) -> None:
        loader.add_option("flaky_reset_every", str, "5", "Mean lifetime of a connection before a reset, in seconds.")
        loader.add_option("flaky_seed", int, 1, "Seed of the random lifetimes (same seed, same schedule).")

    def _lifetime(self) -> float:
        seed = options().flaky_seed
        if self.rng is None or self.seed != seed:
            self.rng, self.seed = random.Random(seed), seed
        return seconds("flaky_reset_every") * self.rng.uniform(0.5, 1.5)

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        lifetime = self._lifetime()
        asyncio.get_running_loop().create_task(self._reset_later(flow, lifetime))

    async def _reset_later(self, flow: tcp.TCPFlow, lifetime: float) -> None:
        await asyncio.sleep(lifetime)
        s = shared()
        if not s.live(flow):
            return
        s.record("flaky", f"link reset after {lifetime:.3f} s (seeded lifetime), RST to both sides", s.label(flow))
        cut(flow, "rst", "flaky link reset")


addons = [RawTcp(), Flaky()]
