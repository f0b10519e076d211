"""Lemonade capability tables (RFC 5550 3.1, 3.2): what the store and the submission server advertise."""

from __future__ import annotations

import base64

import pytest

from conformance.protocols.imapwire import parse_capabilities


def missing_capabilities(advertised: list[str], required: list[str]) -> list[str]:
    """The required capabilities not advertised (I18NLEVEL=2 counts as I18NLEVEL=1)."""
    have = {c.upper() for c in advertised}
    if "I18NLEVEL=2" in have:
        have.add("I18NLEVEL=1")  # RFC 5550 5.6: level 2 implies level 1
    return [c for c in required if c.upper() not in have]


@pytest.mark.requirement("lemonade.store.capabilities")
def test_store_capabilities(case):
    """After login, CAPABILITY lists every extension of the Lemonade message store table."""
    imap = case.imap()
    caps = imap.capability()
    required = case.param("required")
    missing = missing_capabilities(caps, required)
    case.measure("advertised", len(caps), "capabilities")
    assert not missing, (f"missing {len(missing)} of {len(required)} required capabilities: {' '.join(missing)} "
                         f"(CAPABILITY after login: {' '.join(caps)})")
    case.passed(f"all {len(required)} required capabilities advertised")


@pytest.mark.requirement("lemonade.store.starttls")
def test_store_starttls_offered(case):
    """Before TLS, the cleartext port's CAPABILITY offers STARTTLS."""
    imap = case.imap(account=None, tls="none")
    caps = imap.capability()
    assert "STARTTLS" in caps, f"STARTTLS not advertised before TLS (CAPABILITY: {' '.join(caps)})"
    case.passed("STARTTLS advertised on the cleartext port")


@pytest.mark.requirement("lemonade.store.capability-code")
def test_capability_code_greeting_and_login(case):
    """The greeting and the tagged OK of LOGIN carry a [CAPABILITY ...] response code."""
    imap = case.imap(account=None)
    greeting = imap.greeting
    assert greeting.code and greeting.code.upper().startswith("CAPABILITY "), (
        f"greeting has no CAPABILITY response code: {greeting.first_line!r}")
    acct = case.account(0)
    res = imap.login(acct.username, acct.password)
    assert res.ok, f"LOGIN failed: {res.tagged.first_line}"
    assert res.code and res.code.upper().startswith("CAPABILITY "), (
        f"tagged OK of LOGIN has no CAPABILITY response code: {res.tagged.first_line!r}")
    case.passed("greeting and LOGIN OK both carry CAPABILITY")


@pytest.mark.requirement("lemonade.store.capability-code")
def test_capability_code_authenticate(case):
    """The tagged OK of AUTHENTICATE PLAIN carries a [CAPABILITY ...] response code."""
    imap = case.imap(account=None)
    caps = parse_capabilities(imap.greeting.text) or imap.capability()
    if "AUTH=PLAIN" not in caps:
        caps = imap.capability()
    case.require_capability(caps, "AUTH=PLAIN")
    acct = case.account(0)
    blob = base64.b64encode(f"\0{acct.username}\0{acct.password}".encode()).decode()
    imap.redactor.secrets.add(acct.password)
    if "SASL-IR" in caps:
        res = imap.command(f"AUTHENTICATE PLAIN {blob}")
    else:
        tag = imap.next_tag()
        imap.send_raw(f"{tag} AUTHENTICATE PLAIN\r\n".encode())
        cont = imap.read_response(waiting_for="for the AUTHENTICATE continuation")
        assert cont.is_continuation, f"expected '+' after AUTHENTICATE PLAIN, got {cont.first_line!r}"
        imap.send_raw(blob.encode() + b"\r\n")
        res = imap.wait_tagged(tag)
    assert res.ok, f"AUTHENTICATE PLAIN failed: {res.tagged.first_line}"
    assert res.code and res.code.upper().startswith("CAPABILITY "), (
        f"tagged OK of AUTHENTICATE has no CAPABILITY response code: {res.tagged.first_line!r}")
    case.passed("AUTHENTICATE OK carries CAPABILITY")


@pytest.mark.requirement("lemonade.submit.extensions")
@pytest.mark.uses("submission")
def test_submission_ehlo_keywords(case):
    """EHLO before TLS offers STARTTLS; after STARTTLS and AUTH it lists every Lemonade keyword."""
    case.require_endpoint("submission")
    plain = case.submission(account=None, tls="none")
    pre = plain.ehlo_keywords()
    plain.quit()
    smtp = case.submission()
    post = smtp.ehlo_keywords()
    required = case.param("required")
    missing = [k for k in required if k.upper() not in post]
    if "STARTTLS" not in pre:
        missing.append("STARTTLS (before TLS)")
    assert not missing, (f"EHLO lacks {', '.join(missing)} (before TLS: {' '.join(sorted(pre))}; "
                         f"after STARTTLS+AUTH: {' '.join(sorted(post))})")
    case.passed(f"all {len(required)} keywords after AUTH, STARTTLS before TLS")


@pytest.mark.requirement("lemonade.submit.burl-imap")
@pytest.mark.uses("submission")
def test_submission_burl_imap(case):
    """After AUTH, the BURL keyword carries the 'imap' argument."""
    case.require_endpoint("submission")
    smtp = case.submission()
    kw = smtp.ehlo_keywords()
    assert "BURL" in kw, f"BURL not advertised after AUTH (EHLO: {' '.join(sorted(kw))})"
    args = kw["BURL"].split()
    assert "imap" in [a.lower() for a in args], f"BURL advertised without the 'imap' argument: 'BURL {kw['BURL']}'"
    case.passed(f"BURL {kw['BURL']}")
