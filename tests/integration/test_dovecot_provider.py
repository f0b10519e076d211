"""The embedded Dovecot: ready on protocol probes, fast, several at once, clean stop, root and non-root."""

import os
import shutil
import subprocess
import sys

import pytest

from conformance.protocols.imap import ImapConnection
from conformance.providers.dovecot import DovecotProvider
from conformance.transcript import Transcript


def _pids_of(directory: str) -> list[str]:
    out = subprocess.run(["pgrep", "-f", directory], capture_output=True, text=True).stdout.split()
    return out


def test_two_instances_serve_at_once_and_stop_clean():
    a, b = DovecotProvider(), DovecotProvider()
    ta, tb = a.start(), b.start()
    try:
        assert ta.endpoint("imap").port != tb.endpoint("imap").port
        assert a.ready_seconds < 2 and b.ready_seconds < 2, (a.ready_seconds, b.ready_seconds)
        for t in (ta, tb):
            tr = Transcript(secrets=t.secrets())
            ep = t.endpoint("imaps")
            with ImapConnection(ep.host, ep.port, transcript=tr, tls="implicit") as c:
                c.read_greeting()
                acct = t.accounts[1]
                assert c.login(acct.username, acct.password).ok
        dirs = [str(a.dir), str(b.dir)]
    finally:
        a.stop()
        b.stop()
    for d in dirs:
        assert not os.path.exists(d), f"{d} left behind"
        assert not _pids_of(d), f"processes left for {d}"


def test_submission_relays_to_sink(dovecot):
    import smtplib

    from conformance.protocols.imap import insecure_context

    ep = dovecot.endpoint("submission")
    msg = b"From: alice@localhost\r\nTo: bob@localhost\r\nSubject: sink test\r\n\r\nbody line\r\n"
    with smtplib.SMTP(ep.host, ep.port, timeout=10) as s:
        s._host = "localhost"
        s.starttls(context=insecure_context())
        acct = dovecot.accounts[0]
        s.login(acct.username, acct.password)
        s.sendmail("alice@localhost", ["bob@localhost"], msg)
    got = dovecot.sink.wait_for(lambda m: b"sink test" in m.data, 10)
    assert got is not None and got.data.endswith(b"body line\r\n")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to switch to an unprivileged user")
def test_runs_as_unprivileged_user(tmp_path):
    code = ("from conformance.providers.dovecot import DovecotProvider\n"
            "p = DovecotProvider(); t = p.start(); print('READY', round(p.ready_seconds, 3)); p.stop()\n")
    tmp_path.chmod(0o777)
    p = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=60, cwd=str(tmp_path),
                       env=dict(os.environ, HOME=str(tmp_path), PYTHONPATH=os.getcwd()))
    assert "READY" in p.stdout, p.stdout + p.stderr
