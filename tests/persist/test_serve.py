"""`lemonade serve` with the embedded Dovecot: its output is a target file `--target FILE` reads, behind a scenario the
clients go through the emulated NAT (whose actions are printed as they happen), bad input is exit 2 before anything
starts, and SIGTERM stops everything it started."""

from __future__ import annotations

import socket
import ssl
import time
import tomllib

from conformance.protocols.imap import ImapConnection
from conformance.serve import READY, target_toml
from conformance.targets import Account, Endpoint, Target, TlsPolicy, load_target_file
from conformance.transcript import Transcript
from tests.persist.serving import lemonade_serve


def test_target_toml_is_a_target_file(tmp_path):
    t = Target('we"ird', {"imap": Endpoint("imap", "imap", "::1", 143), "jmap": Endpoint("jmap", "https", "h", 8443)},
               [Account("alice", 'p"w\\x')], tls=TlsPolicy(verify=False), version="1.0")
    p = tmp_path / "t.toml"
    p.write_text(target_toml(t))
    back = load_target_file(p)
    assert back.name == 'we"ird' and back.accounts[0].password == 'p"w\\x' and back.endpoints["imap"].host == "::1"
    assert back.endpoints["jmap"].url == "https://h:8443" and back.tls.verify is False


def test_bad_input_is_exit_2_before_anything_starts(lemonade):
    run = lemonade("serve", "--target", "no-such-server", timeout=60)
    assert run.rc == 2 and "unknown target 'no-such-server'" in run.err, run.err
    run = lemonade("serve", "--target", "dovecot", "--scenario", "nat-idle:timeout=soon", timeout=60)
    assert run.rc == 2 and "timeout" in run.err and READY not in run.out, run.err


def test_dovecot_behind_an_emulated_nat_for_your_own_client(tmp_path):
    with lemonade_serve(tmp_path, "--target", "dovecot", "--scenario", "nat-idle:timeout=1,mode=rst",
                        name="dovecot-nat") as served:
        out = served.text
        assert tomllib.loads(out) == tomllib.loads(served.target_file.read_text()), "stdout is the target file"
        assert oct(served.target_file.stat().st_mode & 0o777) == "0o600"
        target = served.target
        assert "nat-idle" in target.name and set(target.endpoints) >= {"imap", "imaps", "submission"}
        ep = target.endpoint("imap")
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        conn = ImapConnection(ep.host, ep.port, transcript=Transcript(secrets={target.accounts[0].password}),
                              tls="none", ssl_context=ctx, timeout=10, label="my-client")
        conn.read_greeting()
        assert conn.starttls(ctx).ok and conn.login(target.accounts[0].username, target.accounts[0].password).ok
        deadline = time.monotonic() + 15  # the emulated NAT drops the idle connection after 1 s and says so
        while "without traffic" not in served.stderr() and time.monotonic() < deadline:
            time.sleep(0.2)
        conn.close()
        assert "nat-idle: " in served.stderr() and "closed with RST" in served.stderr(), served.stderr()
    assert served.returncode == 0 and "stopped" in served.stderr()
    with socket.socket() as s:  # the path's listener is gone with serve
        assert s.connect_ex((ep.host, ep.port)) != 0
