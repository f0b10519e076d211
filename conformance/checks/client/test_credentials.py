"""Credentials never in cleartext (strip-starttls) and never to an interceptor the client does not trust."""

from __future__ import annotations

import re

import pytest

from conformance.errors import ConformanceFailure, NotApplicable

from .support import AUTH_HEADER, CREDENTIALS, client_lines, client_timeline, connections, intermediary_actions

STARTTLS = re.compile(r"^\S+ +STARTTLS\b|^STARTTLS\b", re.I | re.M)


def before_tls(case) -> dict[str, list[tuple[float, str]]]:
    """Per connection, what the client sent before it asked for STARTTLS (the cleartext part of its wire)."""
    out = {}
    for label in connections(case):
        lines = []
        for t, text in client_lines(case, label):
            if text.startswith("[TLS records"):
                break
            lines.append((t, text))
            if STARTTLS.search(text):
                break
        out[label] = lines
    return out


@pytest.mark.requirement("client.tls.no-cleartext-credentials")
@pytest.mark.scenarios("strip-starttls")
def test_no_credentials_without_tls(case, session, mailbox):
    """With STARTTLS stripped by an attacker, the client gives up instead of logging in in cleartext."""
    mid = mailbox.append("strip")
    play = session.play("fetch-once", timeout=45)
    pre = before_tls(case)
    case.attach("pre_tls", {label: [f"t={t:.3f} {text.strip()}" for t, text in lines] for label, lines in pre.items()})
    offenders = [(label, t, text) for label, lines in pre.items() for t, text in lines if CREDENTIALS.search(text)]
    delivered = session.output.first(mid) is not None
    case.measure("delivered", delivered)
    case.measure("cleartext_client_lines", sum(len(v) for v in pre.values()), "")
    case.attach("timeline", client_timeline(case, session, f"{session.adapter.name}: STARTTLS stripped").as_dict(
        "fail" if offenders else "pass"))
    if not pre:
        raise ConformanceFailure("client.tls.no-cleartext-credentials: the client never connected (no connection on "
                                 f"the relay); exit {play.exit_code}")
    assert not offenders, (
        "client.tls.no-cleartext-credentials: with STARTTLS stripped the client sent credentials in cleartext: "
        + "; ".join(f"{label} t={t:.3f} {text.strip()[:80]!r}" for label, t, text in offenders[:3])
        + (" (and the message was delivered: the session was usable by the attacker)" if delivered else ""))
    case.passed(f"no LOGIN/AUTHENTICATE before TLS on {len(pre)} connection(s); the client "
                f"{'still delivered the message (it negotiated TLS anyway)' if delivered else 'gave up'} "
                f"(exit {play.exit_code})")


@pytest.mark.requirement("client.tls.verify-before-credentials")
@pytest.mark.scenarios("inspecting")
def test_no_credentials_to_interceptor(case, session, mailbox):
    """Behind a TLS-inspecting proxy with a CA the client was not given, no credentials reach the proxy."""
    mailbox.append("inspect")
    play = session.play("fetch-once", timeout=45)
    sent = [e for e in case.transcript.entries if e.direction == "C" and e.leg != "harness"
            and e.conn != "" and not e.conn.startswith(("suite", "cleanup"))
            and (AUTH_HEADER.search(e.text) or CREDENTIALS.search(e.text))]
    refused = [e.text for e in intermediary_actions(case) if "refused the proxy's certificate" in e.text]
    case.measure("certificate_refused", bool(refused), detail=refused[:1])
    case.measure("credentials_through_interceptor", len(sent), "")
    case.attach("timeline", client_timeline(case, session, f"{session.adapter.name}: behind an inspecting proxy").as_dict(
        "fail" if sent else "pass"))
    attempted = sent or refused or connections(case) or any(e.conn.startswith("connect ") for e in case.transcript.entries)
    if not attempted:
        raise NotApplicable(f"the client never connected through the inspecting proxy (exit {play.exit_code}; its log "
                            "says why): whether it would have sent credentials cannot be judged")
    assert not sent, ("client.tls.verify-before-credentials: the client accepted the interceptor's certificate and "
                      "sent credentials through it: " + "; ".join(f"t={e.t:.3f} {e.conn} {e.text.strip()[:100]!r}"
                                                                  for e in sent[:3]))
    case.passed("no credentials reached the inspecting proxy" + (f" ({refused[0]})" if refused else
                                                                 f" (exit {play.exit_code})"))
