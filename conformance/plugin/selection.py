"""Which cases a run holds: markers read, checks parametrised over targets x scenarios, kept by profile, sharded.

A case is one check under one target and one scenario. A check runs under its own ``scenarios`` marker
(``direct`` when it has none) or under the ``--scenario`` values that fit it, and only where the scenario
carries every endpoint the check ``uses``.
"""

from __future__ import annotations

import hashlib
import shlex
from typing import Any

import pytest

from ..intermediaries.scenario import Scenario, parse_scenario
from ..rundir import done_nodeids, write_planned
from .state import RunState, state_of

DEFAULT_USES = ("imap",)


def marker_args(obj, name: str) -> list[Any]:
    """The arguments of every ``name`` marker on a pytest item/definition (or a plain marked function)."""
    out: list[Any] = []
    for m in getattr(obj, "pytestmark", []) if not hasattr(obj, "iter_markers") else obj.iter_markers(name):
        if getattr(m, "name", None) == name:
            out.extend(m.args)
    return out


def requirements_of(item) -> list[str]:
    return [a for m in item.iter_markers("requirement") for a in m.args]


def check_id(function) -> str:
    """family/name: the check's stable id (its module's folder and its name without ``test_``)."""
    module = function.__module__.rsplit(".", 2)
    family = module[-2] if len(module) >= 2 else "checks"
    return f"{family}/{function.__name__.removeprefix('test_')}"


def case_param(item) -> tuple[str, Scenario | str]:
    """(--target value, scenario) of a parametrised case."""
    if hasattr(item, "callspec"):
        return tuple(item.callspec.params.get("lemonade_case_param", ("dovecot", "direct"))[:2])
    return ("dovecot", "direct")


def client_of(item) -> str | None:
    """The client a case judges (role client), or None for a server case."""
    param = item.callspec.params.get("lemonade_case_param", ()) if hasattr(item, "callspec") else ()
    return param[2] if len(param) > 2 else None


def rerun_command(state: RunState, item: pytest.Item, depth: str | None = None) -> str:
    if state.config.getoption("--lemonade-load", None) is not None:
        return state.rerun_prefix  # `lemonade load` passes its whole command: its target file is private
    spec, sc = case_param(item)
    client = client_of(item)
    parts = [state.rerun_prefix, *(["--client", client] if client else []), "--target", spec, "--scenario", str(sc),
             "--depth", depth or state.depth, "-k", item.originalname if hasattr(item, "originalname") else item.name]
    return " ".join(shlex.quote(p) if i else p for i, p in enumerate(parts))


def scenarios_for(state: RunState, definition) -> list[Scenario]:
    uses = marker_args(definition, "uses") or list(DEFAULT_USES)
    pinned = [parse_scenario(s, state.depth) for s in marker_args(definition, "scenarios")] or [parse_scenario("direct")]
    if not state.scenarios_given:
        chosen = pinned
    else:
        pinned_names = {e.name for s in pinned for e in s.elements}
        if any(s.is_direct for s in pinned):
            pinned_names.add("direct")
        has_pins = bool(marker_args(definition, "scenarios"))
        chosen = []
        for s in state.scenarios_given:
            names = s.names  # with the emulated equivalents of a real element
            if not has_pins or names & pinned_names:
                chosen.append(s)
    return [s for s in chosen if all(s.supports(u) for u in uses)]


def parametrize(metafunc: pytest.Metafunc, state: RunState) -> None:
    """Targets x scenarios; for client checks (they take ``client_under_test``) x the selected clients too. A run
    judges either clients (--client) or servers: the other role's checks get no case."""
    params, ids = [], []
    judges_client = "client_under_test" in metafunc.fixturenames
    subjects: list[str | None] = state.clients.names() if judges_client else [None]
    if judges_client != bool(state.clients):
        subjects = []
    for spec in state.target_specs:
        for sc in scenarios_for(state, metafunc.definition):
            for client in subjects:
                params.append((spec, sc) if client is None else (spec, sc, client))
                ids.append(f"{state.target_names[spec]}|{sc}" if client is None
                           else f"{client}@{state.target_names[spec]}|{sc}")
    metafunc.parametrize("lemonade_case_param", params, ids=ids, indirect=True)


