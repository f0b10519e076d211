"""The interop-event site from six real runs (two servers: the embedded Dovecot and a "staging" Dovecot
described by a target file, whose TLS configuration is weakened for one run: a real regression, then fixed),
read in headless Chromium like the report. Screenshots go to tests/artifacts/site-*.png (git-ignored).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.providers.dovecot import DovecotProvider
from conformance.schema import validate_results
from conformance.site import build_site
from conformance.targets import write_target_file
from tests.reports.test_browser import ARTIFACTS, browser, open_page, shoot  # noqa: F401 - browser is a fixture

ROOT = Path(__file__).resolve().parents[2]
WEAK_TLS = {"ssl_min_protocol": "TLSv1", "ssl_cipher_list": "ALL:@SECLEVEL=0"}
QUICK = "capability_code or store_starttls"
TLS = "tls_versions_every_endpoint or capability_code_greeting"


def lemonade(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200", LEMONADE_PROGRESS="lines")
    return subprocess.run([sys.executable, "-m", "conformance.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


def run(out: Path, *args: str) -> Path:
    p = lemonade("run", "--output", str(out), *args, cwd=out.parent)
    assert p.returncode in (0, 1), p.stdout + p.stderr
    doc = json.loads((out / "results.json").read_text())
    assert validate_results(doc) == []
    return out


@pytest.fixture(scope="module")
def six_runs(tmp_path_factory) -> list[Path]:
    """Six runs in time order: dovecot x3 (several scenarios), staging x3 (good, weak TLS, good again)."""
    d = tmp_path_factory.mktemp("runs")
    runs = [run(d / "1-dovecot", "-k", QUICK, "--scenario", "direct", "--scenario", "kill")]
    with DovecotProvider(name="staging") as staging:
        target = write_target_file(staging, d / "staging.toml")
        runs.append(run(d / "2-staging", "--target", str(target), "-k", TLS))
    runs.append(run(d / "3-dovecot", "-k", QUICK, "--scenario", "direct", "--scenario", "nat-idle:timeout=30"))
    with DovecotProvider(name="staging", settings=WEAK_TLS) as staging:  # a configuration change regresses
        target = write_target_file(staging, d / "staging.toml")
        runs.append(run(d / "4-staging", "--target", str(target), "-k", TLS))
    with DovecotProvider(name="staging") as staging:  # and is fixed again
        target = write_target_file(staging, d / "staging.toml")
        runs.append(run(d / "5-staging", "--target", str(target), "-k", TLS))
    runs.append(run(d / "6-dovecot", "-k", QUICK + " or store_capabilities", "--scenario", "direct"))
    return runs


def test_site_of_six_runs_read_in_chromium(six_runs, browser, tmp_path):  # noqa: F811 - the browser fixture
    site = tmp_path / "site"
    p = lemonade("site", *map(str, six_runs), "-o", str(site), "--title", "Lemonade interop, demo event", cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "6 runs (6 added" in p.stdout
    index = json.loads((site / "site.json").read_text())
    assert index["format"] == "lemonade-site" and len(index["runs"]) == 6
    subjects = {s["name"]: s for s in index["subjects"]}
    assert set(subjects) == {"dovecot", "staging"} and all(s["role"] == "server" for s in subjects.values())
    staging = subjects["staging"]["runs"]
    assert [len(r["regressions"]) for r in staging] == [0, 1, 0] and [len(r["fixes"]) for r in staging] == [0, 0, 1]
    assert staging[1]["regressions"] == ["transport/tls_versions_every_endpoint|staging|direct"]
    assert staging[1]["diff"] and (site / staging[1]["diff"]).is_file()
    latest = {(e["subject"], e["scenario"], e["check"]): e for e in index["latest"]}
    tls = latest[("staging", "direct", "transport/tls_versions_every_endpoint")]
    assert tls["verdict"] == "pass" and tls["run"] == index["runs"][1]["key"]  # the newest staging run (5th)
    for r in index["runs"]:  # every run's report, results and JUnit at its permalink
        for k in ("report", "results", "junit"):
            assert (site / r[k]).is_file(), r[k]

    # the index: every run, newest first, cards per subject
    page, problems = open_page(browser, site / "index.html")
    rows = page.locator("table.runs tbody tr")
    assert rows.count() == 6
    assert page.locator(".card").count() == 2
    assert "Lemonade interop, demo event" in page.locator("header.top h1").inner_text()
    page.screenshot(path=str(ARTIFACTS / "site-index.png"), full_page=True)
    rows.first.locator("a", has_text="report").click()  # a run's report at its permalink
    page.wait_for_load_state("load")
    assert "/runs/" in page.url and page.locator("article.result").count() > 0
    assert problems == []

    # the matrix: latest result per subject x scenario; a cell leads to the evidence in that run's report
    page, problems = open_page(browser, site / "matrix.html")
    summary_rows = page.locator("table.summary tbody tr")
    assert summary_rows.count() == 2
    assert page.locator("table.summary th.scn").all_inner_texts() == ["direct", "kill", "nat-idle:timeout=30,mode=rst"]
    shoot(page, "main", "site-matrix.png")
    cell = page.locator("table.grid a.pill.fail").first  # Dovecot 2.3 lacks CONVERT: store_capabilities fails
    cell.click()
    page.wait_for_load_state("load")
    anchor = page.evaluate("location.hash").lstrip("#")
    assert anchor and page.locator(f"article#{anchor}").is_visible()
    assert "CONVERT" in page.locator(f"article#{anchor} .message").inner_text()
    assert problems == []

    # staging's history: the regression marked in its run, the fix in the next, a diff linked
    page, problems = open_page(browser, site / "history" / "staging.html")
    assert page.locator("table.runs tbody tr").count() == 3
    regressed = page.locator("#changed td.regressed")
    assert regressed.count() == 1 and regressed.locator(".pill.fail").count() == 1
    assert page.locator("#changed td.fixed").count() == 1
    assert page.locator("#changed tbody tr:not(.famhead)").count() == 1  # only the TLS case changed
    assert page.locator("#cases td.regressed").count() == 1  # and the full grid marks it too
    assert "▲1" in page.locator("svg.chart").text_content()
    page.screenshot(path=str(ARTIFACTS / "site-history.png"), full_page=True)
    page.locator("table.runs a", has_text="diff").nth(1).click()  # newest first: row 2 is the weak-TLS run
    page.wait_for_load_state("load")
    assert page.locator(".overall .word").text_content().strip() == "1 regression"
    assert "tls_versions_every_endpoint" in page.locator("#regressions").inner_text()
    page.screenshot(path=str(ARTIFACTS / "site-diff.png"), full_page=False)
    assert problems == []

    # no script needed: the same pages without JavaScript
    page, problems = open_page(browser, site / "history" / "staging.html", java_script_enabled=False)
    assert page.locator("#changed td.regressed").count() == 1 and problems == []


def test_adding_a_run_rewrites_only_what_changed(six_runs, tmp_path):
    site = tmp_path / "site"
    first = build_site([str(p) for p in six_runs[:5]], site)
    assert len(first.added) == 5 and first.skipped == 0
    pages = set(first.written)
    staging_history = site / "history" / "staging.html"
    before = staging_history.stat().st_mtime_ns
    again = build_site([str(p) for p in six_runs[:5]], site)  # the same runs again: nothing to do
    assert again.unchanged_runs == 5 and again.written == [] and again.skipped == len(pages)
    added = build_site([str(six_runs[5])], site)  # a new Dovecot run
    new_key = added.added[0]
    index = json.loads((site / "site.json").read_text())
    dovecot_runs = [r["run"] for r in next(s for s in index["subjects"] if s["name"] == "dovecot")["runs"]]
    assert dovecot_runs[-1] == new_key
    assert sorted(added.written) == sorted([
        f"runs/{new_key}/index.html", f"diffs/dovecot/{dovecot_runs[-2]}--{new_key}.html",
        "index.html", "matrix.html", "history/dovecot.html"])
    assert staging_history.stat().st_mtime_ns == before  # staging's pages were not touched
    assert added.skipped == len(pages) - 3  # every page but index, matrix and dovecot's history


def test_hostile_results_are_text_and_bad_input_is_exit_2(six_runs, tmp_path):
    doc = json.loads((six_runs[0] / "results.json").read_text())
    evil = '<script>alert(1)</script><img src=x onerror=alert(2)>'
    doc["run"]["id"] = evil
    doc["run"]["started"] = "2030-01-01T00:00:00Z"
    for r in doc["results"]:
        r["target"] = evil
        r["message"] = evil
    for t in doc["run"]["targets"]:
        t["name"], t["version"] = evil, evil
    hostile = tmp_path / "hostile.json"
    hostile.write_text(json.dumps(doc))
    site = tmp_path / "site"
    build_site([str(hostile)], site)
    for page in [site / "index.html", site / "matrix.html", *site.glob("history/*.html")]:
        text = page.read_text()
        assert "<script>alert" not in text and "<img src=x" not in text, page
        assert "&lt;script&gt;alert(1)" in text, page
    assert all(p.parent.name != evil for p in site.rglob("*"))  # file names come from our slugs, never raw

    p = lemonade("site", str(tmp_path / "nothing-here"), "-o", str(tmp_path / "s2"), cwd=tmp_path)
    assert p.returncode == 2 and "no such results file" in p.stderr
    (tmp_path / "not-results.json").write_text('{"hello": 1}')
    p = lemonade("site", str(tmp_path / "not-results.json"), "-o", str(tmp_path / "s3"), cwd=tmp_path)
    assert p.returncode == 2 and "not a results.json" in p.stderr
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "precious.txt").write_text("x")
    p = lemonade("site", str(six_runs[0]), "-o", str(tmp_path / "busy"), cwd=tmp_path)
    assert p.returncode == 2 and "not empty" in p.stderr and (tmp_path / "busy" / "precious.txt").is_file()


def test_client_results_get_their_own_rows_and_history(six_runs, tmp_path):
    """Results of schema version 2 name their subject and role: a client judged against a partner server is
    a subject of its own (its row in the matrix, its history page), apart from the server it talked to."""
    doc = json.loads((six_runs[0] / "results.json").read_text())
    for i, r in enumerate(doc["results"]):
        if i % 2:
            r["subject"], r["role"] = "fetchmail", "client"  # as a client run labels them (partner: dovecot)
    both = tmp_path / "both.json"
    both.write_text(json.dumps(doc))
    site = tmp_path / "site"
    build_site([str(both)], site)
    index = json.loads((site / "site.json").read_text())
    subjects = {(s["name"], s["role"]): s for s in index["subjects"]}
    assert set(subjects) == {("dovecot", "server"), ("fetchmail", "client")}
    assert subjects[("fetchmail", "client")]["history"] == "history/fetchmail-client.html"
    assert {(e["subject"], e["role"], e["target"]) for e in index["latest"]} == {
        ("dovecot", "server", "dovecot"), ("fetchmail", "client", "dovecot")}
    matrix = (site / "matrix.html").read_text()
    assert "fetchmail" in matrix and "client · with dovecot" in matrix
    assert (site / "history" / "fetchmail-client.html").is_file()
