"""Baseline files: validation (every mistake is a clear BadInput) and how entries turn verdicts into xfail/xpass."""

import datetime as dt

import pytest

from conformance.baseline import load_baseline
from conformance.errors import BadInput
from conformance.results import summarize
from tests.reports.docs import doc, result

TODAY = dt.date(2026, 6, 1)


def write(tmp_path, text):
    p = tmp_path / "baseline.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize("text, expect", [
    ('[[expected]]\ncheck = "a/b"\ntarget = "dovecot"\n', "'reason' is mandatory"),
    ('[[expected]]\ncheck = "a/b"\nreason = "x"\n', "'target' is mandatory"),
    ('[[expected]]\nreason = "x"\ntarget = "t"\n', "give a 'check', a 'requirement', or both"),
    ('[[expected]]\ncheck = "a/b"\nreason = "x"\ntarget = "t"\nflavour = "y"\n', "unknown key(s) flavour"),
    ('[[expected]]\ncheck = "a/b"\nreason = "x"\ntarget = "t"\nexpires = "soon"\n', "is not a date"),
    ('[[expected]\n', "not valid TOML"),
    ('expected = 3\n', "array of tables"),
    ('[[expected]]\nrequirement = "no.such.id"\nreason = "x"\ntarget = "t"\n', "unknown requirement id 'no.such.id'"),
])
def test_bad_baseline_files_are_named_clearly(tmp_path, text, expect):
    with pytest.raises(BadInput) as e:
        load_baseline(write(tmp_path, text), known_requirements={"lemonade.store.capabilities"})
    assert expect in str(e.value) and "baseline.toml" in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(BadInput, match="no such file"):
        load_baseline(tmp_path / "nope.toml")


def test_fail_becomes_xfail_pass_becomes_xpass_expired_and_scoped_entries_do_not_apply(tmp_path):
    b = load_baseline(write(tmp_path, '''
[[expected]]
check = "capability/store_capabilities"
target = "dovecot"
version = "2.3*"
reason = "Dovecot 2.3 lacks CONVERT and CONTEXT=SORT"
rfc = "RFC 5550 section 3.2"

[[expected]]
requirement = "lemonade.store.capability-code"
target = "dovecot"
reason = "was broken, now fixed"

[[expected]]
check = "capability/store_starttls"
target = "dovecot"
reason = "expired long ago"
expires = 2020-01-01

[[expected]]
check = "capability/submission_burl_imap"
target = "dovecot"
scenario = "kill"
reason = "only under kill"
'''))
    d = doc([result("capability/store_capabilities", "fail", message="missing CONVERT"),
             result("capability/capability_code_authenticate", "pass", requirements=("lemonade.store.capability-code",)),
             result("capability/store_starttls", "fail"),
             result("capability/submission_burl_imap", "fail"),
             result("capability/store_capabilities", "fail", target="cyrus")])
    b.apply(d, today=TODAY)
    v = {(r["check"], r["target"]): r["verdict"] for r in d["results"]}
    assert v[("capability/store_capabilities", "dovecot")] == "xfail"
    assert v[("capability/capability_code_authenticate", "dovecot")] == "xpass"
    assert v[("capability/store_starttls", "dovecot")] == "fail"  # expired entry stops applying
    assert v[("capability/submission_burl_imap", "dovecot")] == "fail"  # scenario-scoped entry
    assert v[("capability/store_capabilities", "cyrus")] == "fail"  # target-scoped entry
    xf = d["results"][0]
    assert xf["baseline"]["original_verdict"] == "fail" and "CONVERT" in xf["baseline"]["reason"]
    assert "remove the entry" in d["results"][1]["message"]
    assert [e["status"] for e in d["baseline"]["entries"]] == ["applied", "applied", "expired", "unused"]
    assert summarize(d["results"], ["lemonade"])["verdict"] == "fail"


def test_version_glob_must_match(tmp_path):
    b = load_baseline(write(tmp_path, '[[expected]]\ncheck = "capability/store_capabilities"\ntarget = "dovecot"\n'
                                      'version = "2.4*"\nreason = "only 2.4"\n'))
    d = doc([result("capability/store_capabilities", "fail")])
    b.apply(d, today=TODAY)
    assert d["results"][0]["verdict"] == "fail"


def test_an_entry_naming_a_requirement_of_a_check_excuses_that_requirement_only(tmp_path):
    b = load_baseline(write(tmp_path, '''
[[expected]]
check = "envelope/signed_append_fetch_byte_exact"
requirement = "uidplus.appenduid"
target = "dovecot"
reason = "this server has no UIDPLUS"
'''), known_requirements={"uidplus.appenduid"})
    reqs = ("uidplus.appenduid", "smime.canonical-text")
    known = result("envelope/signed_append_fetch_byte_exact", "fail", requirements=reqs, message="no APPENDUID")
    known["requirement_verdicts"] = {"uidplus.appenduid": {"verdict": "fail", "message": "no APPENDUID"},
                                     "smime.canonical-text": {"verdict": "pass", "message": ""}}
    new = result("envelope/signed_append_fetch_byte_exact", "fail", requirements=reqs, scenario="kill")
    new["requirement_verdicts"] = {"uidplus.appenduid": {"verdict": "fail", "message": "no APPENDUID"},
                                   "smime.canonical-text": {"verdict": "fail", "message": "CRLF turned into LF"}}
    d = doc([known, new])
    b.apply(d, today=TODAY)
    first, second = d["results"]
    assert first["verdict"] == "xfail" and first["requirement_verdicts"]["smime.canonical-text"]["verdict"] == "pass"
    assert first["requirement_verdicts"]["uidplus.appenduid"]["baseline"]["original_verdict"] == "fail"
    # the same check failing another requirement is a new failure: the run still fails
    assert second["verdict"] == "fail" and second["requirement_verdicts"]["uidplus.appenduid"]["verdict"] == "xfail"
    assert summarize(d["results"], ["lemonade"])["verdict"] == "fail"
    assert d["baseline"]["entries"][0]["status"] == "applied"


def test_a_requirement_entry_whose_requirement_now_passes_is_an_xpass(tmp_path):
    b = load_baseline(write(tmp_path, '[[expected]]\nrequirement = "lemonade.store.capabilities"\ntarget = "dovecot"\n'
                                      'reason = "fixed since"\n'))
    d = doc([result("capability/store_capabilities", "pass")])
    b.apply(d, today=TODAY)
    r = d["results"][0]
    assert r["verdict"] == "xpass" and "remove the entry" in r["message"]
    assert summarize(d["results"], ["lemonade"])["verdict"] == "fail"
