"""Report rendering from results.json alone: escaping, matrix view, JUnit, diff and merge logic, schema."""

import xml.etree.ElementTree as ET

from conformance.diffing import diff_runs, merge_runs
from conformance.report.html import render_diff_html, render_html
from conformance.report.junit import render_junit
from conformance.schema import validate_results
from tests.reports.docs import HOSTILE, doc, result


def hostile_doc():
    tr = [{"t": 0.0, "leg": "client-proxy", "direction": "S", "text": f"* OK {HOSTILE}\r\n", "nbytes": 60, "conn": "imap#1"},
          {"t": 0.1, "leg": "kill", "direction": "I", "text": f"kill: closed {HOSTILE}", "nbytes": 0, "conn": ""}]
    d = doc([result("capability/store_capabilities", "fail", message=f"missing {HOSTILE}", transcript=tr,
                    measurements={"advertised": {"value": 3, "unit": HOSTILE}})],
            targets=[{"name": "dovecot", "provider": "external", "version": HOSTILE, "endpoints": {"imap": HOSTILE}}])
    d["results"][0]["evidence"]["banner"] = HOSTILE
    return d


def test_everything_a_server_sends_is_escaped_in_html():
    html = render_html(hostile_doc())
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count("<script") == 1  # only the report's own filter script


def test_only_http_links_are_rendered_as_links():
    d = hostile_doc()
    d["requirements"]["lemonade.store.capabilities"]["url"] = "javascript:alert(3)"
    assert "javascript:" not in render_html(d)


def test_the_schema_is_a_valid_json_schema():
    import jsonschema

    from conformance.schema import results_schema

    jsonschema.Draft202012Validator.check_schema(results_schema())


def test_junit_is_well_formed_with_hostile_text_and_carries_requirements():
    root = ET.fromstring(render_junit(hostile_doc()).split("\n", 1)[1])
    tc = root.find(".//testcase")
    props = {p.get("name"): p.get("value") for p in tc.iter("property")}
    assert props["requirement"] == "lemonade.store.capabilities" and props["verdict"] == "fail"
    assert props["source:lemonade.store.capabilities"] == "RFC 5550 §3.2"
    failure = tc.find("failure")
    assert HOSTILE in failure.get("message") and "rerun: lemonade run" in failure.text


def test_matrix_appears_with_several_targets_or_scenarios_and_not_otherwise():
    one = doc([result("capability/store_capabilities", "pass")])
    assert 'id="matrix"' not in render_html(one)
    two = doc([result("capability/store_capabilities", "pass"),
               result("capability/store_capabilities", "fail", target="cyrus"),
               result("capability/store_capabilities", "pass", scenario="kill")])
    html = render_html(two)
    assert 'id="matrix"' in html and "tally over 3 cells" in html
    assert "https://www.rfc-editor.org/rfc/rfc5550#section-3.2" in html


def test_synthetic_and_merged_documents_match_the_schema():
    a = doc([result("capability/store_capabilities", "pass")], "a")
    b = doc([result("capability/store_capabilities", "fail")], "b")
    assert validate_results(a) == []
    merged = merge_runs([a, b], ["a/results.json", "b/results.json"])
    assert validate_results(merged) == []
    assert {r["target"] for r in merged["results"]} == {"dovecot", "dovecot@b"}
    assert merged["summary"]["verdict"] == "fail"
    broken = dict(a, results=[dict(a["results"][0], verdict="great")])
    assert any("verdict" in p for p in validate_results(broken))


def test_merge_of_shards_keeps_target_names():
    a = doc([result("capability/store_capabilities", "pass")], "s1")
    b = doc([result("capability/store_starttls", "pass")], "s2")
    merged = merge_runs([a, b], ["s1", "s2"])
    assert {r["target"] for r in merged["results"]} == {"dovecot"} and len(merged["results"]) == 2


def test_diff_classifies_regressions_fixes_new_removed_and_measurements():
    old = doc([result("c/a", "pass"), result("c/b", "fail"), result("c/gone", "pass"),
               result("c/m", "pass", measurements={"rtt": {"value": 100, "unit": "ms"}, "n": {"value": 10}})], "old")
    new = doc([result("c/a", "fail", message="now broken"), result("c/b", "pass"), result("c/new", "pass"),
               result("c/m", "pass", measurements={"rtt": {"value": 180, "unit": "ms"}, "n": {"value": 11}})], "new")
    d = diff_runs(old, new, tolerance=0.25)
    assert [c.case for c in d.regressions] == ["c/a|dovecot|direct"]
    assert [c.case for c in d.fixes] == ["c/b|dovecot|direct"]
    assert [c.case for c in d.new] == ["c/new|dovecot|direct"] and [c.case for c in d.removed] == ["c/gone|dovecot|direct"]
    assert len(d.measurements) == 1 and "rtt: 100 -> 180 ms" in d.measurements[0].detail and "n:" not in d.measurements[0].detail
    assert d.exit_code == 1 and diff_runs(new, new).exit_code == 0
    html = render_diff_html(d, old, new)
    assert "1 regression" in html and "now broken" in html
