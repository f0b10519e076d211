"""STARTTLS rules (RFC 9051 6.2.1, RFC 3207, RFC 8314): no injection, once only, clean state, no cleartext login.

Each check speaks the exact bytes the rule is about: the injection checks put ``STARTTLS`` and a second
command in one TCP segment; the stripping check runs behind an intermediary that hides STARTTLS.
"""

from __future__ import annotations

import base64
import re
import time

import pytest

from conformance.errors import ConformanceFailure, HarnessError, NotApplicable, ProtocolViolation, ServerClosed
from conformance.protocols.imap import ImapConnection, insecure_context
from conformance.protocols.imapwire import parse_capabilities
from conformance.transcript import printable

from .observed_tls import Handshake, handshake
from .wire import SmtpLine, ehlo_keywords, remote_source


def _imap_plain(case, label: str):
    """A cleartext IMAP connection through the scenario path, greeted, with its pre-TLS capabilities.

    It comes from a loopback address other than the server's (``remote_source``), so the server treats it
    like a remote client's.
    """
    ep = case.path.endpoint("imap")
    source = remote_source(ep.host)
    if source:
        case.note(f"{label}: connecting from {source[0]} so the server sees a peer other than itself")
    conn = ImapConnection(ep.host, ep.port, transcript=case.transcript, tls="none", timeout=case.deadline, label=label,
                          leg=case.path.leg, source_address=source, via=case.intermediary_name())
    case.on_cleanup(conn.close)
    conn.read_greeting()
    if conn.greeting.status == "PREAUTH":
        return conn, []
    caps = parse_capabilities(conn.greeting.text) or conn.capability()
    return conn, caps


def _smtp_plain(case, label: str) -> tuple[SmtpLine, set[str]]:
    case.require_endpoint("submission")
    ep = case.path.endpoint("submission")
    if remote_source(ep.host):
        case.note(f"{label}: connecting from {remote_source(ep.host)[0]} so the server sees a peer other than itself")
    smtp = SmtpLine(ep.host, ep.port, case.transcript, case.path.leg, label, timeout=case.deadline,
                    via=case.intermediary_name())
    case.on_cleanup(smtp.close)
    greeting = smtp.reply()
    assert greeting.code == 220, f"expected a 220 greeting from submission, got {greeting.text!r}"
    ehlo = smtp.command("EHLO client.test")
    assert ehlo.code == 250, f"EHLO refused: {ehlo.text!r}"
    return smtp, ehlo_keywords(ehlo)


INJECTED_IMAP_REPLY = re.compile(rb"(?m)^b (?:OK|NO|BAD)\b")
INJECTED_SMTP_REPLY = re.compile(rb"(?m)^\d{3}[ -]")


def _observed_handshake(case, conn, label: str) -> Handshake:
    """The TLS handshake after STARTTLS, every server octet kept; what came back in cleartext goes into the
    transcript (the connection's own reader never sees it)."""
    hs = handshake(conn.sock, insecure_context(), case.deadline)
    clear = hs.cleartext()
    if clear:
        case.transcript.add(case.path.leg, "S", printable(clear), len(clear), conn=label)
    if hs.tls is None:
        case.transcript.add(case.path.leg, "N", f"TLS handshake failed: {hs.error}", conn=label)
    else:
        case.transcript.add(case.path.leg, "N", f"TLS established: {hs.tls.version()} {hs.tls.cipher()[0]}",
                            conn=label)
    return hs


def _judge_failed_handshake(case, hs: Handshake, reply: re.Pattern, injected: str, ok_line: str) -> None:
    """A handshake after the injection failed: a cleartext answer to the injected command breaks the rule; TLS
    alerts or silence mean the server fed the injected bytes to its TLS stack (the rule kept)."""
    clear = hs.cleartext()
    if clear and reply.search(clear):
        raise ConformanceFailure(
            f"the injected command '{injected}' was executed in cleartext: after {ok_line} to STARTTLS the server "
            f"answered {clear[:120]!r} instead of starting the TLS handshake (the handshake then failed: {hs.error})")
    if clear:
        raise ProtocolViolation(f"after {ok_line} to STARTTLS the server sent cleartext {clear[:120]!r} instead of "
                                f"the TLS handshake ({hs.error})")
    case.note(f"TLS handshake after the injected bytes failed ({hs.error}); the server sent only TLS records "
              f"({len(hs.raw)} octets) or nothing: it fed the injected bytes to its TLS stack")
    case.passed("injected bytes were not executed: the server treated them as TLS handshake data (its TLS stack "
                "refused them; no cleartext reply)")


