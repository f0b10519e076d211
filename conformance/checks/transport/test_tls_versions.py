"""TLS versions and certificates on every TLS endpoint (RFC 8314 4, RFC 8996): 1.2 and 1.3 yes, 1.0 and 1.1 never.

Each handshake is pinned to one version; for 1.0 and 1.1 the client first proves that its own TLS library can
still offer them (OpenSSL 3 needs security level 0), so a refusal is the server's. Endpoints: imaps (implicit
TLS), imap after STARTTLS, submission after STARTTLS, submissions when the target has it.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl

import pytest

from conformance.errors import ConformanceFailure, HarnessError, NotApplicable
from conformance.protocols.connection import CapturedConnection
from conformance.protocols.imap import ImapConnection
from conformance.protocols.imapwire import parse_capabilities
from conformance.protocols.tls import insecure_context

from .wire import GOOD_VERSIONS, OLD_VERSIONS, VERSIONS, SmtpLine, client_can_offer, ehlo_keywords, pinned_context


def _imap_upgrade(case, sock: socket.socket, label: str) -> None:
    """Greeting, CAPABILITY and STARTTLS on a raw socket, recorded; leaves the socket ready for the handshake."""
    imap = ImapConnection.over(sock, transcript=case.transcript, label=label, leg=case.path.leg, timeout=case.deadline)
    greeting = imap.read_greeting()
    caps = parse_capabilities(greeting.text) or imap.capability()
    if "STARTTLS" not in caps:
        raise NotApplicable("the cleartext IMAP port does not advertise STARTTLS")
    res = imap.command("STARTTLS")
    if not res.ok:
        raise NotApplicable(f"STARTTLS refused: {res.tagged.first_line}")


def _smtp_upgrade(case, sock: socket.socket, label: str) -> None:
    smtp = SmtpLine.over(sock, transcript=case.transcript, label=label, leg=case.path.leg, timeout=case.deadline)
    assert smtp.reply().code == 220, "no 220 greeting from submission"
    if "STARTTLS" not in ehlo_keywords(smtp.command("EHLO client.test")):
        raise NotApplicable("submission does not advertise STARTTLS")
    res = smtp.command("STARTTLS")
    if res.code != 220:
        raise NotApplicable(f"STARTTLS refused: {res.text}")


UPGRADES = {"imaps": None, "imap": _imap_upgrade, "submission": _smtp_upgrade, "submissions": None, "jmap": None}


def handshake(case, endpoint: str, version: str) -> tuple[str | None, str]:
    """(negotiated version or None, what happened) for one pinned handshake on ``endpoint``."""
    label = f"{endpoint}-{version}"
    sock = case.path.open(endpoint)
    case.on_cleanup(sock.close)
    sock.settimeout(10)
    case.transcript.add(case.path.leg, "N", f"connected; handshake pinned to {version}", conn=label)
    upgrade = UPGRADES[endpoint]
    if upgrade:
        upgrade(case, sock, label)
    try:
        tls = pinned_context(version).wrap_socket(sock, server_hostname="localhost")
    except ssl.SSLError as e:
        case.transcript.add(case.path.leg, "N", f"{version} handshake refused: {e.reason or e}", conn=label)
        return None, f"refused ({e.reason or e})"
    except OSError as e:
        case.transcript.add(case.path.leg, "N", f"{version} handshake ended by the peer: {e}", conn=label)
        return None, f"connection ended during the handshake ({e})"
    got = tls.version()
    case.transcript.add(case.path.leg, "N", f"{version} handshake completed: {got} {tls.cipher()[0]}", conn=label)
    tls.close()
    return got, f"negotiated {got}"


def _endpoints(case) -> list[str]:
    """The target's TLS endpoints the scenario carries: implicit TLS, STARTTLS upgrades, and JMAP over https."""
    out = [e for e in ("imaps", "imap", "submission", "submissions") if case.target.endpoint(e) is not None
           and case.scenario.supports(e)]
    jmap = case.target.endpoint("jmap")
    if jmap is not None and jmap.scheme == "https" and case.scenario.supports("jmap"):
        out.append("jmap")
    return out


@pytest.mark.requirement("tls.min-version", "mobile.tls.min-version")
@pytest.mark.uses("imap", "imaps", "submission")
def test_tls_versions_every_endpoint(case):
    """TLS 1.0 and 1.1 are refused and TLS 1.2 and 1.3 accepted on every TLS endpoint (JMAP over https included) and
    after every STARTTLS. The mobile profile restates the same rule: one judgement serves both requirements."""
    for v in OLD_VERSIONS:
        why = client_can_offer(v)
        if why:
            raise HarnessError(f"cannot test {v} refusal: {why}")
    table: list[dict] = []
    problems: list[str] = []
    for ep in _endpoints(case):
        for v in VERSIONS:
            try:
                got, what = handshake(case, ep, v)
            except NotApplicable as e:
                table.append({"endpoint": ep, "offered": v, "result": f"not applicable: {e}"})
                break
            table.append({"endpoint": ep, "offered": v, "result": what})
            if v in OLD_VERSIONS and got is not None:
                problems.append(f"{ep} accepted {got}")
            if v in GOOD_VERSIONS and got is None:
                problems.append(f"{ep} refused {v}: {what}")
    case.attach("tls_versions", table)
    case.measure("handshakes", len(table), "")
    assert not problems, ("TLS version policy violated: " + "; ".join(problems)
                          + " (1.0/1.1 must be refused, 1.2/1.3 accepted; see the tls_versions table)")
    eps = sorted({r["endpoint"] for r in table if not r["result"].startswith("not applicable")})
    case.passed(f"1.0/1.1 refused, 1.2/1.3 accepted on {', '.join(eps)}")


