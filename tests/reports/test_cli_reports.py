"""End to end: baselines, diff, merge, escaping and secrets through full `lemonade` runs (real Dovecot, fakes).

Exit codes 0, 1 and 2 are each produced here by the real CLI.
"""

import base64
import json
import xml.etree.ElementTree as ET

from conformance.providers.base import ACCOUNTS as DOVECOT_ACCOUNTS
from tests.fakes.imap import ACCOUNTS as FAKE_ACCOUNTS
from tests.fakes.imap import FakeImapServer, FakeImapSession
from tests.conftest import ROOT
from tests.reports.docs import Hostile

CAPS_CHECKS = "store_capabilities or capability_code_greeting"
STORE_ENTRY = '''
[[expected]]
check = "capability/store_capabilities"
target = "dovecot"
reason = "Dovecot 2.3 advertises neither CONVERT nor CONTEXT=SORT"
rfc = "RFC 5550 section 3.2"
expires = 2099-12-31
'''
FIXED_ENTRY = '''
[[expected]]
requirement = "lemonade.store.capability-code"
target = "dovecot"
reason = "pretend this used to fail: it passes today, so the entry must be removed"
'''


class NoNotify(FakeImapSession):
    capabilities = FakeImapSession.capabilities.replace(" NOTIFY", "")


def test_baseline_turns_the_known_dovecot_failure_into_xfail_exit_0(lemonade):
    b = ROOT / "baselines" / "dovecot-2.3.toml"  # the shipped baseline, version glob included
    run = lemonade("run", "-k", CAPS_CHECKS, "--baseline", str(b))
    assert run.rc == 0, run.out + run.err
    r = run.result("capability/store_capabilities")
    assert r["verdict"] == "xfail" and r["baseline"]["original_verdict"] == "fail" and "CONVERT" in r["message"]
    assert run.results["baseline"]["entries"][0]["status"] == "applied"
    assert run.results["coverage"]["lemonade"]["failed"] == ["lemonade.store.capabilities"]  # coverage stays honest
    html = (run.dir / "index.html").read_text()
    assert "Dovecot 2.3 implements neither CONVERT" in html and 'id="baseline"' in html
    junit = ET.parse(run.dir / "junit.xml").getroot()
    skipped = [tc for tc in junit.iter("testcase") if tc.get("name") == "capability/store_capabilities"][0].find("skipped")
    assert "expected by baseline" in skipped.get("message")


def test_xpass_fails_the_run_exit_1_unless_allowed(lemonade, tmp_path):
    b = tmp_path / "baseline.toml"
    b.write_text(STORE_ENTRY + FIXED_ENTRY)
    run = lemonade("run", "-k", CAPS_CHECKS, "--baseline", str(b))
    assert run.rc == 1, run.out + run.err
    assert run.result("capability/capability_code_greeting_and_login")["verdict"] == "xpass"
    assert run.result("capability/store_capabilities")["verdict"] == "xfail"
    assert "remove the entry" in run.result("capability/capability_code_greeting_and_login")["message"]
    allowed = lemonade("run", "-k", CAPS_CHECKS, "--baseline", str(b), "--allow-xpass")
    assert allowed.rc == 0 and allowed.results["summary"]["verdict"] == "pass", allowed.out
    assert allowed.results["baseline"]["allow_xpass"] is True


def test_bad_baseline_is_a_clear_exit_2_before_anything_starts(lemonade, tmp_path):
    b = tmp_path / "baseline.toml"
    b.write_text('[[expected]]\ncheck = "capability/store_capabilities"\ntarget = "dovecot"\n')
    run = lemonade("run", "--baseline", str(b))
    assert run.rc == 2 and "'reason' is mandatory" in run.err and "Traceback" not in run.err
    assert not (run.dir / "results.json").exists()
    run = lemonade("run", "--baseline", str(tmp_path / "missing.toml"))
    assert run.rc == 2 and "no such file" in run.err