@pytest.mark.requirement("tls.starttls-injection", "mobile.tls.no-starttls-injection")
def test_imap_starttls_injection(case):
    """A command pipelined after STARTTLS in the same segment is never answered, neither before nor after TLS.

    Both requirements state the same rule (the mobile profile restates RFC 9051 6.2.1), so one judgement serves both.
    """
    imap, caps = _imap_plain(case, "imap-inject")
    case.require_capability(caps, "STARTTLS")
    imap.send_raw(b"a STARTTLS\r\nb NOOP\r\n", note="a STARTTLS\\r\\nb NOOP\\r\\n  (one segment)")
    res = imap.wait_tagged("a")
    early = [r.first_line for r in res.untagged]
    if not res.ok:
        raise NotApplicable(f"STARTTLS refused ({res.tagged.first_line}); nothing to inject into")
    queued, pending = imap.take_pending()
    answered = [r.first_line for r in [*res.untagged, *queued] if r.tag == "b"]
    assert not answered, f"the injected command 'b NOOP' was answered in cleartext around 'a OK' to STARTTLS: {answered}"
    assert not pending.startswith(b"b "), f"the injected command was answered before the handshake: {pending[:80]!r}"
    hs = _observed_handshake(case, imap, imap.label)
    if hs.tls is None:
        _judge_failed_handshake(case, hs, INJECTED_IMAP_REPLY, "b NOOP", "'a OK'")
        return
    imap.conn.sock, imap.conn.tls_version = hs.tls, hs.tls.version()
    seen: list[str] = []
    res = imap.command("NOOP")  # sent with our own tag; the injected command had tag b
    seen += [r.first_line for r in res.untagged if r.tag == "b"]
    late, until = imap.poll(0.5), time.monotonic() + 2.0
    while late is not None:
        if late.tag == "b":
            seen.append(late.first_line)
        if time.monotonic() >= until:  # a peer that never stops talking ends at the bound
            break
        late = imap.poll(0.2)
    assert not seen, (f"the command injected before the TLS handshake ('b NOOP') was executed inside TLS: "
                      f"server answered {seen} (a man-in-the-middle can run commands in the protected session)")
    assert res.ok, f"NOOP after STARTTLS failed: {res.tagged.first_line}"
    if early:
        case.note(f"untagged data before STARTTLS OK: {early}")
    case.passed(f"no reply to the injected command; session continued over {imap.tls_version}")


@pytest.mark.requirement("tls.starttls-injection", "mobile.tls.no-starttls-injection")
@pytest.mark.uses("submission")
def test_submission_starttls_injection(case):
    """An SMTP command pipelined after STARTTLS is never answered, in cleartext or inside TLS (RFC 3207 section 4.2)."""
    smtp, kw = _smtp_plain(case, "smtp-inject")
    if "STARTTLS" not in kw:
        raise NotApplicable("submission does not advertise STARTTLS")
    smtp.send(b"STARTTLS\r\nNOOP INJECTED\r\n")
    go = smtp.reply()
    assert go.code != 0, f"unparseable reply to STARTTLS: {go.text!r}"
    if go.code != 220:
        raise NotApplicable(f"STARTTLS refused ({go.text}); nothing to inject into")
    assert not smtp.buf, (f"the injected command 'NOOP INJECTED' was answered in cleartext right after '220' to "
                          f"STARTTLS, before the handshake: {smtp.buf[:80]!r}")
    hs = _observed_handshake(case, smtp, smtp.label)
    if hs.tls is None:
        _judge_failed_handshake(case, hs, INJECTED_SMTP_REPLY, "NOOP INJECTED", "'220'")
        return
    smtp.conn.sock, smtp.conn.tls_version = hs.tls, hs.tls.version()
    smtp.send(b"EHLO client.test\r\n")
    replies = []
    first = smtp.reply()
    replies.append(first)
    extra = smtp.poll(0.7)
    while extra is not None and len(replies) < 5:
        replies.append(extra)
        extra = smtp.poll(0.3)
    injected = [r for r in replies if not (r.code == 250 and len(r.lines) > 1)]
    assert len(replies) == 1 and first.code == 250 and len(first.lines) > 1, (
        f"after STARTTLS the server answered {len(replies)} time(s) to one EHLO: "
        f"{[r.text for r in replies]}; the reply {[r.text for r in injected]} belongs to the command injected "
        f"in cleartext ('NOOP INJECTED'), which must never run inside TLS")
    case.passed(f"exactly one reply (EHLO) after STARTTLS over {smtp.tls_version}; the injected NOOP was discarded")


