"""The report as a reader sees it: real runs (two scenarios, then a second Dovecot run), merged, opened in
headless Chromium (Debian's package, driven by Playwright; never a downloaded browser).

Screenshots go to tests/artifacts/ (git-ignored) for a human to look at.
"""

import json
import os
from pathlib import Path

import pytest

from conformance.schema import validate_results
from tests.fakes.imap import FakeImapServer
from tests.reports.docs import Hostile

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = os.environ.get("LEMONADE_CHROMIUM", "/usr/bin/chromium")
CHECKS = "store_capabilities or capability_code"


@pytest.fixture
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is missing: run scripts/setup.sh (installs the [test] extra)")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/setup.sh as root (installs scripts/apt.d/reports.txt)")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def open_page(browser, path: Path, **context):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, **context)
    page = ctx.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("dialog", lambda d: (problems.append(f"dialog opened: {d.message}"), d.dismiss()))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, problems


def shoot(page, selector: str, name: str) -> None:
    """A full-page screenshot clipped to one element (the sticky navigation bar stays at the top)."""
    box = page.locator(selector).first.bounding_box()
    scroll = page.evaluate("[window.scrollX, window.scrollY]")
    clip = {"x": box["x"] + scroll[0], "y": box["y"] + scroll[1], "width": box["width"], "height": min(box["height"], 4000)}
    page.screenshot(path=str(ARTIFACTS / name), full_page=True, clip=clip)


def visible_cards(page) -> list[dict]:
    return page.eval_on_selector_all(
        "article.result", "els => els.filter(e => e.offsetParent !== null).map(e => "
                          "({v: e.dataset.verdict, t: e.dataset.text}))")


def test_two_scenarios_merged_with_a_second_dovecot_run_read_in_chromium(lemonade, tmp_path, browser):
    first = lemonade("run", "-k", CHECKS, "--scenario", "direct", "--scenario", "kill")
    second = lemonade("run", "-k", CHECKS, "--scenario", "direct", "--scenario", "nat-idle:timeout=30")
    # Dovecot 2.3 really lacks CONVERT and CONTEXT=SORT: each run fails that one check, exit 1
    assert first.rc == 1 and second.rc == 1, first.out + second.out
    merged_dir = tmp_path / "merged"
    merged = lemonade("merge", str(first.dir), str(second.dir), "-o", str(merged_dir))
    assert merged.rc == 1, merged.out + merged.err
    doc = json.loads((merged_dir / "results.json").read_text())
    assert validate_results(doc) == []
    second_name = f"dovecot@{second.dir.name}"  # the same server twice: kept apart, never overwritten
    assert {r["target"] for r in doc["results"]} == {"dovecot", second_name}
    assert {(r["target"], r["scenario"].split(":")[0]) for r in doc["results"]} == {
        ("dovecot", "direct"), ("dovecot", "kill"), (second_name, "direct"), (second_name, "nat-idle")}
    assert len(doc["results"]) == len(first.results["results"]) + len(second.results["results"])

    page, problems = open_page(browser, merged_dir / "index.html")
    page.screenshot(path=str(ARTIFACTS / "report-merged-top.png"))
    matrix = page.locator("#matrix table.matrix")
    assert matrix.is_visible()
    headers = page.locator("#matrix th.tgt").all_inner_texts()
    assert headers == ["dovecot", second_name]
    assert page.locator("#matrix th.scn").count() == 4
    row = page.locator("#matrix tbody tr", has_text="lemonade.store.capabilities")
    assert row.locator("td.cell .verdict.fail").count() == 4 and "fail 4" in row.locator("td.tally").inner_text()
    shoot(page, "#matrix", "report-merged-matrix.png")

    # a matrix cell links to its evidence
    row.locator("td.cell a").first.click()
    target = page.evaluate("location.hash").lstrip("#")
    assert page.locator(f"article#{target}").is_visible()
    assert "CONVERT" in page.locator(f"article#{target} .message").inner_text()

    # the filter: verdict boxes and text
    total = page.locator("article.result").count()
    assert len(visible_cards(page)) == total == len(doc["results"])
    page.locator("#filters input[value=pass]").uncheck()
    shown = visible_cards(page)
    assert shown and all(c["v"] == "fail" for c in shown) and len(shown) == sum(r["verdict"] == "fail" for r in doc["results"])
    page.locator("#filters input[value=pass]").check()
    page.locator("#filter-text").fill("kill")
    shown = visible_cards(page)
    assert shown and all("kill" in c["t"] for c in shown) and len(shown) == sum(r["scenario"] == "kill" for r in doc["results"])
    assert f"{len(shown)} of {total} shown" == page.locator("#filter-count").inner_text()
    shoot(page, "#results", "report-merged-results-filtered.png")
    assert problems == []

    # without JavaScript everything is still there and readable; the filter bar is hidden
    page, problems = open_page(browser, merged_dir / "index.html", java_script_enabled=False)
    assert page.locator("article.result").first.is_visible() and not page.locator("#filters").is_visible()
    assert page.locator("#matrix").is_visible()
    assert problems == []


def test_hostile_report_runs_no_script_in_chromium(lemonade, tmp_path, browser):
    with FakeImapServer(Hostile) as fake:
        run = lemonade("run", "--target", str(fake.target_file(tmp_path)), "-k", "store_capabilities or capability_code")
    assert run.rc == 1
    page, problems = open_page(browser, run.dir / "index.html")
    page.locator("article.result.v-fail details summary").first.click()
    assert page.locator("img").count() == 0  # the server's <img onerror=...> is text, not an element
    assert "<script>alert(1)</script>" in page.locator("article.result.v-fail .message").first.inner_text().lower()
    page.screenshot(path=str(ARTIFACTS / "report-hostile.png"), full_page=False)
    assert problems == [], problems
