"""results.json schema 2 (a verdict per requirement, subject, role) and version-1 files still read by `report`,
`diff` and `merge` (the fixture is a trimmed results.json of a real version-1 run against the embedded Dovecot)."""

from __future__ import annotations

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path

from conformance.diffing import diff_runs, merge_runs
from conformance.results import load_results, summarize
from conformance.schema import validate_results

V1 = Path(__file__).resolve().parent / "fixtures" / "results-v1.json"
SIGNED = "envelope/signed_append_fetch_byte_exact"


def v2_from_v1(tmp_path: Path) -> Path:
    """The same run as schema 2, in which the signed-append check now fails uidplus.appenduid only."""
    doc = load_results(V1)
    doc.pop("upgraded_from")
    r = next(x for x in doc["results"] if x["check"] == SIGNED)
    r["requirement_verdicts"]["uidplus.appenduid"] = {"verdict": "fail", "message": "APPEND OK without [APPENDUID]"}
    r["verdict"], r["message"] = "fail", "APPEND OK without [APPENDUID]"
    doc["run"] = dict(doc["run"], id="v2-run")
    assert validate_results(doc) == []
    path = tmp_path / "v2" / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps(doc))
    return path


def test_a_version_1_file_is_still_valid_and_reads_as_version_2():
    raw = json.loads(V1.read_text())
    assert raw["schema_version"] == 1 and validate_results(raw) == []
    doc = load_results(V1)
    assert doc["schema_version"] == 2 and doc["upgraded_from"] == 1
    r = next(x for x in doc["results"] if x["check"] == SIGNED)
    assert r["subject"] == r["target"] == "dovecot" and r["role"] == "server"
    assert set(r["requirement_verdicts"]) == set(r["requirements"]) and len(r["requirements"]) == 7
    assert {v["verdict"] for v in r["requirement_verdicts"].values()} == {"pass"}
    assert validate_results(doc) == []


def test_report_renders_a_version_1_file(lemonade, tmp_path):
    run = lemonade("report", str(V1), "-o", str(tmp_path / "out"))
    assert run.rc == 0, run.err
    html = (tmp_path / "out" / "index.html").read_text()
    assert SIGNED in html and "schema_version 2" in html and "verdict per requirement" in html
    junit = ET.parse(tmp_path / "out" / "junit.xml").getroot()
    tc = next(t for t in junit.iter("testcase") if t.get("name") == SIGNED)
    props = {p.get("name"): p.get("value") for p in tc.iter("property")}
    assert props["verdict:uidplus.appenduid"] == "pass" and props["role"] == "server" and props["subject"] == "dovecot"


def test_diff_of_a_version_1_and_a_version_2_run_names_the_requirement_that_regressed(lemonade, tmp_path):
    new = v2_from_v1(tmp_path)
    d = diff_runs(load_results(V1), load_results(new))
    assert [c.case for c in d.regressions] == [f"{SIGNED}|dovecot|direct"]
    assert d.regressions[0].requirement_changes == {"uidplus.appenduid": ["pass", "fail"]}
    assert d.unchanged == len(load_results(V1)["results"]) - 1
    cli = lemonade("diff", str(V1), str(new))
    assert cli.rc == 1 and "uidplus.appenduid: pass -> fail" in cli.out, cli.out + cli.err


def test_a_requirement_regression_inside_an_already_failing_case_is_a_regression(tmp_path):
    old = load_results(V1)
    new = copy.deepcopy(old)
    r = next(x for x in new["results"] if x["check"] == "capability/store_capabilities")
    r["requirements"].append("lemonade.store.keywords")
    old_r = next(x for x in old["results"] if x["check"] == "capability/store_capabilities")
    old_r["requirements"].append("lemonade.store.keywords")
    old_r["requirement_verdicts"]["lemonade.store.keywords"] = {"verdict": "pass", "message": ""}
    r["requirement_verdicts"]["lemonade.store.keywords"] = {"verdict": "fail", "message": "keyword lost"}
    d = diff_runs(old, new)
    assert old_r["verdict"] == r["verdict"] == "fail"  # the case failed before and after
    assert [c.case for c in d.regressions] == ["capability/store_capabilities|dovecot|direct"]


def test_merge_of_a_version_1_and_a_version_2_run_is_version_2(lemonade, tmp_path):
    new = v2_from_v1(tmp_path)
    out = tmp_path / "merged"
    run = lemonade("merge", str(V1), str(new.parent), "-o", str(out))
    assert run.rc == 1, run.out + run.err
    doc = json.loads((out / "results.json").read_text())
    assert doc["schema_version"] == 2 and validate_results(doc) == []
    renamed = [r for r in doc["results"] if r["target"] == "dovecot@v2-run"]
    assert renamed and all(r["subject"] == "dovecot@v2-run" for r in renamed)
    assert all("requirement_verdicts" in r for r in doc["results"])


def test_a_profile_counts_only_its_own_requirement_verdicts():
    doc = load_results(V1)
    r = next(x for x in doc["results"] if x["check"] == SIGNED)
    r["requirement_verdicts"]["uidplus.appenduid"] = {"verdict": "fail", "message": "no APPENDUID"}
    r["verdict"] = "fail"
    s = summarize([r], ["mobile-intermediary", "envelope-security"], requirements=doc["requirements"])
    # mobile-intermediary holds only mobile.envelope.signed-byte-exact of this check's requirements
    assert s["profiles"]["mobile-intermediary"]["verdict"] == "pass"
    assert s["profiles"]["envelope-security"]["verdict"] == "fail" and s["verdict"] == "fail"
