"""The servers x scenarios overview the report opens on (conformance/report/overview.py) and its text form."""

from __future__ import annotations

from conformance.report.html import render_html
from conformance.report.overview import as_text, main, overview
from tests.reports.docs import HOSTILE, doc, result


def two_servers() -> dict:
    return doc([result("capability/store_capabilities", "pass"),
                result("capability/store_capabilities", "fail", target="cyrus-push"),
                result("jmap/session_object", "not-applicable"),
                result("jmap/session_object", "pass", target="cyrus-push"),
                result("push/idle", "pass", scenario="nat-idle:timeout=3,mode=rst")],
               targets=[{"name": "dovecot"}, {"name": "cyrus-push"}])


def test_cells_count_verdicts_per_server_and_scenario_direct_first():
    ov = overview(two_servers())
    assert ov.targets == ["dovecot", "cyrus-push"] and ov.scenarios[0] == "direct" and ov.show
    assert ov.cells[("direct", "dovecot")] == {"pass": 1, "not-applicable": 1}
    assert ov.cells[("direct", "cyrus-push")] == {"fail": 1, "pass": 1}
    assert ("nat-idle:timeout=3,mode=rst", "cyrus-push") not in ov.cells
    text = as_text(ov).splitlines()
    assert text[0].split() == ["scenario", "dovecot", "cyrus-push"]
    assert "fail 1 pass 1" in text[2] and text[-1].startswith("all scenarios")


def test_the_report_opens_on_it_and_escapes_what_a_peer_named():
    html = render_html(two_servers())
    assert html.index("Servers × scenarios") < html.index("Verdict per profile")
    hostile = doc([result("a/b", "pass", target=HOSTILE), result("a/b", "pass", target="x")])
    page = render_html(hostile)
    assert HOSTILE not in page and "&lt;script&gt;" in page
    assert "Servers × scenarios" not in render_html(doc([result("a/b", "pass")]))  # one cell: nothing to compare


def test_text_form_from_a_results_file(tmp_path, capsys):
    import json

    f = tmp_path / "results.json"
    f.write_text(json.dumps(two_servers()))
    assert main([str(f)]) == 0
    assert "cyrus-push" in capsys.readouterr().out
    assert main([]) == 2
