"""Verdict rules (conformance/verdicts.py): one verdict per requirement, the result's is the worst, exceptions
give theirs to what they name, a failed SHOULD is non-strict, a broken intermediary at teardown is error."""

from __future__ import annotations

import pytest

from conformance.errors import ConformanceFailure, HarnessError, IntermediaryFailed, NotApplicable
from conformance.verdicts import SEVERITY, VERDICTS, Judgement, Phase, Softer, case_id, judge, requirement_verdicts, worst

NAMED = ("a.must", "b.must", "c.should")
LEVELS = {"a.must": "MUST", "b.must": "PROFILE", "c.should": "SHOULD"}


def phases(call=None, teardown=None, setup=None):
    return [Phase("setup", setup), Phase("call", call), Phase("teardown", teardown)]


def verdicts_of(v):
    return {rid: rv.verdict for rid, rv in v.requirements.items()}


def test_severity_names_every_verdict_once_and_worst_picks_by_it():
    assert sorted(SEVERITY) == sorted(VERDICTS)
    assert worst(["pass", "not-applicable", "informational"]) == "informational"
    assert worst(["fail", "error"]) == "error" and worst(["xfail", "non-strict"]) == "non-strict"
    assert worst(["great"]) == "great"  # an unknown word is never taken for a pass


def test_a_check_that_returns_passes_every_requirement_it_did_not_judge():
    v = judge(NAMED, LEVELS, phases(), softer=Softer(summary="all good"))
    assert v.verdict == "pass" and v.message == "all good" and set(verdicts_of(v).values()) == {"pass"}


def test_require_records_each_requirement_and_the_result_is_the_worst():
    j = Judgement(NAMED)
    j.record("a.must", "pass")
    j.record("b.must", "fail", "no APPENDUID")
    j.record("b.must", "pass")  # judged twice: the worse stands
    v = judge(NAMED, LEVELS, phases(), j)
    assert verdicts_of(v) == {"a.must": "pass", "b.must": "fail", "c.should": "pass"}
    assert v.verdict == "fail" and v.message == "no APPENDUID"


def test_a_failed_should_is_non_strict_and_does_not_fail_the_result():
    j = Judgement(NAMED)
    j.record("c.should", "fail", "sizes differ")
    v = judge(NAMED, LEVELS, phases(), j)
    assert verdicts_of(v)["c.should"] == "non-strict" and v.verdict == "non-strict" and v.message == "sizes differ"


def test_judging_a_requirement_the_marker_does_not_name_is_a_bug_in_the_check():
    j = Judgement(NAMED)
    with pytest.raises(HarnessError, match="does not name"):
        j.record("z.other", "pass")
    v = judge(NAMED, LEVELS, phases(), j)  # even if the check swallowed the HarnessError
    assert v.verdict == "error" and "bug in the check" in v.message


def test_an_exception_gives_its_verdict_to_every_requirement_not_judged_yet():
    j = Judgement(NAMED)
    j.record("a.must", "pass")
    v = judge(NAMED, LEVELS, phases(call=AssertionError("octets differ")), j)
    assert verdicts_of(v) == {"a.must": "pass", "b.must": "fail", "c.should": "non-strict"}
    assert v.verdict == "fail" and v.message == "octets differ"


def test_an_exception_naming_requirements_gives_its_verdict_to_those_only():
    v = judge(NAMED, LEVELS, phases(call=NotApplicable("no LITERAL+", requirement="a.must")))
    assert verdicts_of(v) == {"a.must": "not-applicable", "b.must": "skipped", "c.should": "skipped"}
    assert "not judged: the check ended first" in v.requirements["b.must"].message
    failure = ConformanceFailure("APPENDUID missing", requirement=["b.must"])
    assert verdicts_of(judge(NAMED, LEVELS, phases(call=failure)))["b.must"] == "fail"
    unknown = judge(NAMED, LEVELS, phases(call=ConformanceFailure("x", requirement="z.other")))
    assert unknown.verdict == "error" and "bug in the check" in unknown.message


def test_harness_trouble_is_error_never_fail():
    v = judge(NAMED, LEVELS, phases(call=OSError("port clash")))
    assert v.verdict == "error" and v.message == "OSError: port clash"
    assert judge(NAMED, LEVELS, phases(setup=AssertionError("fixture bug"))).verdict == "error"
    assert judge(NAMED, LEVELS, phases(setup=ConformanceFailure("STARTTLS refused"))).verdict == "fail"


