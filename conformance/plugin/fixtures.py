"""The fixtures a check asks for: ``case`` (what it mostly uses), ``target``, ``scenario`` and ``path``."""

from __future__ import annotations

import pytest

from ..intermediaries.scenario import Scenario
from .selection import DEFAULT_USES, check_id, marker_args, requirements_of, rerun_command
from .state import state_of
from .watchdog import paused

CASE = pytest.StashKey["CaseContext"]()


@pytest.fixture
def lemonade_case_param(request: pytest.FixtureRequest):
    """(--target value, Scenario) of this case; set by the plugin's parametrisation, not used by checks."""
    return request.param


@pytest.fixture
def target(request: pytest.FixtureRequest, lemonade_case_param):
    """The started target (a ``Target``: endpoints, accounts, TLS policy). Started once per pytest process on
    first use; a target that cannot start makes every case that needs it an error."""
    state = state_of(request.config)
    spec = lemonade_case_param[0]
    with paused(request.config):  # started once per process: not counted against this case's time limit
        started = state.target(spec)
    # a target that stopped answering earlier in this process: the case ends now, as an error, not a deadline
    state.health.check(spec, state.target_names[spec], marker_args(request.node, "uses") or list(DEFAULT_USES))
    return started


@pytest.fixture
def scenario(lemonade_case_param) -> Scenario:
    """The parsed scenario of this case (``direct`` or intermediaries with their parameters)."""
    return lemonade_case_param[1]


@pytest.fixture
def case(request: pytest.FixtureRequest, target, scenario):
    """The ``CaseContext`` of this case: the scenario's network path started, clients through it
    (``case.imap()``, ``case.submission()``), evidence (``case.measure``, ``case.attach``, ``case.note``),
    profile parameters (``case.param``), and one verdict per requirement (``case.require``,
    ``case.requirement_not_applicable``, ``case.requirement_error``). Closed, path stopped, at teardown.

    A check marked ``depth("full")`` is skipped at quick depth with the command that runs it.
    """
    state = state_of(request.config)
    item = request.node
    reqs = requirements_of(item)
    depth_only = marker_args(item, "depth")
    if depth_only and state.depth not in depth_only:
        pytest.skip(f"needs --depth {depth_only[0]} (long observation); run: {rerun_command(state, item, depth_only[0])}")
    with paused(request.config):  # imported here, once per process: mitmproxy, which xdist's controller never needs
        from ..case import CaseContext

    ctx = CaseContext(target=target, scenario=scenario, catalog=state.catalog, requirements=reqs,
                      profiles=[p for p in state.profiles if set(reqs) & set(state.catalog.profiles[p].ids)],
                      depth=state.depth, check=check_id(item.function), deadline=state.plan.deadline_s)
    item.stash[CASE] = ctx
    ctx.path.keep_logs = state.output / "logs"  # real intermediaries keep their logs with the run
    ctx.start()
    yield ctx
    ctx.close()


@pytest.fixture
def path(case):
    """The case's ``NetworkPath`` (same as ``case.path``): ``kill()``, ``blackhole()``, ``kill_after()``, ``open()``,
    ``address()``, ``proxy_url``, ``ca_file``."""
    return case.path


@pytest.fixture
def load_plan(request: pytest.FixtureRequest, load_shard: str, load_protocol: str):
    """The ``LoadPlan`` of a ``lemonade load`` run (sessions, rate, duration, storm...), with this case's shard."""
    import json

    from ..load.engine import LoadPlan

    raw = request.config.getoption("--lemonade-load", None)
    if raw is None:
        pytest.skip("a load check runs only under `lemonade load`")
    fields = {k: v for k, v in json.loads(raw).items() if k not in ("shards", "protocols")}
    return LoadPlan(**{**fields, "shard": load_shard, "protocol": load_protocol})


@pytest.fixture
def load_shard(request: pytest.FixtureRequest) -> str:
    """"i/n": this case's share of a load run's sessions (one case per xdist worker, ``lemonade load --workers``)."""
    return getattr(request, "param", "1/1")


@pytest.fixture
def load_protocol(request: pytest.FixtureRequest) -> str:
    """The push sessions of this load case: ``imap`` (IDLE) or ``eventsource`` (JMAP)."""
    return getattr(request, "param", "imap")
