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


@pytest.mark.proves("transport/submissions_implicit_tls", "tls.submissions-port")
def test_transport_checks_pass_on_secure_default_dovecot(lemonade, prove):
    run = lemonade("run", "-k", TRANSPORT)
    verdicts = run.verdicts()
    assert run.rc == 0, run.out + run.err
    assert len(verdicts) == 17, verdicts
    # the embedded target's certificate is self-signed and its target file gives no trust anchor (verify = false):
    # its names match, its validity cannot be judged
    cert = run.result("transport/certificate_names")
    assert verdicts.pop("transport/certificate_names|direct") == "not-applicable", cert
    assert "no trust anchor" in cert["message"] and cert["evidence"]["certificate"]["name_matches_host"]
    # the embedded target has no implicit-TLS submission port (465): a SHOULD of RFC 8314 3.3, reported
    prove(run, "transport/submissions_implicit_tls", "tls.submissions-port", "declares no submissions")
    verdicts.pop("transport/submissions_implicit_tls|direct")
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


@pytest.mark.proves("transport/tls_versions_every_endpoint", "tls.min-version")
@pytest.mark.proves("transport/tls_versions_every_endpoint", "mobile.tls.min-version")
@pytest.mark.proves("transport/imap_pre_tls_hygiene", "east.pre-tls-hygiene")
@pytest.mark.proves("transport/imap_pre_tls_hygiene", "tls.cleartext-starttls")
@pytest.mark.proves("transport/imap_stripped_starttls_cleartext_login", "mobile.tls.no-starttls-injection")
@pytest.mark.proves("transport/submission_stripped_starttls_cleartext_auth", "mobile.tls.no-starttls-injection")
@pytest.mark.proves("transport/submission_cleartext_auth_refused", "east.pre-tls-hygiene")
def test_weak_dovecot_fails_with_evidence(lemonade, weak_dovecot, prove):
    run = lemonade("run", "--target", str(weak_dovecot), "-k", "test_starttls or test_tls_versions")
    assert run.rc == 1, run.out + run.err
    tls = prove(run, "transport/tls_versions_every_endpoint", "tls.min-version",
                ["imaps accepted TLSv1", "imap accepted TLSv1.1"])
    prove(run, "transport/tls_versions_every_endpoint", "mobile.tls.min-version", "submission accepted TLSv1")
    assert any(r["offered"] == "TLSv1" and r["result"] == "negotiated TLSv1" for r in tls["evidence"]["tls_versions"])
    prove(run, "transport/imap_pre_tls_hygiene", "east.pre-tls-hygiene",
          ["LOGINDISABLED not advertised", "AUTH=PLAIN"])
    prove(run, "transport/imap_pre_tls_hygiene", "tls.cleartext-starttls", "does not implement LOGINDISABLED")
    prove(run, "transport/imap_stripped_starttls_cleartext_login", "mobile.tls.no-starttls-injection",
          "accepted LOGIN with valid credentials over cleartext")
    prove(run, "transport/submission_stripped_starttls_cleartext_auth", "mobile.tls.no-starttls-injection",
          "accepted AUTH PLAIN with valid credentials over cleartext")
    prove(run, "transport/submission_cleartext_auth_refused", "east.pre-tls-hygiene",
          "AUTH PLAIN with valid credentials succeeded before TLS")
    # a configuration that accepts cleartext LOGIN without announcing LOGINDISABLED is outside both rules of the
    # LOGINDISABLED check (the hygiene check above fails it): not-applicable, never informational
    login = run.result("transport/imap_logindisabled_honoured")
    assert login["verdict"] == "not-applicable" and "was ACCEPTED" in login["message"], login
    assert {v["verdict"] for v in login["requirement_verdicts"].values()} == {"not-applicable"}
    text = (run.dir / "results.json").read_text()
    assert "Lemonade-pw" not in text, "a password reached the results"
    blob = base64.b64encode(f"\0alice\0{ACCOUNTS[0][1]}".encode()).decode()
    assert blob not in text, "an AUTH PLAIN blob reached the results"


STARTTLS_RULES = ("imap_starttls_injection", "submission_starttls_injection", "imap_starttls_once",
                  "submission_starttls_once", "imap_state_after_starttls", "submission_state_after_starttls",
                  "imap_logindisabled_honoured", "imap_stripped_starttls_cleartext_login")


def _starttls_run(lemonade, tmp_path, vulnerable, rules=STARTTLS_RULES):
    with InjectableServers(vulnerable=vulnerable) as fake:
        return lemonade("run", "--target", str(fake.target_file(tmp_path)), "-k",
                        "test_starttls and (" + " or ".join(rules) + ")")


