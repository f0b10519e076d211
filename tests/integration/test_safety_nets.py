"""Safety nets of a run (issue 20): the per-case time limit stops a hung case as an error showing where it hung
and the run goes on; no string a check writes into a result carries a password out of the process.

The checks here are written for the test, in a temporary folder, and run by the real plugin (with xdist, as
`lemonade run -n 2` does) against the embedded Dovecot; the run is then finalised and rendered by the same
functions `lemonade run` uses.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from conformance.catalog import load_catalog
from conformance.cli import finalize_run
from conformance.plugin.watchdog import CaseTimeout, CaseWatchdog
from conformance.providers.base import ACCOUNTS
from conformance.report import render_all
from tests.conftest import ROOT
from tests.fakes.imap import ACCOUNTS as FAKE_ACCOUNTS
from tests.fakes.imap import FakeImapServer, FakeImapSession

HUNG = '''
import socket
import pytest

@pytest.mark.requirement("lemonade.store.capabilities")
def test_blocks_in_recv(case):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()) as quiet:
            quiet.recv(1)  # nobody ever writes: blocks past every deadline

@pytest.mark.requirement("lemonade.store.capabilities")
def test_spins(case):
    n = 0
    while True:  # a wait loop that never looks at its deadline
        n += 1

@pytest.mark.requirement("lemonade.store.capabilities")
def test_after_the_hung_ones(case):
    case.passed("ran after the hung cases")
'''

LEAKY = '''
import base64
import pytest

@pytest.mark.requirement("lemonade.store.capabilities", "lemonade.store.keywords")
def test_quotes_credentials(case):
    a = case.account(0)
    forms = [a.password, base64.b64encode(a.password.encode()).decode(),
             base64.b64encode(("\\0" + a.username + "\\0" + a.password).encode()).decode(),
             base64.b64encode((a.username + ":" + a.password).encode()).decode()]
    case.measure("login." + a.password, a.password, unit=forms[1], note=" ".join(forms))
    case.attach("leak", {"forms": forms, a.password: forms[2]})
    case.informational("observed " + forms[3], requirement="lemonade.store.keywords")
    case.require("lemonade.store.capabilities", False,
                 f'no complete response to \\'L001 LOGIN "{a.username}" "{a.password}"\\' within the deadline; '
                 + " ".join(forms))

@pytest.mark.requirement("lemonade.store.capabilities")
def test_raises_with_credentials(case):
    a = case.account(1)
    plain = base64.b64encode(("\\0" + a.username + "\\0" + a.password).encode()).decode()
    raise RuntimeError("harness saw AUTHENTICATE PLAIN " + plain + " and " + a.password)
'''


def run_checks(tmp_path, source: str, *options: str):
    """The real plugin over one written check module (two xdist workers), then results.json/junit/html."""
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "test_written.py").write_text(textwrap.dedent(source))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "pytest", str(checks), "-p", "conformance.plugin", "-p", "no:cacheprovider",
           "-p", "xdist", "-n", "2", "--rootdir", str(checks), "-c", os.devnull, "-q",
           "--lemonade-output", str(out), *options]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=240)
    assert p.returncode in (0, 1), p.stdout + p.stderr
    meta = {"id": "written", "profiles": sorted(load_catalog().profiles), "targets": []}
    doc = finalize_run(out, meta, load_catalog(), meta["profiles"])
    render_all(out, doc)
    return p, out, {r["check"].rsplit("/", 1)[-1]: r for r in doc["results"]}


def test_a_case_over_its_time_limit_is_an_error_where_it_hung_and_the_run_goes_on(tmp_path):
    t0 = time.monotonic()
    p, _, results = run_checks(tmp_path, HUNG, "--lemonade-case-timeout", "1.5")
    wall = time.monotonic() - t0
    assert set(results) == {"blocks_in_recv", "spins", "after_the_hung_ones"}, p.stdout + p.stderr
    blocked, spun = results["blocks_in_recv"], results["spins"]
    for r, line in ((blocked, "quiet.recv(1)"), (spun, "in test_spins")):
        assert r["verdict"] == "error", r
        assert "--case-timeout 1.5 s" in r["message"] and "Stack of the case when stopped" in r["message"], r["message"]
        assert line in r["message"], r["message"]  # the stack shows the line where it hung
        assert r["duration_s"] < 10, r["duration_s"]
    assert results["after_the_hung_ones"]["verdict"] == "pass"
    assert wall < 120, wall  # bounded: without the limit this run would never end


def test_no_password_or_encoding_of_one_leaves_in_any_output(tmp_path):
    p, out, results = run_checks(tmp_path, LEAKY)
    leaky, raising = results["quotes_credentials"], results["raises_with_credentials"]
    assert leaky["verdict"] == "fail" and "<redacted>" in leaky["message"], leaky
    assert leaky["requirement_verdicts"]["lemonade.store.keywords"]["verdict"] == "informational"
    assert raising["verdict"] == "error" and "<redacted>" in raising["message"], raising
    files = [f for f in out.rglob("*") if f.is_file() and f.suffix in (".json", ".jsonl", ".xml", ".html")]
    assert {"results.json", "junit.xml", "index.html"} <= {f.name for f in files}
    for user, pw in ACCOUNTS:
        forms = [pw, base64.b64encode(pw.encode()).decode(), base64.b64encode(f"\0{user}\0{pw}".encode()).decode(),
                 base64.b64encode(f"{user}:{pw}".encode()).decode()]
        for f in files:
            text = f.read_text(encoding="utf-8")
            for form in forms:
                assert form not in text, f"{form!r} in {f.name}"
    assert json.loads((out / "results.json").read_text())["results"]


@pytest.mark.timeout(30)
def test_the_limit_also_stops_a_case_running_outside_the_main_thread():
    seen: list[BaseException] = []

    def case_thread() -> None:
        dog = CaseWatchdog(0.3)
        dog.start_case()
        dog.arm("call")
        try:
            while True:
                pass
        except CaseTimeout as e:
            seen.append(e)
        finally:
            dog.disarm("call")

    t = threading.Thread(target=case_thread)
    t.start()
    t.join(20)
    assert not t.is_alive() and seen and "while True" in str(seen[0]), seen


class StallsAtLogin(FakeImapSession):
    def cmd_login(self, tag, args):
        self.server.stopping.wait(30)  # never answers
        return False


def test_deadline_option_sets_how_long_clients_wait_and_is_recorded(lemonade, tmp_path):
    with FakeImapServer(StallsAtLogin) as fake:
        run = lemonade("run", "--target", str(fake.target_file(tmp_path)), "-k", "store_capabilities",
                       "--deadline", "1.5", "--case-timeout", "120")
    r = run.result("capability/store_capabilities")
    assert r["verdict"] == "fail" and "1.5" in r["message"], r["message"]
    assert r["duration_s"] < 8, r["duration_s"]  # the default deadline alone is 10 s
    assert run.results["run"]["deadline_s"] == 1.5 and run.results["run"]["case_timeout_s"] == 120
    for f in ("results.json", "junit.xml", "index.html"):  # the message quotes the LOGIN command, redacted
        text = (run.dir / f).read_text()
        assert all(pw not in text for _, pw in FAKE_ACCOUNTS), f
    bad = lemonade("run", "--deadline", "0")
    assert bad.rc == 2 and "--deadline '0'" in bad.err and "Traceback" not in bad.err
