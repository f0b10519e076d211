"""Results of clients and servers share one file: subject and role (schema_version 2), case keys that keep two
clients apart in diff and merge, and version-1 files read as server results."""

from __future__ import annotations

import json

from conformance.diffing import diff_runs, merge_runs
from conformance.results import SCHEMA_VERSION, Result, load_results, summarize
from conformance.verdicts import case_id as case_key


def result(subject: str, verdict: str, role: str = "client") -> dict:
    return Result(check="client/fetch_complete", requirements=["client.fetch.complete"], target="dovecot",
                  scenario="direct", verdict=verdict, subject=subject, role=role).as_dict()


def doc(results: list[dict]) -> dict:
    return {"schema_version": SCHEMA_VERSION, "run": {"id": "r", "profiles": ["client-intermediary"]},
            "results": results, "summary": summarize(results, ["client-intermediary"])}


def test_server_result_defaults():
    r = Result(check="push/idle", requirements=["idle.continuation"], target="dovecot", scenario="direct", verdict="pass")
    assert r.as_dict()["subject"] == "dovecot" and r.role == "server" and SCHEMA_VERSION == 2
    assert r.case_id == "push/idle|dovecot|direct"


def test_two_clients_on_one_partner_are_two_cases():
    a, b = result("fetchmail", "pass"), result("curl", "pass")
    assert case_key(a) != case_key(b) == "client/fetch_complete|curl@dovecot|direct"
    d = diff_runs(doc([a, b]), doc([a, result("curl", "fail")]), 0.25)
    assert [c.case for c in d.regressions] == ["client/fetch_complete|curl@dovecot|direct"]
    merged = merge_runs([doc([a]), doc([b])], ["x", "y"], None)
    assert sorted(r["subject"] for r in merged["results"]) == ["curl", "fetchmail"]


def test_version_1_files_read_as_servers(tmp_path):
    old = {"schema_version": 1, "run": {"id": "old"}, "summary": {}, "results": [
        {"check": "push/idle", "requirements": ["x"], "target": "dovecot", "scenario": "direct", "verdict": "pass"}]}
    (tmp_path / "results.json").write_text(json.dumps(old))
    r = load_results(tmp_path)["results"][0]
    assert r["role"] == "server" and r["subject"] == "dovecot"


def test_baseline_entries_name_the_client(tmp_path):
    from conformance.baseline import load_baseline

    f = tmp_path / "b.toml"
    f.write_text('[[expected]]\ncheck = "client/fetch_complete"\ntarget = "dovecot"\nclient = "curl"\n'
                 'reason = "known"\n\n[[expected]]\ncheck = "client/fetch_complete"\ntarget = "dovecot"\n'
                 'reason = "server"\n')
    d = doc([result("curl", "fail"), result("fetchmail", "fail")])
    load_baseline(str(f)).apply(d)
    got = {r["subject"]: r["verdict"] for r in d["results"]}
    assert got == {"curl": "xfail", "fetchmail": "fail"}  # an entry without client never applies to a client
