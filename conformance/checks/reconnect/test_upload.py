"""Interrupted uploads: an intermediary cuts an APPEND (synchronizing literal, LITERAL+, CATENATE) or a submission
(DATA, BDAT) midway through the message. Afterwards the mailbox holds no new message or the complete one, never
a truncated one (RFC 9051 6.3.12: APPEND is all or nothing), and the submission server relays nothing half-sent."""

from __future__ import annotations

import smtplib
import time
import uuid

import pytest

from conformance.checks.support import append, examine, search_uids
from conformance.errors import HarnessError, NotApplicable, ProtocolViolation, ServerClosed, ServerTimeout
from conformance.protocols.imap import ImapConnection
from conformance.protocols.imapwire import parse_fetch, quote

# a cut inside a TLS record makes the server answer with a TLS alert: also the expected end of the connection
CUT_ERRORS = (ServerClosed, ServerTimeout, ProtocolViolation, smtplib.SMTPServerDisconnected, OSError)
SETTLE_SECONDS = 0.5  # how long the server gets to (wrongly) store a cut upload before the last look


def make_message(marker: str, size: int) -> bytes:
    """A message of about ``size`` octets whose Message-ID and every body line carry ``marker``."""
    head = (f"From: alice@lemonade.test\r\nTo: bob@lemonade.test\r\nSubject: upload {marker}\r\n"
            f"Message-ID: <{marker}@lemonade.test>\r\n\r\n").encode()
    line = (marker + " " + "0123456789" * 7)[:76].encode() + b"\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return head + body + f"end of {marker}\r\n".encode()


def stored_copies(conn: ImapConnection, mailbox: str, marker: str) -> list[bytes]:
    """Every message in ``mailbox`` whose Message-ID names ``marker``, as stored (BODY.PEEK[])."""
    examine(conn, mailbox)
    uids = search_uids(conn, f"HEADER Message-ID {quote(marker)}", blame=None)
    out = []
    if uids:
        fetched = conn.command(f"UID FETCH {','.join(map(str, uids))} (BODY.PEEK[])", timeout=30)
        out = [p[1].get("BODY[]", b"") for r in fetched.untagged if (p := parse_fetch(r))]
    conn.command("UNSELECT")
    return out


def cut_recorded(case, mark: int) -> str | None:
    """The path's own record of a cut made after transcript entry ``mark`` (None: the intermediary cut nothing)."""
    return next((e.text for e in case.transcript.since(mark) if e.direction == "I" and "cut" in e.text), None)


def require_cut(case, mark: int, what: str) -> str:
    """The cut the check armed must have happened, or nothing was judged: the intermediary's record says so."""
    cut = cut_recorded(case, mark)
    if cut is None:
        raise HarnessError(f"the intermediary did not cut the {what} (no cut in the path's record): the upload went "
                           f"through whole, so what the server does with a cut upload was not tested")
    return cut


def cut_append(case, conn: ImapConnection, mailbox: str, variant: str, message: bytes) -> str:
    """Send the APPEND of ``message`` so that the intermediary cuts it about halfway through the literal."""
    half = len(message) // 2
    tag = conn.next_tag()
    box = quote(mailbox)
    if variant == "literal":
        conn.send_raw(f"{tag} APPEND {box} {{{len(message)}}}\r\n".encode())
        resp = conn.read_response(waiting_for="(continuation for the literal)")
        if not resp.is_continuation:
            raise HarnessError(f"APPEND literal refused before the cut: {resp.first_line}")
        case.path.kill_after(half, side="client", endpoint="imap")
        conn.send_raw(message + b"\r\n",
                      note=f"[{len(message)} octets of literal; the intermediary cuts after ~{half}]")
    else:
        if variant == "literal+":
            head = f"{tag} APPEND {box} {{{len(message)}+}}\r\n".encode()
        else:  # catenate
            head = f"{tag} APPEND {box} CATENATE (TEXT {{{len(message)}+}}\r\n".encode()
        case.path.kill_after(len(head) + half, side="client", endpoint="imap")
        conn.send_raw(head, note=head.decode().strip())
        tail = b")\r\n" if variant == "catenate" else b"\r\n"
        conn.send_raw(message + tail, note=f"[{len(message)} octets of literal; the intermediary cuts after ~{half}]")
    try:
        res = conn.wait_tagged(tag, timeout=5)
        return f"server answered before the cut: {res.tagged.first_line}"
    except CUT_ERRORS:
        conn.close()
        return "connection cut mid-literal"


