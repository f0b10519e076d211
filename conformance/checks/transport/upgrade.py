"""The cleartext step before a raw TLS handshake, per endpoint: IMAP and submission STARTTLS on a bare socket.

Checks that drive the TLS handshake themselves (pinned versions, one cipher suite, a hand-made ClientHello) open a
socket through the path, run ``UPGRADES[endpoint]`` (None for implicit TLS) and then speak TLS on it. Every octet is
recorded in the case transcript under the given label.
"""

from __future__ import annotations

import socket

from conformance.errors import HarnessError, NotApplicable
from conformance.protocols.imapwire import ResponseReader, parse_capabilities
from conformance.transcript import printable

from .wire import SmtpLine, ehlo_keywords


def imap_upgrade(case, sock: socket.socket, label: str) -> None:
    """Greeting, CAPABILITY and STARTTLS on a raw socket, recorded; leaves the socket ready for the handshake."""
    leg = case.path.leg
    reader = ResponseReader()

    def read(tag: str | None):
        while True:
            data = sock.recv(65536)
            if not data:
                raise HarnessError("connection closed before STARTTLS completed")
            case.transcript.add(leg, "S", printable(data), len(data), conn=label)
            for r in reader.feed(data):
                if tag is None or r.tag == tag:
                    return r

    def send(line: bytes) -> None:
        case.transcript.add(leg, "C", printable(line), len(line), conn=label)
        sock.sendall(line)

    greeting = read(None)
    caps = parse_capabilities(greeting.text)
    if not caps:
        send(b"c1 CAPABILITY\r\n")
        r = read(None)
        caps = parse_capabilities(r.text)
        read("c1")
    if "STARTTLS" not in caps:
        raise NotApplicable("the cleartext IMAP port does not advertise STARTTLS")
    send(b"c2 STARTTLS\r\n")
    res = read("c2")
    if res.status != "OK":
        raise NotApplicable(f"STARTTLS refused: {res.first_line}")


def smtp_upgrade(case, sock: socket.socket, label: str) -> None:
    """Greeting, EHLO and STARTTLS on a raw socket, recorded; leaves the socket ready for the handshake."""
    smtp = SmtpLine.__new__(SmtpLine)
    smtp.transcript, smtp.leg, smtp.label, smtp.timeout = case.transcript, case.path.leg, label, case.deadline
    smtp.redactor, smtp.sock, smtp.buf, smtp.tls_version = case.transcript.redactor(), sock, b"", None
    assert smtp.reply().code == 220, "no 220 greeting from submission"
    if "STARTTLS" not in ehlo_keywords(smtp.command("EHLO client.test")):
        raise NotApplicable("submission does not advertise STARTTLS")
    res = smtp.command("STARTTLS")
    if res.code != 220:
        raise NotApplicable(f"STARTTLS refused: {res.text}")


UPGRADES = {"imaps": None, "imap": imap_upgrade, "submission": smtp_upgrade, "submissions": None}


def tls_endpoints(case, names=("imaps", "imap", "submission", "submissions")) -> list[str]:
    """The TLS endpoints of ``names`` the target has and the scenario carries."""
    return [e for e in names if case.target.endpoint(e) is not None
            and case.scenario.supports(e)]
