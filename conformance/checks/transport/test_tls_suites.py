"""TLS cipher suite and compression on the IMAP TLS endpoints (RFC 9051 11.1, RFC 7525 3.3).

The mandatory TLS 1.2 suite is offered alone on every IMAP TLS endpoint (imaps, and imap after STARTTLS); the
compression check offers DEFLATE in a hand-made ClientHello (clienthello.py) on every TLS endpoint and reads which
method the server picks, without completing the handshake.
"""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from conformance.errors import HarnessError, NotApplicable

from .clienthello import ServerAnswer, ServerHelloReader, client_hello
from .upgrade import UPGRADES, tls_endpoints

MTI_SUITE = "ECDHE-RSA-AES128-GCM-SHA256"  # TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256


def _socket(case, endpoint: str, label: str) -> socket.socket:
    """A socket through the path, past STARTTLS where the endpoint needs it."""
    sock = case.path.open(endpoint)
    case.on_cleanup(sock.close)
    sock.settimeout(case.deadline)
    upgrade = UPGRADES[endpoint]
    if upgrade:
        upgrade(case, sock, label)
    return sock


def _context(ciphers: str | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def _certificate_key(case, endpoint: str) -> str:
    """The public key type of the certificate ``endpoint`` presents under TLS 1.2 with any suite ('RSA', 'EC', ...)."""
    from cryptography import x509

    sock = _socket(case, endpoint, f"{endpoint}-any-suite")
    try:
        tls = _context().wrap_socket(sock, server_hostname="localhost")
    except (ssl.SSLError, OSError) as e:
        return f"unknown (TLS 1.2 with any suite failed too: {e})"
    der = tls.getpeercert(binary_form=True)
    tls.close()
    key = x509.load_der_x509_certificate(der).public_key() if der else None
    return type(key).__name__.removeprefix("_").replace("PublicKey", "").upper() if key else "none"


@pytest.mark.requirement("tls.imap-mti-suite")
@pytest.mark.uses("imap", "imaps")
def test_mandatory_tls12_suite(case):
    """Offered only TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 under TLS 1.2, every IMAP TLS endpoint completes the
    handshake (RFC 9051 11.1). An endpoint presenting no RSA certificate cannot negotiate an RSA suite at all: then the
    requirement is not applicable there."""
    rows, problems, not_rsa = [], [], []
    for ep in tls_endpoints(case, ("imaps", "imap")):
        label = f"{ep}-{MTI_SUITE}"
        try:
            sock = _socket(case, ep, label)
        except NotApplicable as e:
            rows.append({"endpoint": ep, "result": f"not applicable: {e}"})
            continue
        try:
            tls = _context(MTI_SUITE).wrap_socket(sock, server_hostname="localhost")
        except (ssl.SSLError, OSError) as e:
            case.transcript.add(case.path.leg, "N", f"TLS 1.2 with only {MTI_SUITE} refused: {e}", conn=label)
            key = _certificate_key(case, ep)
            rows.append({"endpoint": ep, "result": f"refused ({e}); certificate key {key}"})
            (not_rsa if not key.startswith("RSA") and not key.startswith("UNKNOWN") else problems).append(
                f"{ep}: {e} (certificate key {key})")
            continue
        got = (tls.version(), tls.cipher()[0])
        tls.close()
        case.transcript.add(case.path.leg, "N", f"negotiated {got[0]} {got[1]}", conn=label)
        rows.append({"endpoint": ep, "result": f"negotiated {got[0]} {got[1]}"})
    case.attach("tls_suites", rows)
    judged = [r for r in rows if not r["result"].startswith("not applicable")]
    if not judged:
        raise NotApplicable("no IMAP TLS endpoint to offer the suite to")
    if not_rsa and not problems and len(not_rsa) == len(judged):
        raise NotApplicable("no RSA certificate on any IMAP TLS endpoint, so no RSA suite can be negotiated: "
                            + "; ".join(not_rsa))
    case.require("tls.imap-mti-suite", not problems, f"TLS 1.2 with only {MTI_SUITE} (RFC 9051 11.1 makes it "
                 "mandatory) failed: " + "; ".join(problems))
    case.passed("; ".join(f"{r['endpoint']}: {r['result']}" for r in rows))


def _first_answer(case, endpoint: str, compression: tuple[int, ...]) -> tuple[ServerAnswer | None, str]:
    """Send the hand-made ClientHello offering ``compression`` on ``endpoint``; the server's first TLS message."""
    label = f"{endpoint}-clienthello-{'+'.join(map(str, compression))}"
    sock = _socket(case, endpoint, label)
    hello = client_hello(compression=compression)
    case.transcript.add(case.path.leg, "C", f"TLS 1.2 ClientHello offering compression methods {list(compression)}",
                        len(hello), conn=label)
    sock.sendall(hello)
    reader = ServerHelloReader()
    deadline = time.monotonic() + case.deadline
    while reader.answer is None and not reader.error:
        left = deadline - time.monotonic()
        if left <= 0:
            return None, f"no ServerHello within {case.deadline:g} s"
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return None, f"no ServerHello within {case.deadline:g} s"
        except OSError as e:
            return None, f"connection ended: {e}"
        if not data:
            return None, "the server closed the connection without answering"
        reader.feed(data)
    if reader.answer is not None:
        case.transcript.add(case.path.leg, "S", reader.answer.describe(), len(reader.buf), conn=label)
    sock.close()
    return reader.answer, reader.error


@pytest.mark.requirement("tls.no-compression")
@pytest.mark.uses("imap", "imaps", "submission")
def test_no_tls_compression(case):
    """Offered DEFLATE (and null) as TLS compression methods in a TLS 1.2 ClientHello, every TLS endpoint picks null
    (RFC 7525 3.3: TLS compression enables CRIME-class attacks). COMPRESS=DEFLATE above TLS is the same risk class
    and is reported when offered."""
    rows, problems = [], []
    for ep in tls_endpoints(case):
        try:
            answer, error = _first_answer(case, ep, (1, 0))
        except NotApplicable as e:
            rows.append({"endpoint": ep, "result": f"not applicable: {e}"})
            continue
        if answer is not None and answer.kind == "server-hello":
            rows.append({"endpoint": ep, "result": answer.describe()})
            if answer.compression != 0:
                problems.append(f"{ep}: the server picked TLS compression ({answer.describe()})")
            continue
        plain, plain_error = _first_answer(case, ep, (0,))  # is it the offer of DEFLATE, or our hello?
        if plain is None or plain.kind != "server-hello":
            raise HarnessError(f"{ep}: the hand-made ClientHello is refused even without compression "
                               f"({plain.describe() if plain else plain_error}): the suite's hello does not suit it")
        rows.append({"endpoint": ep, "result": f"refused the hello offering DEFLATE "
                     f"({answer.describe() if answer else error}); accepted null only: {plain.describe()}"})
    case.attach("tls_compression", rows)
    if not any(not r["result"].startswith("not applicable") for r in rows):
        raise NotApplicable("no TLS endpoint to offer compression to")
    case.require("tls.no-compression", not problems, "; ".join(problems))
    compress = ""
    if case.target.endpoint("imap") is not None:
        caps = case.imap(via_path=False, label="capability").capability()
        if "COMPRESS=DEFLATE" in caps:
            compress = ("; note: COMPRESS=DEFLATE is offered above TLS, the same risk class when secrets and "
                        "attacker-chosen data share a compression context (RFC 7525 3.3)")
    case.passed("null compression picked on " + ", ".join(r["endpoint"] for r in rows
                                                          if not r["result"].startswith("not applicable")) + compress)