@pytest.mark.requirement("tls.starttls-once")
def test_imap_starttls_once(case):
    """After STARTTLS, CAPABILITY no longer lists STARTTLS and a second STARTTLS gets BAD."""
    imap, caps = _imap_plain(case, "imap-once")
    case.require_capability(caps, "STARTTLS")
    res = imap.starttls(insecure_context())
    assert res.ok, f"STARTTLS advertised but refused: {res.tagged.first_line}"
    after = imap.capability()
    assert "STARTTLS" not in after, f"STARTTLS still advertised after TLS (CAPABILITY: {' '.join(after)})"
    again = imap.command("STARTTLS")
    assert again.status == "BAD", (f"a second STARTTLS inside TLS must get tagged BAD, got "
                                   f"{again.tagged.first_line!r}")
    case.passed(f"STARTTLS gone after TLS, second STARTTLS: {again.tagged.first_line}")


@pytest.mark.requirement("tls.smtp-starttls-once")
@pytest.mark.uses("submission")
def test_submission_starttls_once(case):
    """After STARTTLS, EHLO no longer lists STARTTLS and a second STARTTLS gets an error reply."""
    smtp, kw = _smtp_plain(case, "smtp-once")
    if "STARTTLS" not in kw:
        raise NotApplicable("submission does not advertise STARTTLS")
    go = smtp.command("STARTTLS")
    assert go.code == 220, f"STARTTLS advertised but refused: {go.text!r}"
    smtp.starttls_handshake(insecure_context())
    after = ehlo_keywords(smtp.command("EHLO client.test"))
    assert "STARTTLS" not in after, f"STARTTLS still offered after TLS (EHLO: {' '.join(sorted(after))})"
    again = smtp.command("STARTTLS")
    assert 400 <= again.code < 600, f"a second STARTTLS must get an error reply, got {again.text!r}"
    case.passed(f"STARTTLS gone after TLS, second STARTTLS: {again.text}")


@pytest.mark.requirement("tls.state-after-starttls")
def test_imap_state_after_starttls(case):
    """After STARTTLS the IMAP session is still not authenticated: SELECT gets NO or BAD."""
    imap, caps = _imap_plain(case, "imap-state")
    case.require_capability(caps, "STARTTLS")
    assert imap.starttls(insecure_context()).ok, "STARTTLS advertised but refused"
    res = imap.command("SELECT INBOX")
    assert res.status in ("NO", "BAD"), (f"SELECT right after STARTTLS must fail (not authenticated), "
                                         f"got {res.tagged.first_line!r}")
    case.passed(f"SELECT after STARTTLS: {res.tagged.first_line}")


@pytest.mark.requirement("tls.state-after-starttls")
@pytest.mark.uses("submission")
def test_submission_state_after_starttls(case):
    """After STARTTLS the SMTP session restarts: MAIL without a new EHLO gets 503 (RFC 3207 section 4.2)."""
    smtp, kw = _smtp_plain(case, "smtp-state")
    if "STARTTLS" not in kw:
        raise NotApplicable("submission does not advertise STARTTLS")
    assert smtp.command("STARTTLS").code == 220, "STARTTLS advertised but refused"
    smtp.starttls_handshake(insecure_context())
    res = smtp.command("MAIL FROM:<alice@lemonade.test>")
    assert 500 <= res.code < 600, (f"MAIL without EHLO after STARTTLS must be refused (the server must forget "
                                   f"the pre-TLS EHLO), got {res.text!r}")
    case.passed(f"MAIL before the post-TLS EHLO: {res.text}")


