"""Transport checks against the real embedded Dovecot (secure default and a deliberately weak configuration)
and against scripted fakes whose STARTTLS is injectable; the stripping intermediary on its own."""

from __future__ import annotations

import base64

import pytest

from conformance.intermediaries.addons.strip_starttls import distinct_loopback, strip_capabilities
from conformance.providers.base import ACCOUNTS
from conformance.providers.dovecot import DovecotProvider
from conformance.targets import write_target_file
from tests.fakes.starttls import InjectableServers

TRANSPORT = "test_starttls or test_tls_versions"  # the two check modules of conformance/checks/transport
WEAK = {"ssl": "yes", "disable_plaintext_auth": "no", "ssl_min_protocol": "TLSv1",
        "ssl_cipher_list": "ALL:@SECLEVEL=0"}


def test_strip_capabilities_rewrites_imap_and_smtp_announcements():
    data, removed = strip_capabilities(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED AUTH=PLAIN] hi\r\n")
    assert data == b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] hi\r\n" and set(removed) == {"STARTTLS", "LOGINDISABLED"}
    data, removed = strip_capabilities(b"* CAPABILITY IMAP4rev1 STARTTLS\r\nL1 OK done\r\n")
    assert data == b"* CAPABILITY IMAP4rev1\r\nL1 OK done\r\n"
    data, removed = strip_capabilities(b"250-localhost\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
    assert data == b"250-localhost\r\n250 PIPELINING\r\n" and removed == ["STARTTLS"]
    assert strip_capabilities(b"* 1 FETCH (BODY[] {8}\r\nSTARTTLS)\r\n")[1] == []
    assert distinct_loopback("127.0.0.1") == "127.0.0.2" and distinct_loopback("192.0.2.1") is None


def test_transport_checks_pass_on_secure_default_dovecot(lemonade):
    run = lemonade("run", "-k", TRANSPORT)
    verdicts = run.verdicts()
    assert run.rc == 0, run.out + run.err
    assert len(verdicts) == 17, verdicts
    assert verdicts.pop("transport/certificate_names|direct") == "informational"
    # the embedded target has no implicit-TLS submission port (465): a SHOULD of RFC 8314 3.3, reported
    assert verdicts.pop("transport/submissions_implicit_tls|direct") == "non-strict"
    assert set(verdicts.values()) == {"pass"}, verdicts
    table = run.result("transport/tls_versions_every_endpoint")["evidence"]["tls_versions"]
    assert {r["endpoint"] for r in table} == {"imaps", "imap", "submission"}
    assert all(r["result"].startswith("refused") for r in table if r["offered"] in ("TLSv1", "TLSv1.1"))
    stripped = run.result("transport/imap_stripped_starttls_cleartext_login")["evidence"]["transcript"]
    assert any(e["direction"] == "I" and "removed LOGINDISABLED STARTTLS" in e["text"] for e in stripped)
    assert "PRIVACYREQUIRED" in run.result("transport/imap_stripped_starttls_cleartext_login")["message"]


@pytest.fixture(scope="module")
def weak_dovecot(tmp_path_factory):
    prov = DovecotProvider(settings=WEAK, name="dovecot-weak")
    target = prov.start()
    yield write_target_file(target, tmp_path_factory.mktemp("weak") / "weak.toml")
    prov.stop()


def test_weak_dovecot_fails_with_evidence(lemonade, weak_dovecot):
    run = lemonade("run", "--target", str(weak_dovecot), "-k", "test_starttls or test_tls_versions")
    v = run.verdicts()
    assert run.rc == 1, run.out + run.err
    tls = run.result("transport/tls_versions_every_endpoint")
    assert tls["verdict"] == "fail", tls
    assert "imaps accepted TLSv1" in tls["message"] and "imap accepted TLSv1.1" in tls["message"], tls["message"]
    assert any(r["offered"] == "TLSv1" and r["result"] == "negotiated TLSv1" for r in tls["evidence"]["tls_versions"])
    hygiene = run.result("transport/imap_pre_tls_hygiene")
    assert hygiene["verdict"] == "fail" and "LOGINDISABLED not advertised" in hygiene["message"]
    assert "AUTH=PLAIN" in hygiene["message"]
    strip = run.result("transport/imap_stripped_starttls_cleartext_login")
    assert strip["verdict"] == "fail" and "accepted LOGIN with valid credentials over cleartext" in strip["message"]
    assert v["transport/submission_stripped_starttls_cleartext_auth|strip-starttls"] == "fail"
    assert v["transport/submission_cleartext_auth_refused|direct"] == "fail"
    login = run.result("transport/imap_logindisabled_honoured")
    assert login["verdict"] == "informational" and "was ACCEPTED" in login["message"]
    text = (run.dir / "results.json").read_text()
    assert "Lemonade-pw" not in text, "a password reached the results"
    blob = base64.b64encode(f"\0alice\0{ACCOUNTS[0][1]}".encode()).decode()
    assert blob not in text, "an AUTH PLAIN blob reached the results"


STARTTLS_RULES = ("imap_starttls_injection", "submission_starttls_injection", "imap_starttls_once",
                  "submission_starttls_once", "imap_state_after_starttls", "submission_state_after_starttls",
                  "imap_logindisabled_honoured")


@pytest.mark.parametrize("vulnerable", [True, False])
def test_injectable_fake_fails_the_starttls_checks(lemonade, tmp_path, vulnerable):
    with InjectableServers(vulnerable=vulnerable) as fake:
        run = lemonade("run", "--target", str(fake.target_file(tmp_path)), "-k",
                       "test_starttls and (" + " or ".join(STARTTLS_RULES) + ")")
    results = {name: run.result(f"transport/{name}") for name in STARTTLS_RULES}
    if not vulnerable:
        assert {n: r["verdict"] for n, r in results.items()} == dict.fromkeys(STARTTLS_RULES, "pass"), \
            {n: r["message"] for n, r in results.items()}
        assert run.rc == 0
        return
    expected = {
        "imap_starttls_injection": "'b NOOP') was executed inside TLS",
        "submission_starttls_injection": "NOOP INJECTED",
        "imap_starttls_once": "STARTTLS still advertised after TLS",
        "submission_starttls_once": "STARTTLS still offered after TLS",
        "imap_state_after_starttls": "SELECT right after STARTTLS must fail",
        "submission_state_after_starttls": "MAIL without EHLO after STARTTLS must be refused",
        "imap_logindisabled_honoured": "succeeded in cleartext although LOGINDISABLED is advertised",
    }
    for name, words in expected.items():
        assert results[name]["verdict"] in ("fail", "non-strict") and words in results[name]["message"], \
            (name, results[name]["verdict"], results[name]["message"])
    assert results["imap_starttls_once"]["verdict"] == "non-strict"  # RFC 9051 6.2.1 is a SHOULD NOT
    assert run.rc == 1


def test_preauth_on_cleartext_fails(lemonade, tmp_path):
    from tests.fakes.imap import FakeImapServer
    from tests.fakes.starttls import PreauthPlainSession

    with FakeImapServer(PreauthPlainSession) as fake:
        run = lemonade("run", "--target", str(fake.target_file(tmp_path)), "-k", "no_preauth_on_cleartext")
    r = run.result("transport/no_preauth_on_cleartext")
    # a SHOULD (RFC 9051 7.1.4): non-strict, with the greeting as evidence
    assert r["verdict"] == "non-strict" and "PREAUTH greeting on a cleartext connection" in r["message"], r


def test_received_tls_clause_parser_and_dovecot_omission(lemonade):
    from conformance.checks.transport.wire import received_tls_clause

    msg = (b"Received: from client.test ([192.0.2.1])\r\n\tby mx.test with ESMTPSA\r\n"
           b"\ttls TLS_AES_256_GCM_SHA384; Thu, 1 Jan 2026 00:00:00 +0000\r\nSubject: x\r\n\r\nbody\r\n")
    assert received_tls_clause(msg)[1] == "TLS_AES_256_GCM_SHA384"
    assert received_tls_clause(msg.replace(b"\ttls TLS_AES_256_GCM_SHA384", b"\t"))[1] is None
    run = lemonade("run", "-k", "received_field_names_tls")
    r = run.result("transport/received_field_names_tls")
    # Dovecot 2.3 writes 'with ESMTPSA' but no tls clause: a SHOULD of RFC 8314 4.3 it does not meet
    assert r["verdict"] == "non-strict" and "no 'tls <cipher suite>' clause" in r["message"], r
    assert "ESMTPSA" in r["evidence"]["received"]["field"]


def test_misbehaving_implicit_tls_fake_fails_the_imaps_checks(lemonade, tmp_path):
    from tests.fakes.starttls import PreauthImapsServer

    with PreauthImapsServer() as fake:
        run = lemonade("run", "--target", str(fake.target_file(tmp_path)), "-k",
                       "imaps_greeting or starttls_on_implicit_tls_port")
    greeting = run.result("transport/imaps_greeting_not_authenticated")
    assert greeting["verdict"] == "fail" and "PREAUTH" in greeting["message"], greeting["message"]
    starttls = run.result("transport/starttls_on_implicit_tls_port")
    assert starttls["verdict"] == "fail" and "must get tagged BAD" in starttls["message"], starttls["message"]
    assert run.rc == 1
