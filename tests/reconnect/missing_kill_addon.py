"""Test-only intermediary: ``kill-that-misses``, a kill intermediary whose armed cuts never happen.

It offers the Kill addon's interface (so ``path.kill_after`` arms it without complaint) but lets every octet
through: a check that trusts its own request to cut, instead of the path's record of a cut, would judge an upload
that was never cut. Importing this module registers the intermediary; it is never part of the product.
"""

from __future__ import annotations

from conformance.intermediaries.addons.common import Trigger
from conformance.intermediaries.addons.kill import Kill
from conformance.intermediaries.scenario import REGISTRY, Emulator, register


class KillThatMisses(Kill):
    def kill_after(self, trigger: Trigger) -> None:
        """Accepts the trigger and forgets it: nothing is ever cut."""


if "kill-that-misses" not in REGISTRY:
    register(Emulator(
        name="kill-that-misses", path="tcp", addon=KillThatMisses, summary="TEST ONLY: arms cuts and never makes them.",
        emulates=lambda p: (("kill", {}),),  # it claims to be a kill intermediary: checks pinned to kill run under it
    ))
