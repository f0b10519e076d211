"""`lemonade run` end to end against real and fake servers: files written, verdicts, exit codes, bad input."""

import json
import socket

from conformance.targets import write_target_file
from tests.fakes.imap import FakeImapServer, FakeImapSession


def test_default_run_writes_reports_and_names_missing_capabilities(lemonade):
    run = lemonade("run", "-k", "capabilit or ehlo or burl")
    assert run.rc in (0, 1), run.out + run.err
    for name in ("results.json", "junit.xml", "index.html"):
        assert (run.dir / name).is_file(), name
    doc = run.results
    assert doc["schema_version"] == 2 and doc["run"]["depth"] == "quick"
    assert {"summary", "results", "run"} <= set(doc)
    caps = run.result("capability/store_capabilities")
    # Dovecot 2.3 really lacks CONVERT (and CONTEXT=SORT): a fail whose message names them, CAPABILITY as evidence
    assert caps["verdict"] == "fail" and "CONVERT" in caps["message"] and "CAPABILITY after login" in caps["message"]
    assert any("CAPABILITY" in e["text"] for e in caps["evidence"]["transcript"])
    assert run.result("capability/submission_burl_imap")["verdict"] == "pass"
    assert run.result("capability/capability_code_greeting_and_login")["verdict"] == "pass"
    html = (run.dir / "index.html").read_text()
    assert "capability/store_capabilities" in html and "lemonade" in html


def test_nothing_selected_exits_2(lemonade):
    run = lemonade("run", "-k", "nothing-matches")
    assert run.rc == 2 and "nothing was selected" in run.err


def test_fake_server_missing_one_capability_fails_the_check(lemonade, tmp_path):
    class NoNotify(FakeImapSession):
        capabilities = FakeImapSession.capabilities.replace(" NOTIFY", "")

    with FakeImapServer(NoNotify) as fake:
        run = lemonade("run", "--target", str(fake.target_file(tmp_path)), "-k", "store_capabilities")
    r = run.result("capability/store_capabilities")
    assert r["verdict"] == "fail" and "NOTIFY" in r["message"] and run.rc == 1, run.out


def test_fake_server_with_every_capability_passes(lemonade, tmp_path):
    with FakeImapServer(FakeImapSession) as fake:
        run = lemonade("run", "--target", str(fake.target_file(tmp_path)), "-k", "store_capabilities")
    assert run.result("capability/store_capabilities")["verdict"] == "pass", run.out
    assert run.rc == 0


def test_target_file_against_separately_started_dovecot(lemonade, dovecot, tmp_path):
    f = write_target_file(dovecot, tmp_path / "dovecot.toml")
    run = lemonade("run", "--target", str(f), "-k", "burl or capability_code")
    assert run.rc == 0, run.out + run.err
    assert {r["target"] for r in run.results["results"]} == {"dovecot"}
    assert run.results["run"]["targets"][0]["provider"] == "external"


def test_unreachable_target_is_a_clear_exit_2(lemonade, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    f = tmp_path / "gone.toml"
    f.write_text(f'name = "gone"\n[endpoints]\nimap = "imap://127.0.0.1:{port}"\n'
                 '[[accounts]]\nusername = "a"\npassword = "b"\n')
    run = lemonade("run", "--target", str(f))
    assert run.rc == 2 and "unreachable" in run.err and "Traceback" not in run.err


def test_bad_target_file_is_a_clear_exit_2(lemonade, tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('name = "x"\n[endpoints]\nimap = "imap://127.0.0.1:1"\nflavour = 1\n')
    run = lemonade("run", "--target", str(f))
    assert run.rc == 2 and "bad.toml" in run.err and "Traceback" not in run.err


def test_unknown_scenario_and_profile_exit_2(lemonade):
    assert "unknown intermediary" in lemonade("run", "--scenario", "teleport").err
    run = lemonade("run", "--profile", "nonesuch")
    assert run.rc == 2 and "unknown profile 'nonesuch'" in run.err


def test_passwords_never_in_output_files(lemonade):
    from conformance.providers.base import ACCOUNTS

    run = lemonade("run", "-k", "capability_code or ehlo")
    import base64
    for f in run.dir.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            for _, pw in ACCOUNTS:
                assert pw.encode() not in data, f"password in {f}"
                assert base64.b64encode(pw.encode()) not in data, f"base64 password in {f}"


def test_killed_run_keeps_appended_results(lemonade):
    run = lemonade("run", "-k", "capability_code")
    lines = [json.loads(x) for p in (run.dir / "results.d").glob("*.jsonl") for x in p.read_text().splitlines()]
    assert len(lines) == len(run.results["results"]) >= 2