def test_correct_fake_passes_the_starttls_checks(lemonade, tmp_path):
    run = _starttls_run(lemonade, tmp_path, False)
    results = {name: run.result(f"transport/{name}") for name in STARTTLS_RULES}
    assert {n: r["verdict"] for n, r in results.items()} == dict.fromkeys(STARTTLS_RULES, "pass"), \
        {n: r["message"] for n, r in results.items()}
    assert run.rc == 0


@pytest.mark.proves("transport/imap_starttls_injection", "tls.starttls-injection")
@pytest.mark.proves("transport/submission_starttls_injection", "tls.starttls-injection")
@pytest.mark.proves("transport/imap_starttls_once", "tls.starttls-once")
@pytest.mark.proves("transport/submission_starttls_once", "tls.smtp-starttls-once")
@pytest.mark.proves("transport/imap_state_after_starttls", "tls.state-after-starttls")
@pytest.mark.proves("transport/submission_state_after_starttls", "tls.state-after-starttls")
@pytest.mark.proves("transport/imap_logindisabled_honoured", "tls.logindisabled")
@pytest.mark.proves("transport/imap_stripped_starttls_cleartext_login", "tls.logindisabled")
def test_injectable_fake_fails_the_starttls_checks(lemonade, tmp_path, prove):
    run = _starttls_run(lemonade, tmp_path, True)
    expected = {
        ("imap_starttls_injection", "tls.starttls-injection"): "'b NOOP') was executed inside TLS",
        ("submission_starttls_injection", "tls.starttls-injection"): "NOOP INJECTED",
        ("imap_starttls_once", "tls.starttls-once"): "STARTTLS still advertised after TLS",  # a SHOULD: non-strict
        ("submission_starttls_once", "tls.smtp-starttls-once"): "STARTTLS still offered after TLS",
        ("imap_state_after_starttls", "tls.state-after-starttls"): "SELECT right after STARTTLS must fail",
        ("submission_state_after_starttls", "tls.state-after-starttls"): "MAIL without EHLO after STARTTLS must be refused",
        ("imap_logindisabled_honoured", "tls.logindisabled"): "succeeded in cleartext although LOGINDISABLED is advertised",
        ("imap_stripped_starttls_cleartext_login", "tls.logindisabled"): "although the server announced LOGINDISABLED",
    }
    for (name, rid), words in expected.items():
        prove(run, f"transport/{name}", rid, words)
    assert run.result("transport/imap_starttls_once")["verdict"] == "non-strict"
    assert run.rc == 1


@pytest.mark.proves("transport/imap_starttls_injection", "mobile.tls.no-starttls-injection")
@pytest.mark.proves("transport/submission_starttls_injection", "mobile.tls.no-starttls-injection")
def test_injected_command_answered_in_cleartext_after_the_ok_fails(lemonade, tmp_path, prove):
    """The server runs the injected command in cleartext and answers it in a segment of its own after the OK: the
    client's TLS handshake then fails on that answer, which used to count as a pass."""
    run = _starttls_run(lemonade, tmp_path, "cleartext", ("imap_starttls_injection", "submission_starttls_injection"))
    for name, words in (("imap_starttls_injection", ["'b NOOP' was executed in cleartext", "b OK NOOP"]),
                        ("submission_starttls_injection", ["'NOOP INJECTED' was executed in cleartext", "250 2.0.0"])):
        r = prove(run, f"transport/{name}", "mobile.tls.no-starttls-injection", words)
        assert r["requirement_verdicts"]["tls.starttls-injection"]["verdict"] == "fail"
        notes = [e["text"] for e in r["evidence"]["transcript"] if "TLS handshake failed" in e["text"]]
        assert notes, "the failed handshake is in the evidence"
    assert run.rc == 1


@pytest.mark.proves("transport/imap_logindisabled_honoured", "tls.cleartext-auth-denial")
@pytest.mark.proves("transport/submission_cleartext_auth_refused", "tls.cleartext-auth-denial")
@pytest.mark.proves("transport/submission_stripped_starttls_cleartext_auth", "tls.cleartext-auth-denial")
def test_denials_that_tell_a_valid_password_from_a_wrong_one_fail(lemonade, tmp_path, prove):
    """The cleartext denial of a valid password differs from that of a wrong one: the reply confirms the password."""
    with InjectableServers(vulnerable="leaky") as fake:
        run = lemonade("run", "--target", str(fake.target_file(tmp_path)), "-k",
                       "imap_logindisabled_honoured or submission_cleartext_auth_refused "
                       "or submission_stripped_starttls_cleartext_auth")
    for check, words in (("imap_logindisabled_honoured", "NO [AUTHENTICATIONFAILED] wrong password"),
                         ("submission_cleartext_auth_refused", "535 5.7.8 wrong password"),
                         ("submission_stripped_starttls_cleartext_auth", "535 5.7.8 wrong password")):
        r = prove(run, f"transport/{check}", "tls.cleartext-auth-denial",
                  ["valid and invalid credentials get different cleartext denials", words])
        assert {rid: v["verdict"] for rid, v in r["requirement_verdicts"].items()
                if rid != "tls.cleartext-auth-denial"} == dict.fromkeys(set(r["requirements"]) - {
                    "tls.cleartext-auth-denial"}, "pass"), r["requirement_verdicts"]


