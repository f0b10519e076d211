"""What submission records about TLS in the message it relays (RFC 8314 4.3)."""

from __future__ import annotations

import re
import uuid

import pytest

from conformance.errors import NotApplicable


def received_tls_clause(message: bytes) -> tuple[str, str | None]:
    """(the first Received field unfolded, its 'tls <cipher suite>' clause or None)."""
    header = message.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    m = re.search(r"(?ims)^Received:(.*?)(?=^\S|\Z)", header + "\r\n")
    if not m:
        return "", None
    field = re.sub(r"\s+", " ", m.group(1)).strip()
    clause = re.search(r"\btls\s+([A-Z0-9_-]+)", field, re.I)
    return field, clause.group(1) if clause else None


@pytest.mark.requirement("tls.received-clause")
@pytest.mark.uses("submission")
def test_received_field_names_tls(case):
    """A message submitted over TLS gets a Received field whose 'tls' clause names the cipher suite."""
    sink = getattr(case.target, "sink", None)
    if sink is None:
        raise NotApplicable("the target's relay is not observable (only the embedded target has an SMTP sink)")
    smtp = case.submission()
    rcpt = f"trace-{uuid.uuid4().hex[:8]}@lemonade.test"
    acct = case.account(0)
    smtp.sendmail(f"{acct.username}@lemonade.test", [rcpt],
                  b"From: <alice@lemonade.test>\r\nTo: <" + rcpt.encode() + b">\r\nSubject: trace\r\n\r\nbody\r\n")
    relayed = sink.wait_for(lambda m: any(rcpt in r for r in m.rcpt_to), 10)
    assert relayed is not None, "submission accepted the message but nothing reached the relay within 10 s"
    field, clause = received_tls_clause(relayed.data)
    case.attach("received", {"field": field, "tls_clause": clause, "client_cipher": smtp.sock.cipher()[0]})
    assert field, "the relayed message carries no Received field at all"
    assert clause, f"the Received field added by submission has no 'tls <cipher suite>' clause: Received:{field}"
    case.passed(f"Received names the TLS cipher suite {clause}")
