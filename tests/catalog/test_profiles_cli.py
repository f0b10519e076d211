"""`lemonade profiles list|show`: plain text when piped, rich tables in a terminal, JSON for machines."""

import json

import pytest
from rich.console import Console

from conformance.catalog import load_catalog
from conformance.coverage import checks_by_requirement
from conformance.profiles_cli import list_rows, render_list_rich, render_show_rich, show_rows


def test_list_plain_when_piped(lemonade):
    run = lemonade("profiles", "list")
    assert run.rc == 0, run.err
    lines = run.out.splitlines()
    assert lines[0].split()[:5] == ["profile", "requirements", "covered", "untested", "untestable"]
    rows = {line.split()[0]: line.split() for line in lines[1:-1]}
    cat = load_catalog()
    assert set(rows) == set(cat.profiles)
    assert int(rows["lemonade"][1]) == len(cat.profiles["lemonade"].ids)
    assert int(rows["lemonade"][2]) >= 10  # the capability checks cover at least ten lemonade requirements
    assert lines[-1] == f"catalog: {len(cat.requirements)} requirements"
    assert "\x1b[" not in run.out and "┃" not in run.out  # no colour or box drawing in a pipe


def test_list_json(lemonade):
    run = lemonade("profiles", "list", "--format", "json")
    doc = json.loads(run.out)
    rows = {r["name"]: r for r in doc["profiles"]}
    lem = rows["lemonade"]
    assert lem["requirements"] == lem["covered"] + lem["untested"] + lem["untestable"]
    assert sum(lem["levels"].values()) == lem["requirements"]
    assert doc["requirements_total"] >= 100


def test_show_plain_lists_every_requirement_with_checks_or_untested(lemonade):
    run = lemonade("profiles", "show", "lemonade")
    assert run.rc == 0, run.err
    lines = run.out.splitlines()
    assert lines[0].startswith("lemonade: RFC 5550") and lines[1].split() == ["id", "level", "source", "family",
                                                                            "covering", "checks"]
    body = {line.split()[0]: line for line in lines[2:-1]}
    assert set(body) == set(load_catalog().profiles["lemonade"].ids)
    assert "capability/lemonade_keywords_stored_copied_searchable" in body["lemonade.store.keywords"]
    assert "RFC 5550 §5.9" in body["lemonade.store.keywords"] and " MUST " in body["lemonade.store.keywords"]
    assert body["lemonade.submit.size-after-burl"].rstrip().endswith("envelope/submission_size_after_burl")
    assert "untestable: " in body["lemonade.mda.sieve-extensions"]


def test_show_plain_marks_untested_requirements(lemonade):
    """A requirement no check names reads 'untested' (found from the checks' markers, whichever profile has one)."""
    catalog, covered = load_catalog(), checks_by_requirement()
    untested = [(p.name, rid) for p in catalog.profiles.values() for rid in p.ids
                if rid not in covered and not catalog.requirements[rid].untestable]
    if not untested:
        pytest.skip("every requirement of every profile has a check or is untestable")
    profile, rid = untested[0]
    lines = lemonade("profiles", "show", profile).out.splitlines()
    assert next(line for line in lines if line.startswith(rid + " ")).rstrip().endswith("untested")


def test_show_json_and_unknown_profile(lemonade):
    doc = json.loads(lemonade("profiles", "show", "mobile-intermediary", "--format", "json").out)
    rows = {r["id"]: r for r in doc["requirements"]}
    assert rows["mobile.push.survives-idle-timeout"]["level"] == "PROFILE"
    assert rows["mobile.push.survives-idle-timeout"]["parameters"]["idle_timeout"]["quick"] == 3
    assert rows["mobile.push.survives-idle-timeout"]["source"].startswith("derived: ")
    bad = lemonade("profiles", "show", "nonesuch")
    assert bad.rc == 2 and "unknown profile 'nonesuch'" in bad.err and "Traceback" not in bad.err


def test_rich_tables_in_a_terminal():
    cat = load_catalog()
    by_req = checks_by_requirement()
    con = Console(record=True, width=220, force_terminal=True)
    render_list_rich(con, list_rows(cat, by_req), len(cat.requirements))
    render_show_rich(con, "lemonade", cat.profiles["lemonade"].title, show_rows(cat, "lemonade", by_req))
    text = con.export_text()
    assert "┃ profile" in text and "covered by checks" in text and "mobile-intermediary" in text
    assert "lemonade.store.keywords" in text and "untested" in text and "untestable" in text
