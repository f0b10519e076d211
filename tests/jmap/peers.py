"""Running the JMAP checks against the scripted peer (tests/fakes/jmap.py) and reading what each judged."""

from __future__ import annotations

from tests.fakes.jmap import FakeJmapServer


def run_peer(lemonade, tmp_path, k: str, *, behaviour: str = "conformant", faults: tuple[str, ...] = (),
             args: tuple[str, ...] = ()):
    """``lemonade run`` of the checks matching ``k`` against one scripted peer; (the run, {check: result})."""
    with FakeJmapServer(behaviour, faults=faults) as fake:
        run = lemonade("run", "--target", str(fake.target_file(tmp_path)), "-n", "2", "-k", k, *args)
    results = {r["check"]: r for r in run.results["results"]}
    return run, results


def judged(results: dict, check: str, rid: str) -> dict:
    """The verdict and message the result of ``check`` gives requirement ``rid`` (the check must name it)."""
    assert check in results, f"no result for {check}; have {sorted(results)}"
    r = results[check]
    assert rid in r["requirements"], f"{check} does not name {rid}: {r['requirements']}"
    return r["requirement_verdicts"][rid]


def assert_fails(results: dict, check: str, rid: str, reason: str, verdict: str = "fail") -> None:
    """``check`` judged ``rid`` ``verdict`` (fail, or non-strict for a SHOULD/MAY), for ``reason``."""
    v = judged(results, check, rid)
    assert v["verdict"] == verdict and reason in v["message"], (check, rid, v)
    assert results[check]["evidence"]["transcript"], f"{check} failed without a transcript"


def assert_passes(results: dict, checks: set[str]) -> None:
    missing = checks - set(results)
    assert not missing, f"no result for {sorted(missing)}"
    bad = {c: (results[c]["verdict"], results[c]["message"][:300]) for c in checks if results[c]["verdict"] != "pass"}
    assert not bad, bad