def test_teardown_trouble_after_a_failure_stays_secondary():
    j = Judgement(NAMED)
    j.record("a.must", "fail", "server broke")
    v = judge(NAMED, LEVELS, phases(teardown=HarnessError("cleanup failed")), j)
    assert v.verdict == "fail" and v.message == "server broke"
    v = judge(NAMED, LEVELS, phases(call=AssertionError("bad"), teardown=HarnessError("cleanup failed")))
    assert v.verdict == "fail"


def test_teardown_trouble_after_passes_puts_them_in_doubt():
    j = Judgement(NAMED)
    j.record("a.must", "pass")
    j.record("b.must", "not-applicable", "no UIDPLUS")
    v = judge(NAMED, LEVELS, phases(teardown=HarnessError("cleanup failed")), j)
    assert verdicts_of(v) == {"a.must": "error", "b.must": "not-applicable", "c.should": "error"}


def test_a_broken_intermediary_at_teardown_overrides_a_call_fail():
    """CaseContext.close() raises IntermediaryFailed when an addon raised: the server's 'fail' was seen
    through a broken path, so it is not trustworthy; every requirement becomes error."""
    j = Judgement(NAMED)
    j.record("a.must", "pass")
    broken = IntermediaryFailed("addon nat-idle raised KeyError")
    v = judge(NAMED, LEVELS, phases(call=ConformanceFailure("server closed"), teardown=broken), j)
    assert v.verdict == "error" and set(verdicts_of(v).values()) == {"error"}
    assert "addon nat-idle raised" in v.requirements["b.must"].message
    assert "the check had found: fail: server closed" in v.requirements["b.must"].message


def test_legacy_softer_outcomes_apply_to_unjudged_requirements():
    j = Judgement(NAMED)
    j.record("a.must", "pass")
    v = judge(NAMED, LEVELS, phases(), j, Softer(informational=["measured 3 s"]))
    assert verdicts_of(v) == {"a.must": "pass", "b.must": "informational", "c.should": "informational"}
    assert v.verdict == "informational"


def test_different_messages_at_the_worst_verdict_are_prefixed_by_their_requirement():
    j = Judgement(NAMED)
    j.record("a.must", "fail", "x")
    j.record("b.must", "fail", "y")
    assert judge(NAMED, LEVELS, phases(), j).message == "a.must: x; b.must: y"


def test_schema_1_results_read_as_one_verdict_for_every_requirement():
    r = {"check": "c/x", "target": "t", "scenario": "direct", "verdict": "fail", "message": "m",
         "requirements": ["a.must", "b.must"]}
    assert requirement_verdicts(r) == {"a.must": {"verdict": "fail", "message": "m"},
                                       "b.must": {"verdict": "fail", "message": "m"}}
    assert case_id(r) == "c/x|t|direct"
    assert case_id({**r, "role": "client", "subject": "fetchmail"}) == "c/x|fetchmail@t|direct"


def test_the_path_record_of_addon_errors_alone_makes_every_requirement_error():
    """When the path recorded addon errors the plugin passes them even if teardown raised something else."""
    v = judge(NAMED, LEVELS, phases(call=AssertionError("server closed"), teardown=HarnessError("cleanup")),
              path_failure="IntermediaryFailed: addon kill raised OSError")
    assert v.verdict == "error" and all(r.verdict == "error" for r in v.requirements.values())
    assert "addon kill raised" in v.message and "the check had found: fail" in v.message


def test_the_plugin_reads_addon_errors_from_the_case_path():
    from types import SimpleNamespace

    from conformance.plugin.outcome import path_failure

    assert path_failure(None) is None
    assert path_failure(SimpleNamespace(path=SimpleNamespace(harness_errors=[]))) is None
    broken = SimpleNamespace(path=SimpleNamespace(harness_errors=[KeyError("mode")]))
    assert "intermediary failed" in path_failure(broken) and "'mode'" in path_failure(broken)


def test_the_schema_knows_the_same_verdicts():
    from conformance.schema import results_schema

    assert results_schema()["$defs"]["verdict"]["enum"] == list(VERDICTS)
