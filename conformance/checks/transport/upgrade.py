"""The cleartext step before a raw TLS handshake, per endpoint: IMAP and submission STARTTLS on a bare socket.

Checks that drive the TLS handshake themselves (pinned versions, one cipher suite, a hand-made ClientHello) open a
socket through the path, run ``UPGRADES[endpoint]`` (None for implicit TLS) and then speak TLS on it. Every octet is
recorded in the case transcript under the given label.
"""

from __future__ import annotations

import socket

from conformance.errors import NotApplicable
from conformance.protocols.imap import ImapConnection
from conformance.protocols.imapwire import parse_capabilities

from .wire import SmtpLine, ehlo_keywords


def imap_upgrade(case, sock: socket.socket, label: str) -> None:
    """Greeting, CAPABILITY and STARTTLS on a raw socket, recorded; leaves the socket ready for the handshake."""
    imap = ImapConnection.over(sock, transcript=case.transcript, label=label, leg=case.path.leg, timeout=case.deadline)
    greeting = imap.read_greeting()
    caps = parse_capabilities(greeting.text) or imap.capability()
    if "STARTTLS" not in caps:
        raise NotApplicable("the cleartext IMAP port does not advertise STARTTLS")
    res = imap.command("STARTTLS")
    if not res.ok:
        raise NotApplicable(f"STARTTLS refused: {res.tagged.first_line}")


def smtp_upgrade(case, sock: socket.socket, label: str) -> None:
    """Greeting, EHLO and STARTTLS on a raw socket, recorded; leaves the socket ready for the handshake."""
    smtp = SmtpLine.over(sock, transcript=case.transcript, label=label, leg=case.path.leg, timeout=case.deadline)
    assert smtp.reply().code == 220, "no 220 greeting from submission"
    if "STARTTLS" not in ehlo_keywords(smtp.command("EHLO client.test")):
        raise NotApplicable("submission does not advertise STARTTLS")
    res = smtp.command("STARTTLS")
    if res.code != 220:
        raise NotApplicable(f"STARTTLS refused: {res.text}")


UPGRADES = {"imaps": None, "imap": imap_upgrade, "submission": smtp_upgrade, "submissions": None, "jmap": None}


def tls_endpoints(case, names=("imaps", "imap", "submission", "submissions")) -> list[str]:
    """The TLS endpoints of ``names`` the target has and the scenario carries."""
    return [e for e in names if case.target.endpoint(e) is not None
            and case.scenario.supports(e)]