@pytest.mark.requirement("tls.logindisabled", "tls.cleartext-auth-denial")
def test_imap_logindisabled_honoured(case):
    """While LOGINDISABLED is advertised, LOGIN gets NO (tls.logindisabled), and good and bad passwords get the same
    answer (tls.cleartext-auth-denial).

    Without LOGINDISABLED neither rule applies to this configuration (RFC 9051 6.2.3 asks that a refusing
    configuration exist, which a client cannot see): both are not-applicable, with what cleartext LOGIN did; the
    hygiene check (east.pre-tls-hygiene) judges a cleartext port that invites passwords.
    """
    imap, caps = _imap_plain(case, "imap-cleartext")
    acct = case.account(0)
    if "LOGINDISABLED" not in caps:
        res = imap.login(acct.username, acct.password)
        case.measure("cleartext_login", res.status, "")
        why = (f"LOGINDISABLED is not advertised on the cleartext port, and cleartext LOGIN "
               f"{'was ACCEPTED' if res.ok else 'was refused: ' + res.tagged.first_line}: this configuration "
               f"{'permits' if res.ok else 'does not announce whether it permits'} cleartext passwords, so the rule "
               f"about LOGIN while LOGINDISABLED is advertised cannot be judged (see transport/imap_pre_tls_hygiene)")
        case.requirement_not_applicable("tls.logindisabled", why)
        case.requirement_not_applicable("tls.cleartext-auth-denial", why)
        return
    good = imap.login(acct.username, acct.password)
    refused = case.require("tls.logindisabled", good.status != "OK",
                           "LOGIN with valid credentials succeeded in cleartext although LOGINDISABLED is advertised")
    imap2, _ = _imap_plain(case, "imap-cleartext-bad")
    bad = imap2.login(acct.username, "wrong-" + acct.password[::-1])

    def strip(r):  # the tagged reply without its tag
        return r.tagged.first_line.split(" ", 1)[1]

    if not refused:
        case.requirement_not_applicable("tls.cleartext-auth-denial", "cleartext LOGIN was not withdrawn: valid "
                                        "credentials were accepted, so there is no denial to compare")
        return
    case.require("tls.cleartext-auth-denial", strip(good) == strip(bad),
                 f"valid and invalid credentials get different cleartext denials ({strip(good)!r} vs {strip(bad)!r}): "
                 f"the reply confirms the password")
    case.passed(f"LOGIN refused before TLS with the same reply for good and bad passwords: {strip(good)}")


def _auth_plain(smtp: SmtpLine, case, username: str, password: str):
    """AUTH PLAIN with an initial response; the password is redacted from the transcript."""
    smtp.redactor.secrets.add(password)
    case.transcript.secrets.add(password)
    blob = base64.b64encode(f"\0{username}\0{password}".encode()).decode()
    return smtp.command(f"AUTH PLAIN {blob}")


def _same_denial(good, bad) -> bool:
    """Same reply code and text (without the code) for two SMTP replies."""
    return (good.code, good.lines[-1][4:]) == (bad.code, bad.lines[-1][4:])


