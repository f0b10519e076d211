"""RunState: one pytest process's view of the run: the validated plan, its results file, the targets it started.

Each process (the only one, or each xdist worker) starts the embedded targets it needs once, on first use,
and stops them when the session ends. A target that cannot start is an error for every case that needs it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ..errors import BadInput, HarnessError
from ..providers import provider_for
from ..results import ResultsWriter
from ..runplan import RunPlan, plan_run
from ..targets import Account


class RunState:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        try:
            self.plan: RunPlan = plan_run(
                targets=config.getoption("--lemonade-target"), profiles=config.getoption("--lemonade-profile"),
                scenarios=config.getoption("--lemonade-scenario"), depth=config.getoption("--lemonade-depth"),
                deadline=config.getoption("--lemonade-deadline"),
                case_timeout=config.getoption("--lemonade-case-timeout"),
                clients=config.getoption("--lemonade-client"))
            from ..subjects.plugin import ClientSelection

            self.clients = ClientSelection.from_specs(self.plan.clients)
        except BadInput as e:
            raise pytest.UsageError(str(e)) from None
        self.output = Path(config.getoption("--lemonade-output"))
        self.writer = ResultsWriter(self.output / "results.d", os.environ.get("PYTEST_XDIST_WORKER", "main"))
        self.rerun_prefix: str = config.getoption("--lemonade-rerun-prefix")
        self.providers: dict[str, Any] = {}
        self.targets: dict[str, Any] = {}
        self.target_errors: dict[str, str] = {}

    # the plan's fields, under the names the rest of the plugin reads
    @property
    def catalog(self):
        return self.plan.catalog

    @property
    def depth(self) -> str:
        return self.plan.depth

    @property
    def profiles(self) -> list[str]:
        return self.plan.profiles

    @property
    def target_specs(self) -> list[str]:
        return self.plan.targets

    @property
    def target_names(self) -> dict[str, str]:
        return self.plan.target_names

    @property
    def scenarios_given(self):
        return self.plan.scenarios

    def target(self, spec: str):
        """The started target for a --target value (started on first use, once per process)."""
        if spec in self.target_errors:
            raise HarnessError(self.target_errors[spec])
        if spec not in self.targets:
            try:
                prov = provider_for(spec, self.depth, self.output / "logs", **self.clients.partner_settings(spec))
                self.providers[spec] = prov
                self.targets[spec] = prov.start()
                name = self.target_names[spec]
                info = self.output / "results.d" / f"target-{name}-{self.writer.worker}.json"
                info.write_text(json.dumps(self.targets[spec].describe(), indent=1, default=str))
            except (HarnessError, BadInput, OSError) as e:
                self.target_errors[spec] = f"target {spec} could not be started: {e}"
                raise HarnessError(self.target_errors[spec]) from e
        return self.targets[spec]

    def accounts(self) -> list[Account]:
        """Every account of every target started so far: their credentials never leave the process."""
        return [a for t in self.targets.values() for a in getattr(t, "accounts", [])]

    def stop(self) -> None:
        for prov in self.providers.values():
            try:
                prov.stop()
            except Exception:  # noqa: BLE001 - stopping the others matters more
                pass


STATE = pytest.StashKey[RunState]()


def state_of(config: pytest.Config) -> RunState | None:
    return config.stash.get(STATE, None)
