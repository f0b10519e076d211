"""Real client programs end to end: `lemonade run --client ...` against the embedded Dovecot (and jmapc against
cyrus-push), through the suite's intermediaries, with the verdicts, the subject/role fields, the report matrix
and the redaction of what real clients send (LOGIN, AUTHENTICATE PLAIN with SASL-IR, Basic)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PASSWORDS = (b"alice-Lemonade-pw1", b"YWxpY2UtTGVtb25hZGUtcHcx")  # and its base64 form
pytestmark = pytest.mark.slow


def no_password_in(run) -> None:
    for f in run.dir.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert not any(p in data for p in PASSWORDS), f"password in {f}"


def test_real_imap_clients_end_to_end(lemonade):
    run = lemonade("run", "--client", "curl", "--client", "fetchmail", "--client", "mbsync", "--client", "imapfilter",
                   "-n", "2", "-k", "fetch_complete or no_credentials_without_tls or resync_cost or push_delivery",
                   "--scenario", "direct", "--scenario", "strip-starttls", timeout=240)
    results = run.results["results"]
    got = {(r["check"], r["subject"], r["scenario"]): r for r in results}
    for client in ("curl", "fetchmail", "mbsync", "imapfilter"):
        r = got[("client/fetch_complete", client, "direct")]
        assert r["verdict"] == "pass" and r["role"] == "client" and r["target"] == "dovecot", r["message"]
        assert r["evidence"]["client_log"] and r["evidence"]["timeline"]["events"]
        assert any(e["direction"] == "C" and e["leg"] == "proxy-server" for e in r["evidence"]["transcript"])
        # STARTTLS stripped: curl (--ssl-reqd), fetchmail (sslproto) and mbsync (SSLType STARTTLS) give up;
        # imapfilter uses STARTTLS only when it is advertised and logs in in cleartext (a real finding)
        s = got[("client/no_credentials_without_tls", client, "strip-starttls")]
        if client == "imapfilter":
            assert s["verdict"] == "fail" and 'LOGIN "alice" <redacted>' in s["message"], s["message"]
            assert any("LOGIN" in line for lines in s["evidence"]["pre_tls"].values() for line in lines)
        else:
            assert s["verdict"] == "pass", s["message"]
            assert not any("LOGIN" in line for lines in s["evidence"]["pre_tls"].values() for line in lines)
    assert got[("client/resync_cost", "curl", "direct")]["verdict"] == "not-applicable"  # curl keeps no sync state
    assert got[("client/resync_cost", "mbsync", "direct")]["verdict"] == "pass"
    assert got[("client/push_delivery", "imapfilter", "direct")]["verdict"] == "pass"
    assert got[("client/push_delivery", "mbsync", "direct")]["verdict"] == "not-applicable"  # no IDLE: exit 127
    assert {c["name"] for c in run.results["run"]["clients"]} == {"curl", "fetchmail", "mbsync", "imapfilter"}
    html = (run.dir / "index.html").read_text()
    assert "Clients under test" in html and "fetchmail" in html
    no_password_in(run)


@pytest.mark.skipif(os.geteuid() != 0, reason="the Cyrus targets need root (master drops to user cyrus)")
@pytest.mark.proves("client/eventsource_reconnect_resume", "sse.reconnect-resume")
def test_jmapc_against_cyrus_push(lemonade, prove):
    """jmapc fetches, is pushed to and resumes its EventSource stream with Last-Event-ID; in the same run a fake that
    reconnects without Last-Event-ID (tests/fakes/clients/fake-sse-forgetful) fails sse.reconnect-resume."""
    forgetful = Path(__file__).resolve().parents[1] / "fakes" / "clients" / "fake-sse-forgetful"
    run = lemonade("run", "--client", "jmapc", "--client", str(forgetful), "--target", "cyrus-push", "-n", "2",
                   "-k", "fetch_complete or push_delivery or eventsource_reconnect_resume", "--scenario", "direct",
                   "--scenario", "read-timeout", timeout=300)
    got = {(r["check"], r["subject"]): r for r in run.results["results"]}
    for check in ("client/fetch_complete", "client/push_delivery", "client/eventsource_reconnect_resume"):
        assert got[(check, "jmapc")]["verdict"] == "pass", got[(check, "jmapc")]["message"]
    prove(got[("client/eventsource_reconnect_resume", "fake-sse-forgetful")], "client/eventsource_reconnect_resume",
          "sse.reconnect-resume", "the client reconnected without Last-Event-ID")
    no_password_in(run)
