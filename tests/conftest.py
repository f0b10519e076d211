"""Fixtures for the suite's own tests: a real embedded Dovecot, a runner for the `lemonade` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory):
    """One embedded Dovecot per test worker (quick depth), stopped at the end."""
    from conformance.providers.dovecot import DovecotProvider

    prov = DovecotProvider(depth="quick", keep_logs=tmp_path_factory.mktemp("dovecot-logs"))
    target = prov.start()
    yield target
    prov.stop()


@dataclass
class CliRun:
    rc: int
    out: str
    err: str
    dir: Path

    @property
    def results(self) -> dict:
        return json.loads((self.dir / "results.json").read_text())

    def verdicts(self) -> dict[str, str]:
        return {f"{r['check']}|{r['scenario']}": r["verdict"] for r in self.results["results"]}

    def result(self, check: str) -> dict:
        found = [r for r in self.results["results"] if r["check"] == check]
        assert found, f"no result for {check}; have {sorted(self.verdicts())}\n{self.out}\n{self.err}"
        return found[0]


@pytest.fixture
def lemonade(tmp_path):
    """Run the real CLI in a subprocess: lemonade("run", "-k", "x") -> CliRun (output dir under tmp_path)."""
    counter = iter(range(1000))

    def run(*args: str, timeout: float = 300, output: bool = True) -> CliRun:
        out_dir = tmp_path / f"run{next(counter)}"
        cmd = [sys.executable, "-m", "conformance.cli", *args]
        if output and args and args[0] in ("run", "load") and "--output" not in args:
            cmd += ["--output", str(out_dir)]
        env = dict(os.environ, COLUMNS="200", LEMONADE_REPORTS=str(tmp_path / "reports"))
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
        run_dir = out_dir if args and args[0] in ("run", "load") else None
        if run_dir is not None and (run_dir / "results.json").is_file():
            # every run any test makes must match the documented results.json schema
            from conformance.schema import validate_results

            problems = validate_results(json.loads((run_dir / "results.json").read_text()))
            assert not problems, "results.json breaks conformance/schema/results.schema.json:\n" + "\n".join(problems[:20])
        return CliRun(p.returncode, p.stdout, p.stderr, out_dir)

    return run
