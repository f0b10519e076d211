"""Fixtures for the suite's own tests: a real embedded Dovecot, a runner for the `lemonade` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.proving import Proofs, claims, levels

ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """The checks' own markers, for tests that import check modules outside a lemonade run."""
    for line in ("requirement(*ids): requirement ids a check verifies", "uses(*endpoints): endpoints a check needs",
                 "scenarios(*specs): scenarios a check is meaningful under", "depth(name): depth a check needs"):
        config.addinivalue_line("markers", line)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so the ``prove`` fixture knows whether the test body passed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"lemonade_report_{report.when}", report)


@pytest.fixture(scope="session")
def requirement_levels() -> dict[str, str]:
    return levels()


@pytest.fixture
def prove(request, requirement_levels):
    """``prove(run, "family/check", "req.id", "reason words", target=..., scenario=...)``: assert that the check
    judged that requirement fail (non-strict for SHOULD/MAY) for that reason, and record it (tests/proving.py). A
    test whose body passed fails at teardown when one of its ``@pytest.mark.proves`` markers was never proven."""
    proofs = Proofs(claims(request.node.iter_markers("proves")), requirement_levels)
    yield proofs
    call = getattr(request.node, "lemonade_report_call", None)
    if call is not None and call.passed and proofs.problems():
        pytest.fail("the proving test did not keep its word: " + "; ".join(proofs.problems()), pytrace=False)


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


def run_cli(out_dir: Path, *args: str, timeout: float = 300, output: bool = True, prelude: str = "") -> CliRun:
    """Run the real CLI in a subprocess; a ``run`` writes into ``out_dir``. ``prelude``: Python run in the CLI's
    process first (e.g. importing a test-only intermediary, which registers it, or pointing the catalog at a copied
    profiles folder); without ``-n`` the checks run in that same process."""
    if prelude and args and args[0] == "run" and "-n" not in args:
        args = (*args, "-n", "0")  # what the prelude registers exists in this process only, not in xdist workers
    cmd = [sys.executable, "-m", "conformance.cli", *args]
    if prelude:
        cmd = [sys.executable, "-c", f"{prelude}\nimport sys\nfrom conformance.cli import main\n"
               f"sys.exit(main(sys.argv[1:]))", *args]
    if output and args and args[0] in ("run", "load") and "--output" not in args:
        cmd += ["--output", str(out_dir)]
    env = dict(os.environ, COLUMNS="200", LEMONADE_REPORTS=str(out_dir.parent / "reports"))
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    run_dir = out_dir if args and args[0] in ("run", "load") else None
    if run_dir is not None and (run_dir / "results.json").is_file():
        # every run any test makes must match the documented results.json schema
        from conformance.schema import validate_results

        problems = validate_results(json.loads((run_dir / "results.json").read_text()))
        assert not problems, "results.json breaks conformance/schema/results.schema.json:\n" + "\n".join(problems[:20])
    return CliRun(p.returncode, p.stdout, p.stderr, out_dir)


@pytest.fixture
def lemonade(tmp_path):
    """Run the real CLI in a subprocess: lemonade("run", "-k", "x") -> CliRun (output dir under tmp_path); keywords
    as for ``run_cli``."""
    return cli_runner(tmp_path)


def cli_runner(tmp_path: Path):
    """The ``lemonade`` fixture's runner for any directory (e.g. a module-scoped one several tests share)."""
    counter = iter(range(1000))

    def run(*args: str, **kw) -> CliRun:
        return run_cli(tmp_path / f"run{next(counter)}", *args, **kw)

    return run
