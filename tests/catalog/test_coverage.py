"""Coverage per profile: every requirement lands in exactly one bucket, and "no check" is never a pass."""

from conformance.catalog import load_catalog
from conformance.coverage import BUCKETS, coverage_for, status


def test_status_buckets():
    assert status([], has_check=False, untestable=False) == "untested"
    assert status([], has_check=True, untestable=True) == "untestable"
    assert status([], has_check=True, untestable=False) == "not_run"
    assert status(["pass", "fail"], True, False) == "failed"
    assert status(["pass", "error"], True, False) == "error"
    assert status(["pass", "non-strict"], True, False) == "non_strict"
    assert status(["xfail"], True, False) == "known_failure"
    assert status(["pass", "not-applicable"], True, False) == "verified"
    assert status(["informational"], True, False) == "informational"  # observed, no rule judged: never verified
    assert status(["informational", "pass"], True, False) == "verified"
    assert status(["not-applicable", "not-applicable"], True, False) == "not_applicable"
    assert status(["skipped"], True, False) == "skipped"


def test_coverage_for_a_profile():
    cat = load_catalog()
    by_req = {"lemonade.store.keywords": ["capability/k"], "lemonade.store.url-partial": ["capability/u"],
              "esearch.count-always": ["capability/e"], "context.update-order": ["capability/c"]}
    results = [{"requirements": ["lemonade.store.keywords"], "verdict": "pass"},
               {"requirements": ["lemonade.store.url-partial"], "verdict": "fail"},
               {"requirements": ["esearch.count-always"], "verdict": "not-applicable"}]
    cov = coverage_for(cat, ["lemonade"], results, by_req)["lemonade"]
    assert cov["verified"] == ["lemonade.store.keywords"] and cov["failed"] == ["lemonade.store.url-partial"]
    assert cov["not_applicable"] == ["esearch.count-always"] and cov["not_run"] == ["context.update-order"]
    assert "lemonade.mda.sieve-extensions" in cov["untestable"] and "qresync.enable" in cov["untested"]
    assert sum(len(cov[b]) for b in BUCKETS) == cov["total"] == len(cat.profiles["lemonade"].ids)
    assert cov["covered"] == 4 and sum(cov["levels"].values()) == cov["total"]
    rows = {r["id"]: r for r in cov["requirements"]}
    assert rows["lemonade.store.url-partial"]["status"] == "failed"
    assert rows["lemonade.store.url-partial"]["checks"] == ["capability/u"]