def select(config: pytest.Config, state: RunState, items: list[pytest.Item]) -> None:
    """Keep the cases of checks covering the selected profiles; a check naming an unknown id is a usage error."""
    unknown = []
    selected_ids = state.catalog.ids_for(state.profiles)
    keep, drop = [], []
    load_run = state.config.getoption("--lemonade-load", None) is not None
    for item in items:
        if bool(item.get_closest_marker("load")) != load_run:  # load checks run by `lemonade load` only, and alone
            drop.append(item)
            continue
        reqs = requirements_of(item)
        if not reqs:
            unknown.append(f"{item.nodeid}: no @pytest.mark.requirement")
            continue
        missing = [r for r in reqs if r not in state.catalog.requirements]
        if missing:
            unknown.append(f"{item.nodeid}: unknown requirement id(s) {', '.join(missing)}")
            continue
        callspec = getattr(item, "callspec", None)
        if callspec is not None and not isinstance(callspec.params.get("lemonade_case_param"), tuple):
            drop.append(item)  # no selected scenario carries every endpoint the check uses: nothing to run
            continue
        (keep if set(reqs) & selected_ids else drop).append(item)
    if unknown:
        raise pytest.UsageError("checks name requirements that are not in profiles/:\n  " + "\n  ".join(unknown))
    if drop:
        config.hook.pytest_deselected(items=drop)
    from ..subjects.plugin import long_waits_first

    long_waits_first(keep)
    items[:] = keep


def planned_case(state: RunState, item: pytest.Item) -> dict[str, Any]:
    """One entry of planned.json: the case as its result will name it."""
    spec, sc = case_param(item)
    name = state.target_names.get(spec, spec)
    client = client_of(item)
    return {"nodeid": item.nodeid, "check": check_id(item.function), "target": name, "scenario": str(sc),
            "subject": client or name, "role": "client" if client else "server", "requirements": requirements_of(item)}


class FinalSelection:
    """After every other selection (profiles, -k, -m): --shard i/n (so the shards are balanced), then the plan
    written into the run directory (planned.json: what did not run is known however the run ends), then, for
    ``--resume``, the cases that already have a result left out."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        state = state_of(config)
        if state is None:
            return
        shard(config, items)
        write_planned(state.output, [planned_case(state, it) for it in items])
        if config.getoption("--lemonade-resume"):
            done = done_nodeids(state.output)
            drop = [it for it in items if it.nodeid in done]
            if drop:
                config.hook.pytest_deselected(items=drop)
            items[:] = [it for it in items if it.nodeid not in done]


def shard(config: pytest.Config, items: list[pytest.Item]) -> None:
    """--shard i/n: keep this deterministic share of ``items``."""
    spec = config.getoption("--lemonade-shard")
    if not spec:
        return
    try:
        i, n = (int(x) for x in spec.split("/"))
        assert 1 <= i <= n
    except (ValueError, AssertionError):
        raise pytest.UsageError(f"--shard {spec!r}: expected i/n with 1 <= i <= n") from None
    # order the selected cases by a hash of their id, then deal them out in turn: deterministic for the
    # same selection (every shard of a job matrix runs the same command but --shard), and balanced
    # (shard sizes differ by at most one; a plain hash modulo n can be lopsided on small selections)
    dealt = sorted(items, key=lambda it: hashlib.sha256(it.nodeid.encode()).hexdigest())
    mine = {id(it) for k, it in enumerate(dealt) if k % n == i - 1}
    drop = [it for it in items if id(it) not in mine]
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = [it for it in items if id(it) in mine]
