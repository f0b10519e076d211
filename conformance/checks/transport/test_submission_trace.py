"""What submission records about TLS in the message it relays (RFC 8314 4.3)."""

from __future__ import annotations

import uuid

import pytest

from conformance.errors import NotApplicable

from .wire import received_tls_clause


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