@pytest.mark.requirement("tls.cleartext-auth-denial", "east.pre-tls-hygiene")
@pytest.mark.uses("submission")
def test_submission_cleartext_auth_refused(case):
    """Before STARTTLS, submission offers no AUTH and refuses AUTH PLAIN (east.pre-tls-hygiene), with the same reply
    whatever the password (tls.cleartext-auth-denial)."""
    smtp, kw = _smtp_plain(case, "smtp-cleartext")
    acct = case.account(0)
    good = _auth_plain(smtp, case, acct.username, acct.password)
    offered = " (EHLO offered AUTH " + ("and STARTTLS" if "STARTTLS" in kw else "without STARTTLS") + ")"
    case.require("east.pre-tls-hygiene", "AUTH" not in kw,
                 f"EHLO before TLS offers AUTH (EHLO: {' '.join(sorted(kw))}): passwords invited in cleartext")
    accepted = good.code == 235
    case.require("east.pre-tls-hygiene", not accepted,
                 "AUTH PLAIN with valid credentials succeeded before TLS" + (offered if "AUTH" in kw else ""))
    if accepted:
        case.requirement_not_applicable("tls.cleartext-auth-denial", "cleartext AUTH was not withdrawn: valid "
                                        "credentials were accepted, so there is no denial to compare")
        return
    bad = _auth_plain(smtp, case, acct.username, "wrong-password")
    case.require("tls.cleartext-auth-denial", _same_denial(good, bad),
                 f"valid and invalid credentials get different cleartext denials ({good.text!r} vs {bad.text!r})")
    case.passed(f"no AUTH before TLS; AUTH PLAIN refused alike for good and bad passwords: {good.text}")


@pytest.mark.requirement("east.pre-tls-hygiene", "tls.cleartext-starttls")
def test_imap_pre_tls_hygiene(case):
    """Before TLS: STARTTLS and LOGINDISABLED (tls.cleartext-starttls) and no password mechanism (east.pre-tls-hygiene);
    STARTTLS then works, and after TLS the capabilities are re-issued: LOGINDISABLED gone, AUTH=PLAIN offered."""
    imap, caps = _imap_plain(case, "imap-hygiene")
    case.attach("capabilities", {"before_tls": caps})
    shown = f"(CAPABILITY: {' '.join(caps)})"
    offered = [c for c in caps if c.startswith("AUTH=") and c not in ("AUTH=EXTERNAL", "AUTH=ANONYMOUS")]
    case.require("east.pre-tls-hygiene", not offered,
                 f"cleartext port before TLS offers password mechanisms {' '.join(offered)} {shown}")
    case.require("east.pre-tls-hygiene", "LOGINDISABLED" in caps,
                 f"LOGINDISABLED not advertised (cleartext LOGIN allowed) {shown}")
    case.require("tls.cleartext-starttls", "LOGINDISABLED" in caps,
                 f"the cleartext port does not implement LOGINDISABLED {shown}")
    if not case.require("tls.cleartext-starttls", "STARTTLS" in caps, f"STARTTLS not advertised {shown}"):
        case.requirement_not_applicable("east.pre-tls-hygiene", "no STARTTLS: the capabilities after TLS cannot be read")
        return
    res = imap.starttls(insecure_context())
    if not case.require("tls.cleartext-starttls", res.ok,
                        f"STARTTLS advertised but refused: {res.tagged.first_line}"):
        return
    after = imap.capability()
    case.attach("capabilities", {"before_tls": caps, "after_tls": after})
    case.require("east.pre-tls-hygiene", "LOGINDISABLED" not in after,
                 f"LOGINDISABLED still advertised after TLS: the capabilities were not re-issued "
                 f"(CAPABILITY: {' '.join(after)})")
    case.require("tls.cleartext-starttls", "AUTH=PLAIN" in after,
                 f"AUTH=PLAIN not offered after TLS (CAPABILITY: {' '.join(after)})")
    mechanisms = " ".join(c for c in after if c.startswith("AUTH="))
    case.passed(f"before TLS: STARTTLS LOGINDISABLED, no AUTH=; after TLS: {mechanisms}")


@pytest.mark.requirement("tls.preauth-only-tls")
def test_no_preauth_on_cleartext(case):
    """The greeting on the cleartext port is never PREAUTH."""
    imap, _ = _imap_plain(case, "imap-greeting")
    assert imap.greeting.status != "PREAUTH", f"PREAUTH greeting on a cleartext connection: {imap.greeting.first_line!r}"
    case.passed(f"greeting: {imap.greeting.first_line[:60]}")


