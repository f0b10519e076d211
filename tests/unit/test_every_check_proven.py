"""Every check is proven able to fail (issue 13 section 4): each has a test marked ``@pytest.mark.proves`` that drives
it to fail for its own reason and asserts it with the ``prove`` fixture (tests/proving.py).

The markers are read from the source of tests/ (nothing imported), the checks are found the way the plugin finds
them, so a check added by anyone later needs its proving test before this passes.
"""

from __future__ import annotations

import pytest

from tests.proving import DATA_ONLY, Proofs, all_checks, proving_markers


@pytest.fixture(scope="module")
def checks() -> dict[str, list[str]]:
    return all_checks()


@pytest.fixture(scope="module")
def markers():
    return proving_markers()


def test_every_check_has_a_proving_test(checks, markers):
    marked, _ = markers
    proven = {m.check for m in marked}
    missing = sorted(set(checks) - proven - set(DATA_ONLY))
    assert not missing, (f"{len(missing)} of {len(checks)} checks have no proving test (a test marked "
                         f"@pytest.mark.proves('family/check', 'requirement.id') that drives the check to fail and "
                         f"asserts it with the prove fixture): {', '.join(missing)}")


def test_data_only_checks_only_report():
    """A check exempt from proving (DATA_ONLY) judges nothing: it ends informational and never passes or asserts, and
    the catalog's test statement of each requirement it names says it is informational."""
    import importlib
    import inspect

    import yaml

    from conformance.catalog import PROFILES_DIR
    from conformance.plugin.selection import check_id

    tests = {r["id"]: r.get("test", "") for f in sorted((PROFILES_DIR / "requirements").glob("*.yaml"))
             for r in yaml.safe_load(f.read_text()).get("requirements", [])}
    found = {}
    for family_module in ("conformance.checks.client.test_reachability",):
        module = importlib.import_module(family_module)
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("test_"):
                found[check_id(fn)] = fn
    assert set(DATA_ONLY) <= set(found), sorted(set(DATA_ONLY) - set(found))
    for check, why in DATA_ONLY.items():
        assert why
        source = inspect.getsource(found[check])
        assert "case.informational(" in source, check
        assert "case.passed(" not in source and "case.require(" not in source and "\n    assert " not in source, check
        for rid in all_checks()[check]:
            assert "informational" in tests[rid], (check, rid)


def test_markers_name_real_checks_and_requirements_they_judge(checks, markers):
    marked, problems = markers
    for m in marked:
        if m.check not in checks:
            problems.append(f"{m.test}: no check {m.check!r}")
        elif m.requirement not in checks[m.check]:
            problems.append(f"{m.test}: {m.check} does not name {m.requirement!r} (it names {checks[m.check]})")
    assert not problems, "\n".join(problems)


def test_every_marked_test_asserts_through_the_prove_fixture(markers):
    marked, _ = markers
    lazy = sorted({m.test for m in marked if not m.takes_prove})
    assert not lazy, f"marked @pytest.mark.proves but not taking the prove fixture (nothing asserts the claim): {lazy}"


def test_requirements_not_yet_proven_are_listed(checks, markers, capsys):
    """Not a gate: the (check, requirement) pairs without a proof of their own, printed for the reader."""
    marked, _ = markers
    pairs = {(m.check, m.requirement) for m in marked}
    open_pairs = sorted((c, r) for c, reqs in checks.items() for r in reqs if (c, r) not in pairs)
    with capsys.disabled():
        print(f"\n{len(pairs)} (check, requirement) pairs proven, {len(open_pairs)} open:")
        for c, r in open_pairs:
            print(f"  {c} {r}")
    assert pairs


def test_prove_asserts_the_verdict_and_the_reason_and_keeps_the_markers_honest():
    result = {"check": "push/x", "target": "t", "scenario": "direct", "verdict": "fail", "message": "m",
              "requirement_verdicts": {"a.must": {"verdict": "fail", "message": "no EXISTS within 2 s"},
                                       "a.should": {"verdict": "non-strict", "message": "no BADEVENT code"},
                                       "a.pass": {"verdict": "pass", "message": ""}}}
    proofs = Proofs({("push/x", "a.must"), ("push/x", "a.should")}, {"a.must": "MUST", "a.should": "SHOULD",
                                                                       "a.pass": "MUST"})
    proofs(result, "push/x", "a.must", "no EXISTS")
    assert proofs.problems() == ["marked @pytest.mark.proves('push/x', 'a.should') but never proven with prove(...)"]
    proofs(result, "push/x", "a.should", ["BADEVENT"])
    assert proofs.problems() == []
    with pytest.raises(AssertionError, match="judged a.pass 'pass'"):
        proofs(result, "push/x", "a.pass", "")
    with pytest.raises(AssertionError, match="lacks"):
        proofs(result, "push/x", "a.must", "a different reason")
    with pytest.raises(AssertionError, match="no result for push/y"):
        proofs(result, "push/y", "a.must", "")
    unmarked = Proofs(set(), {"a.must": "MUST"})
    unmarked(result, "push/x", "a.must", "no EXISTS")
    assert unmarked.problems() == ["proved push/x a.must without a @pytest.mark.proves marker for it"]
