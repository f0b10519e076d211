"""Container tests need a container engine. Without one they are skipped with one line, unless
LEMONADE_REQUIRE_CONTAINERS=1 (set by scripts/run-tests after it started the engine): then they fail."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def engine():
    from conformance.providers.engine import engine_problem

    problem = engine_problem()
    if problem:
        if os.environ.get("LEMONADE_REQUIRE_CONTAINERS") == "1":
            pytest.fail(f"LEMONADE_REQUIRE_CONTAINERS=1 but {problem}")
        pytest.skip(problem)
    return True


@pytest.fixture(scope="session")
def dovecot_images(engine):
    """Build (or reuse by tag) the two Dovecot images once per session; returns their build times."""
    from conformance.providers.images import build_all

    return build_all(["dovecot-2.3", "dovecot-2.4"])