def name_matches(host: str, dns: list[str], ips: list[str]) -> bool:
    """Does a certificate with these SAN entries name ``host`` (RFC 6125 6.4, as RFC 7817 3 asks of mail clients: an
    IP address only as an iPAddress entry; a wildcard only as the whole left-most label, matching one label)?"""
    try:
        ipaddress.ip_address(host)
        return host in ips
    except ValueError:
        pass
    want = host.lower().rstrip(".").split(".")
    for name in dns:
        labels = name.lower().rstrip(".").split(".")
        if len(labels) != len(want):
            continue
        if labels == want or (labels[0] == "*" and len(labels) > 2 and labels[1:] == want[1:]):
            return True
    return False


@pytest.mark.requirement("tls.cert-identity")
@pytest.mark.uses("imaps")
def test_certificate_names(case):
    """The imaps certificate names the target's host (a DNS-ID, or an iPAddress for an address) and, when the target
    file gives a trust anchor (``[tls] verify`` or ``ca_file``), validates against it for that host.

    Without a trust anchor (``verify = false``) the certificate's validity cannot be judged: the requirement is
    not-applicable, with its names as evidence; a certificate that does not name the host fails either way.
    """
    host = case.target.endpoint("imaps").host
    conn = CapturedConnection(case.path.open("imaps"), transcript=case.transcript, label="imaps-certificate",
                              leg=case.path.leg, timeout=case.deadline)
    case.on_cleanup(conn.close)
    conn.start_tls(insecure_context(), server_hostname=host)
    der = conn.sock.getpeercert(binary_form=True)
    conn.close()
    if not der:
        raise ConformanceFailure("the imaps endpoint presented no certificate")
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = san.get_values_for_type(x509.DNSName)
        ips = [str(i) for i in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        dns, ips = [], []
    matches = name_matches(host, dns, ips)
    self_signed = cert.issuer == cert.subject
    info = {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(), "dns_names": dns,
            "ip_addresses": ips, "host": host, "name_matches_host": matches, "self_signed": self_signed,
            "not_after": cert.not_valid_after_utc.isoformat() if hasattr(cert, "not_valid_after_utc") else ""}
    case.attach("certificate", info)
    names = ", ".join(dns + ips) or "no subjectAltName"
    assert matches, (f"the certificate does not name the host {host}: its subjectAltName holds {names} (RFC 8314 4.4, "
                     f"RFC 7817 3: a DNS-ID for a host name, an iPAddress for an address; the subject CN is not used)")
    policy = case.target.tls
    if not (policy.verify or policy.ca_file):
        case.requirement_not_applicable(
            "tls.cert-identity", f"the certificate names {host} ({names}), but the target file gives no trust anchor "
            f"([tls] verify = false), so whether it is valid cannot be judged "
            f"({'self-signed' if self_signed else 'issued by ' + cert.issuer.rfc4514_string()})")
        return
    verifying = case.path.open("imaps")
    case.on_cleanup(verifying.close)
    try:
        checked = policy.client_context().wrap_socket(verifying, server_hostname=host)
    except ssl.SSLCertVerificationError as e:
        raise ConformanceFailure(f"the certificate for {host} does not validate against the target's trust anchor: "
                                 f"{e.verify_message or e}") from e
    checked.close()
    case.passed(f"certificate for {names} validates for {host}")


@pytest.mark.requirement("tls.implicit-tls-ports")
@pytest.mark.uses("imaps")
def test_imaps_greeting_not_authenticated(case):
    """Over implicit TLS the server greets with OK and the session is not authenticated yet."""
    imap = case.imap(account=None, endpoint="imaps", label="imaps-greeting")
    assert imap.greeting.status == "OK", f"implicit-TLS greeting must be '* OK', got {imap.greeting.first_line!r}"
    res = imap.command("SELECT INBOX")
    assert res.status in ("NO", "BAD"), f"SELECT before LOGIN on imaps must fail, got {res.tagged.first_line!r}"
    case.passed(f"{imap.tls_version} greeting OK; SELECT before LOGIN: {res.tagged.first_line}")


@pytest.mark.requirement("tls.submissions-port")
@pytest.mark.uses("submission")
def test_submissions_implicit_tls(case):
    """Submission over implicit TLS (465) greets with 220 after the handshake; its absence is reported."""
    if case.target.endpoint("submissions") is None:
        case.non_strict(f"target {case.target.name} declares no submissions (implicit TLS, port 465) endpoint; "
                        "RFC 8314 3.3 asks for one beside STARTTLS on 587")
        return
    smtp = SmtpLine.over(case.path.open("submissions"), transcript=case.transcript, label="submissions",
                         leg=case.path.leg, timeout=case.deadline)
    case.on_cleanup(smtp.close)
    smtp.start_tls(insecure_context())
    greeting = smtp.reply()
    assert greeting.code == 220, f"implicit-TLS submission greeting must be 220, got {greeting.text[:80]!r}"
    case.passed(f"submissions greets over {smtp.tls_version}")