@pytest.mark.requirement("tls.starttls-bad-on-implicit")
@pytest.mark.uses("imaps")
def test_starttls_on_implicit_tls_port(case):
    """STARTTLS on the implicit-TLS port (993-style) gets tagged BAD."""
    imap = case.imap(account=None, endpoint="imaps", label="imaps")
    res = imap.command("STARTTLS")
    assert res.status == "BAD", f"STARTTLS inside implicit TLS must get tagged BAD, got {res.tagged.first_line!r}"
    case.passed(f"STARTTLS on imaps: {res.tagged.first_line}")


def _server_hid(case, word: str) -> bool:
    """Did the stripping intermediary remove ``word`` from what the server announced (so the server did announce it)?"""
    return any(e.direction == "I" and "removed" in e.text and word in e.text.split(" from ")[0]
               for e in case.transcript.entries)


@pytest.mark.requirement("mobile.tls.no-starttls-injection", "tls.logindisabled")
@pytest.mark.scenarios("strip-starttls")
def test_imap_stripped_starttls_cleartext_login(case):
    """Behind an intermediary that hides STARTTLS and LOGINDISABLED, the server still refuses a cleartext LOGIN
    (mobile.tls.no-starttls-injection); when the server did announce LOGINDISABLED, that refusal is also what
    tls.logindisabled asks."""
    imap, caps = _imap_plain(case, "imap-stripped")
    if "STARTTLS" in caps:
        raise HarnessError(f"the stripping intermediary left STARTTLS in CAPABILITY: {' '.join(caps)}")
    announced = _server_hid(case, "LOGINDISABLED")
    if not announced:
        case.requirement_not_applicable("tls.logindisabled", "the server did not announce LOGINDISABLED on the "
                                        "cleartext port (nothing for the intermediary to hide)")
    acct = case.account(0)
    try:
        res = imap.login(acct.username, acct.password)
    except (ServerClosed, ProtocolViolation) as e:
        case.passed(f"server closed instead of accepting a cleartext LOGIN: {e}")
        return
    case.require("mobile.tls.no-starttls-injection", not res.ok,
                 "the server accepted LOGIN with valid credentials over cleartext after an intermediary stripped "
                 "STARTTLS: the password crossed the path unprotected and the session is open")
    if announced:
        case.require("tls.logindisabled", not res.ok,
                     "LOGIN with valid credentials succeeded in cleartext although the server announced LOGINDISABLED "
                     "(an intermediary hid it from the client)")
    case.passed(f"cleartext LOGIN refused behind the stripper: {res.tagged.first_line}")


@pytest.mark.requirement("mobile.tls.no-starttls-injection", "tls.cleartext-auth-denial")
@pytest.mark.uses("submission")
@pytest.mark.scenarios("strip-starttls")
def test_submission_stripped_starttls_cleartext_auth(case):
    """Behind an intermediary that hides STARTTLS, submission still refuses AUTH in cleartext
    (mobile.tls.no-starttls-injection), with the same reply for a wrong password (tls.cleartext-auth-denial)."""
    smtp, kw = _smtp_plain(case, "smtp-stripped")
    if "STARTTLS" in kw:
        raise HarnessError(f"the stripping intermediary left STARTTLS in EHLO: {' '.join(sorted(kw))}")
    acct = case.account(0)
    res = _auth_plain(smtp, case, acct.username, acct.password)
    if not case.require("mobile.tls.no-starttls-injection", res.code != 235,
                        "submission accepted AUTH PLAIN with valid credentials over cleartext after an intermediary "
                        "stripped STARTTLS: the password crossed the path unprotected"):
        case.requirement_not_applicable("tls.cleartext-auth-denial", "cleartext AUTH was not withdrawn: valid "
                                        "credentials were accepted, so there is no denial to compare")
        return
    bad = _auth_plain(smtp, case, acct.username, "wrong-password")
    case.require("tls.cleartext-auth-denial", _same_denial(res, bad),
                 f"valid and invalid credentials get different cleartext denials behind the stripper "
                 f"({res.text!r} vs {bad.text!r})")
    case.passed(f"cleartext AUTH refused behind the stripper: {res.text}")
