"""What the pytest plugin needs to judge clients: the selected adapters, the partner's settings, the fixture.

Kept apart from ``conformance/plugin.py`` so the plugin only gains a few hooks: ``--lemonade-client`` fills a
``ClientSelection``; checks that take the ``client_under_test`` fixture are parametrised over the selected
clients (and only run when some are selected); every result names its ``subject`` and ``role``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from ..errors import NotApplicable
from .adapters import Adapter, find_adapter

# The partner server runs as a stock server would: Dovecot's own IDLE keepalive (2 min) instead of the 1 s
# the server checks use at quick depth, so the intermediaries' idle timers act on the client's connection.
PARTNER_SETTINGS: dict[str, dict[str, Any]] = {"dovecot": {"imap_idle_notify_interval": "2 mins"}}


@dataclass
class ClientSelection:
    adapters: dict[str, Adapter] = field(default_factory=dict)

    @classmethod
    def from_specs(cls, specs: list[str]) -> "ClientSelection":
        out: dict[str, Adapter] = {}
        for spec in specs:
            a = find_adapter(spec)
            out[a.name] = a
        return cls(out)

    def __bool__(self) -> bool:
        return bool(self.adapters)

    def names(self) -> list[str]:
        return list(self.adapters)

    def partner_settings(self, spec: str) -> dict[str, Any]:
        if not self.adapters or spec not in PARTNER_SETTINGS:
            return {}
        return {"settings": dict(PARTNER_SETTINGS[spec])}


@pytest.fixture
def client_under_test(request: pytest.FixtureRequest, case, lemonade_case_param) -> Adapter:
    """The adapter of the client this case judges; not-applicable when its program is not installed."""
    from ..plugin.state import state_of

    state = state_of(request.config)
    adapter = state.clients.adapters[lemonade_case_param[2]]
    if not adapter.installed():
        raise NotApplicable(f"client {adapter.name} is not installed ({adapter.program} not found; package "
                            f"{adapter.package}: run scripts/setup.sh)")
    version = adapter.version()
    case.measure("client_version", version or "unknown")
    case.note(f"client under test: {adapter.name} {version} ({adapter.summary})")
    return adapter


def long_waits_first(items: list) -> None:
    """Start the cases that wait longest first (stable otherwise): xdist hands cases out in this order, so a run's
    wall time approaches its longest case instead of ending on a tail of them."""
    items.sort(key=lambda it: 0 if it.get_closest_marker("long_wait") is not None else 1)