def test_diff_reports_exactly_the_one_regression(lemonade, tmp_path):
    with FakeImapServer(FakeImapSession) as fake:
        good = lemonade("run", "--target", str(fake.target_file(tmp_path)), "-k", "store_capabilities or capability_code")
    with FakeImapServer(NoNotify) as fake:
        bad = lemonade("run", "--target", str(fake.target_file(tmp_path)), "-k", "store_capabilities or capability_code")
    assert good.rc == 0 and bad.rc == 1, good.out + bad.out
    assert len(good.results["results"]) >= 3 and len(good.results["results"]) == len(bad.results["results"])
    html, js = tmp_path / "diff.html", tmp_path / "diff.json"
    d = lemonade("diff", str(good.dir), str(bad.dir), "--html", str(html), "--json", str(js))
    assert d.rc == 1, d.out + d.err
    out = json.loads(js.read_text())
    assert [c["case"] for c in out["regressions"]] == ["capability/store_capabilities|fake|direct"]
    assert "NOTIFY" in out["regressions"][0]["message"]
    assert not out["fixes"] and not out["new"] and not out["removed"] and not out["changed"]
    assert "regressions: 1" in d.out and "capability/store_capabilities|fake|direct" in d.out
    assert "1 regression" in html.read_text()
    back = lemonade("diff", str(bad.dir / "results.json"), str(good.dir))
    assert back.rc == 0 and "fixes: 1" in back.out and "regressions: 0" in back.out
    gone = lemonade("diff", str(good.dir), str(tmp_path / "nowhere"))
    assert gone.rc == 2 and "no such results file" in gone.err


def test_report_rerenders_any_results_file(lemonade, tmp_path):
    with FakeImapServer(FakeImapSession) as fake:
        run = lemonade("run", "--target", str(fake.target_file(tmp_path)), "-k", "store_capabilities")
    (run.dir / "index.html").unlink()
    again = lemonade("report", str(run.dir / "results.json"), "-o", str(tmp_path / "re"))
    assert again.rc == 0 and (tmp_path / "re" / "index.html").is_file() and (tmp_path / "re" / "junit.xml").is_file()
    assert "capability/store_capabilities" in (tmp_path / "re" / "index.html").read_text()


def test_hostile_server_text_is_escaped_through_a_full_run(lemonade, tmp_path):
    with FakeImapServer(Hostile) as fake:
        run = lemonade("run", "--target", str(fake.target_file(tmp_path)), "-k", "store_capabilities or capability_code")
    assert run.rc == 1, run.out + run.err  # NOTIFY is missing: a real failure whose message carries the markup
    assert any("<script>" in e["text"] for r in run.results["results"] for e in r["evidence"]["transcript"])
    html = (run.dir / "index.html").read_text().lower()  # the check upper-cases capabilities in its message
    assert "<script>alert" not in html and "<img" not in html and "</pre><" not in html
    assert html.count("<script") == 1  # the report's own filter script, nothing else
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    root = ET.parse(run.dir / "junit.xml").getroot()  # well-formed despite the markup
    assert any("<script>alert(1)</script>" in (f.get("message") or "").lower() for f in root.iter("failure"))


def _secret_forms(accounts):
    for user, pw in accounts:
        yield pw.encode()
        yield base64.b64encode(pw.encode())
        yield base64.b64encode(f"\0{user}\0{pw}".encode())  # SASL PLAIN initial response
        yield base64.b64encode(f"{user}\0{user}\0{pw}".encode())


def _assert_no_secrets(run_dir, accounts):
    files = [f for f in run_dir.rglob("*") if f.is_file()]
    names = {f.name for f in files}
    assert {"results.json", "junit.xml", "index.html", "run.json"} <= names, names
    assert any(f.suffix == ".jsonl" for f in files), names
    for f in files:
        data = f.read_bytes()
        for form in _secret_forms(accounts):
            assert form not in data, f"{form!r} in {f}"


def test_credentials_never_reach_any_file_of_a_run_with_failures(lemonade, tmp_path):
    run = lemonade("run", "-k", "capabilit")  # LOGIN and AUTHENTICATE PLAIN against real Dovecot; CONVERT fails
    assert run.rc == 1 and run.result("capability/store_capabilities")["verdict"] == "fail", run.out
    assert run.result("capability/capability_code_authenticate")["verdict"] == "pass"
    assert any(f.is_file() for f in (run.dir / "logs").rglob("*")), "the server's own logs are part of the run"
    _assert_no_secrets(run.dir, DOVECOT_ACCOUNTS)
    with FakeImapServer(NoNotify) as fake:
        fake_run = lemonade("run", "--target", str(fake.target_file(tmp_path)), "-k", "store_capabilities or capability_code")
    assert fake_run.rc == 1
    _assert_no_secrets(fake_run.dir, FAKE_ACCOUNTS)