@pytest.mark.requirement("mobile.upload.no-partial-message")
@pytest.mark.scenarios("kill")
@pytest.mark.parametrize("variant", ["literal", "literal+", "catenate"])
def test_append_cut_midway(case, variant):
    """APPEND cut halfway through its literal leaves no message or the complete one; a repeated, uncut APPEND
    through the same path then stores the message exactly."""
    checker = case.imap(via_path=False, label="checker")
    caps = checker.capability()
    if variant == "literal+" and "LITERAL-" not in caps:
        case.require_capability(caps, "LITERAL+")
    if variant == "catenate":
        case.require_capability(caps, "CATENATE")
        if "LITERAL+" not in caps:
            raise NotApplicable("CATENATE variant is sent with LITERAL+, which the target does not advertise")
    mailbox = case.scratch_mailbox(checker, "upload")
    size = case.param("message_size")
    marker = f"cut-{variant.replace('+', 'plus')}-{uuid.uuid4().hex[:10]}"
    message = make_message(marker, size)
    conn = case.imap(label=f"append-{variant}")
    mark = case.transcript.mark()
    outcome = cut_append(case, conn, mailbox, variant, message)
    case.note(outcome)
    require_cut(case, mark, f"APPEND ({variant})")
    deadline = time.monotonic() + SETTLE_SECONDS
    copies: list[bytes] = []
    while True:  # bounded: look now and until the settle time is over
        copies = stored_copies(checker, mailbox, marker)
        if copies or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    bad = [len(c) for c in copies if c != message]
    assert not bad, (f"APPEND ({variant}) cut midway stored a message that is not the one sent: {bad} octets stored, "
                     f"{len(message)} sent")
    assert len(copies) <= 1, f"APPEND ({variant}) cut midway stored {len(copies)} copies"
    # control: the same upload, uncut, works through the same path
    again = case.imap(label=f"append-{variant}-again")
    if variant == "catenate":
        res = again.command(f"APPEND {quote(mailbox)} CATENATE (TEXT {{{len(message)}+}}\r\n{message.decode()})")
    else:
        res = append(again, mailbox, message, blame=None).result
    assert res.ok, f"the uncut APPEND ({variant}) failed: {res.tagged.first_line}"
    after = stored_copies(checker, mailbox, marker)
    assert message in after, f"the uncut APPEND ({variant}) was not stored exactly ({[len(c) for c in after]} octets)"
    case.passed(f"{outcome}: {'the complete message' if copies else 'no message'} stored; uncut retry stored exactly")


def submission_session(case):
    """A submission session through the path: STARTTLS and AUTH when the server offers them."""
    smtp = case.submission(account=None, tls="none")
    if smtp.has_extn("starttls"):
        smtp.starttls(context=case.target.tls.client_context())
        smtp.ehlo("client.test")
    if smtp.has_extn("auth"):
        acct = case.account(0)
        smtp.login(acct.username, acct.password)
        smtp.ehlo("client.test")
    return smtp


def cut_submission(case, smtp, command: str, message: bytes) -> str:
    """Send ``message`` with DATA or BDAT so that the intermediary cuts it about halfway through."""
    half = len(message) // 2
    code, msg = smtp.mail("alice@lemonade.test")
    if code != 250:
        raise HarnessError(f"MAIL FROM refused: {code} {msg!r}")
    code, msg = smtp.rcpt("bob@lemonade.test")
    if code not in (250, 251):
        raise HarnessError(f"RCPT TO refused: {code} {msg!r}")
    try:
        if command == "DATA":
            smtp.putcmd("data")
            code, msg = smtp.getreply()
            if code != 354:
                raise HarnessError(f"DATA refused: {code} {msg!r}")
            case.path.kill_after(half, side="client", endpoint="submission")
            smtp.send(message + b".\r\n")
        else:
            head = f"BDAT {len(message)} LAST\r\n".encode()
            case.path.kill_after(len(head) + half, side="client", endpoint="submission")
            smtp.send(head + message)
        code, msg = smtp.getreply()
        return f"server answered before the cut: {code} {msg!r}"
    except CUT_ERRORS:
        smtp.close()
        return "connection cut mid-message"


@pytest.mark.requirement("mobile.upload.no-partial-message")
@pytest.mark.uses("submission")
@pytest.mark.scenarios("kill")
@pytest.mark.parametrize("command", ["DATA", "BDAT"])
def test_submission_cut_midway(case, command):
    """A submission cut halfway through DATA or BDAT relays nothing half-sent (the reference target's relay sink
    keeps every relayed message); an uncut retry through the same path is relayed exactly."""
    sink = getattr(case.target, "sink", None)
    if sink is None:
        raise NotApplicable("what the submission server relays is only visible with a relay sink (embedded targets)")
    smtp = submission_session(case)
    if command == "BDAT" and not smtp.has_extn("chunking"):
        case.require_capability([], "CHUNKING")
    size = case.param("message_size")
    marker = f"cut-{command.lower()}-{uuid.uuid4().hex[:10]}"
    message = make_message(marker, size)
    mark = case.transcript.mark()
    outcome = cut_submission(case, smtp, command, message)
    case.note(outcome)
    require_cut(case, mark, f"submission ({command})")
    relayed = sink.wait_for(lambda m: marker.encode() in m.data, SETTLE_SECONDS)
    if relayed is not None:
        assert relayed.data.rstrip(b"\r\n") == message.rstrip(b"\r\n") or message.rstrip(b"\r\n") in relayed.data, (
            f"a submission cut during {command} was relayed truncated: {len(relayed.data)} octets relayed of "
            f"{len(message)} sent")
    aborted = [a for a in sink.aborted]
    # control: the uncut message goes through the same path and is relayed
    again = submission_session(case)
    again.sendmail("alice@lemonade.test", ["bob@lemonade.test"], message)
    got = sink.wait_for(lambda m: marker.encode() in m.data, 10)
    assert got is not None, "the uncut retry was not relayed within 10 s"
    assert message.rstrip(b"\r\n") in got.data, f"the uncut retry was relayed altered ({len(got.data)} octets)"
    case.passed(f"{outcome}: {'complete message' if relayed else 'nothing'} relayed for the cut {command}"
                f"{f' (relay saw {len(aborted)} aborted transaction(s))' if aborted else ''}; uncut retry relayed")