@pytest.mark.proves("transport/no_preauth_on_cleartext", "tls.preauth-only-tls")
def test_preauth_on_cleartext_fails(lemonade, tmp_path, prove):
    from tests.fakes.imap import FakeImapServer
    from tests.fakes.starttls import PreauthPlainSession

    with FakeImapServer(PreauthPlainSession) as fake:
        run = lemonade("run", "--target", str(fake.target_file(tmp_path)), "-k", "no_preauth_on_cleartext")
    # a SHOULD (RFC 9051 7.1.4): non-strict, with the greeting as evidence
    prove(run, "transport/no_preauth_on_cleartext", "tls.preauth-only-tls", "PREAUTH greeting on a cleartext connection")


@pytest.mark.proves("transport/received_field_names_tls", "tls.received-clause")
def test_received_tls_clause_parser_and_dovecot_omission(lemonade, prove):
    from conformance.checks.transport.wire import received_tls_clause

    msg = (b"Received: from client.test ([192.0.2.1])\r\n\tby mx.test with ESMTPSA\r\n"
           b"\ttls TLS_AES_256_GCM_SHA384; Thu, 1 Jan 2026 00:00:00 +0000\r\nSubject: x\r\n\r\nbody\r\n")
    assert received_tls_clause(msg)[1] == "TLS_AES_256_GCM_SHA384"
    assert received_tls_clause(msg.replace(b"\ttls TLS_AES_256_GCM_SHA384", b"\t"))[1] is None
    run = lemonade("run", "-k", "received_field_names_tls")
    # Dovecot 2.3 writes 'with ESMTPSA' but no tls clause: a SHOULD of RFC 8314 4.3 it does not meet
    r = prove(run, "transport/received_field_names_tls", "tls.received-clause", "no 'tls <cipher suite>' clause")
    assert "ESMTPSA" in r["evidence"]["received"]["field"]


@pytest.mark.proves("transport/imaps_greeting_not_authenticated", "tls.implicit-tls-ports")
@pytest.mark.proves("transport/starttls_on_implicit_tls_port", "tls.starttls-bad-on-implicit")
def test_misbehaving_implicit_tls_fake_fails_the_imaps_checks(lemonade, tmp_path, prove):
    from tests.fakes.starttls import PreauthImapsServer

    with PreauthImapsServer() as fake:
        run = lemonade("run", "--target", str(fake.target_file(tmp_path)), "-k",
                       "imaps_greeting or starttls_on_implicit_tls_port")
    prove(run, "transport/imaps_greeting_not_authenticated", "tls.implicit-tls-ports", "PREAUTH")
    prove(run, "transport/starttls_on_implicit_tls_port", "tls.starttls-bad-on-implicit", "must get tagged BAD")
    assert run.rc == 1


@pytest.mark.proves("transport/certificate_names", "tls.cert-identity")
def test_certificate_that_does_not_name_the_host_fails(lemonade, tmp_path, prove):
    """A certificate for mail.other.example presented to a client that connects to localhost fails; the same fake
    with its certificate as the target's trust anchor, reached by an address the certificate names, passes."""
    from tests.fakes.starttls import ImapsSession, PreauthImapsServer

    with (PreauthImapsServer(ImapsSession, names=("mail.other.example",), host="localhost") as wrong,
          PreauthImapsServer(ImapsSession, names=("mail.other.example",)) as right):
        run = lemonade("run", "--target", str(wrong.target_file(tmp_path, name="wrong-name")),
                       "--target", str(right.target_file(tmp_path, name="trusted", trust_own_certificate=True)),
                       "-k", "certificate_names")
    prove(run, "transport/certificate_names", "tls.cert-identity",
          ["does not name the host localhost", "mail.other.example"], target="wrong-name")
    trusted = run.result("transport/certificate_names") if False else next(
        r for r in run.results["results"] if r["target"] == "trusted")
    assert trusted["verdict"] == "pass" and "validates for 127.0.0.1" in trusted["message"], trusted
