"""The plan of a run, validated once: catalog, profiles, scenarios, targets, depth, deadlines.

``plan_run`` is the only place where what a user typed for ``lemonade run`` is checked: the CLI calls it
before anything starts (a problem is exit 2 with one clear line), and each pytest process of the run builds
its settings with it from the same options (a problem there is a pytest usage error).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import BadInput

if TYPE_CHECKING:
    from .catalog import Catalog
    from .intermediaries.scenario import Scenario

DEPTHS = ("quick", "full")
DEFAULT_TARGET = "dovecot"
DEFAULT_DEADLINE_S = 10.0  # what a client waits for one answer of the server (per command)
# a safety net, not a rule: the longest quick check takes seconds; full depth observes up to ~40 minutes
DEFAULT_CASE_TIMEOUT_S = {"quick": 300.0, "full": 7200.0}


@dataclass
class RunPlan:
    catalog: Catalog
    profiles: list[str]  # the selected profiles (all when none was given)
    scenarios: list[Scenario]  # the scenarios given with --scenario (empty: each check's own)
    targets: list[str]  # --target values, in order
    target_names: dict[str, str]  # --target value -> the name results use
    depth: str = "quick"
    deadline_s: float = DEFAULT_DEADLINE_S
    case_timeout_s: float = DEFAULT_CASE_TIMEOUT_S["quick"]
    profiles_given: list[str] = field(default_factory=list)
    scenarios_given: list[str] = field(default_factory=list)
    clients: list[str] = field(default_factory=list)  # --client values: the run judges these clients

    def drop_target(self, spec: str) -> None:
        self.targets.remove(spec)
        self.target_names.pop(spec, None)

    def as_run_meta(self) -> dict[str, Any]:
        """What results.json's run section records about the plan."""
        meta = {"profiles": self.profiles, "scenarios": [str(s) for s in self.scenarios] or ["(per check)"],
                "depth": self.depth, "deadline_s": self.deadline_s, "case_timeout_s": self.case_timeout_s}
        if self.clients:
            from .subjects.adapters import find_adapter

            meta["clients"] = [find_adapter(c).describe() for c in self.clients]
        return meta


def positive_seconds(value: Any, option: str) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"{option} {value!r}: expected a number of seconds") from None
    if not 0 < seconds < 1e7:
        raise BadInput(f"{option} {value!r}: expected a number of seconds greater than 0")
    return seconds


def plan_run(*, targets: list[str] | None = None, profiles: list[str] | None = None,
             scenarios: list[str] | None = None, depth: str = "quick", deadline: Any = None,
             case_timeout: Any = None, clients: list[str] | None = None) -> RunPlan:
    """Validate everything a run is given; any problem is a BadInput naming it."""
    from .catalog import load_catalog
    from .intermediaries.scenario import parse_scenario
    from .providers import provider_for, target_name

    if depth not in DEPTHS:
        raise BadInput(f"--depth {depth!r}: expected one of {', '.join(DEPTHS)}")
    catalog = load_catalog()
    if clients:
        from .subjects.adapters import find_adapter

        for c in clients:
            find_adapter(c)  # an unknown client or a broken adapter folder is named here
    # a run that judges clients (--client) selects the client profile unless told otherwise
    chosen = list(profiles or []) or (["client-intermediary"] if clients else sorted(catalog.profiles))
    for p in chosen:
        catalog.profile(p)
    parsed = [parse_scenario(s, depth) for s in scenarios or []]
    specs = list(targets or []) or [DEFAULT_TARGET]
    names: dict[str, str] = {}
    for spec in specs:
        provider_for(spec, depth)  # a wrong name or target file is named here, before anything starts
        names[spec] = target_name(spec)
    return RunPlan(catalog=catalog, profiles=chosen, scenarios=parsed, targets=specs, target_names=names,
                   depth=depth,
                   deadline_s=DEFAULT_DEADLINE_S if deadline is None else positive_seconds(deadline, "--deadline"),
                   case_timeout_s=(DEFAULT_CASE_TIMEOUT_S[depth] if case_timeout is None
                                   else positive_seconds(case_timeout, "--case-timeout")),
                   profiles_given=list(profiles or []), scenarios_given=list(scenarios or []),
                   clients=list(clients or []))
