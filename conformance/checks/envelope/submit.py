"""Submission steps the BURL checks share: a stored message with its submit+ URL, SMTP replies, what the relay got.

What the MSA relayed is observable only on targets whose provider runs the relay (the embedded Dovecot's SMTP sink,
``case.target.sink``); elsewhere a check judges the replies alone and says so. ``nothing_relayed`` proves an absence
without a fixed sleep: a marker message submitted afterwards on the same MSA must arrive, and every earlier message
arrives before it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from conformance.checks.support import Blame, append, search_uids, select
from conformance.errors import NotApplicable
from conformance.protocols.smtp import CapturingSMTP

from .urlauth import genurlauth, rump

TRACE_FIELDS = {b"received", b"return-path"}


@dataclass
class Stored:
    """A message stored for BURL: where it is and its octets."""

    mailbox: str
    uidvalidity: int | None
    uid: int
    data: bytes


def store(case, imap, data: bytes, prefix: str = "burl", *, mailbox: str | None = None) -> Stored:
    """APPEND ``data`` to a scratch mailbox (or ``mailbox``) and select it (set-up: the harness's)."""
    box = mailbox or case.scratch_mailbox(imap, prefix)
    sel = select(imap, box)
    done = append(imap, box, data)
    uid = done.uid if done.uid is not None else max(search_uids(imap), default=1)
    return Stored(box, done.uidvalidity or sel.uidvalidity, uid, data)


def submit_url(case, imap, stored: Stored, *, section: str | None = None, user: str | None = None,
               blame: Blame | None = Blame.PREREQUISITE) -> str:
    """A ``submit+<user>`` URLAUTH URL for the stored message (default user: the account's own); a store that makes
    none leaves the BURL requirement unjudged (not-applicable, with its answer)."""
    access = f"submit+{user or case.account(0).username}"
    url, _ = genurlauth(imap, rump(case, stored.mailbox, stored.uidvalidity, stored.uid, access, section=section),
                        blame=blame)
    assert url is not None
    return url


def burl_submission(case, *, label_caps: tuple[str, ...] = ("BURL",)) -> tuple[CapturingSMTP, dict[str, str]]:
    """An authenticated submission session whose EHLO offers every keyword of ``label_caps`` (else not-applicable)."""
    smtp = case.submission()
    kw = smtp.ehlo_keywords()
    missing = [k for k in label_caps if k not in kw]
    if missing:
        raise NotApplicable(f"submission does not advertise {' '.join(missing)} after AUTH (EHLO: {' '.join(sorted(kw))})")
    return smtp, kw


def unique_address(what: str) -> str:
    """A recipient address no other case uses."""
    return f"{what}-{os.urandom(5).hex()}@lemonade.test"


def reply(smtp: CapturingSMTP, command: str) -> tuple[int, str]:
    """Send one command; its reply code and text."""
    code, msg = smtp.docmd(command)
    return code, msg.decode("utf-8", "replace")


def bdat(smtp: CapturingSMTP, chunk: bytes, last: bool = False) -> tuple[int, str]:
    """BDAT with ``chunk`` (RFC 3030), LAST when asked."""
    smtp.send(f"BDAT {len(chunk)}{' LAST' if last else ''}\r\n".encode() + chunk)
    code, msg = smtp.getreply()
    return code, msg.decode("utf-8", "replace")


def sink(case) -> Any:
    """The relay behind the target's submission service, or None when the provider does not run it."""
    return getattr(case.target, "sink", None)


def relayed_to(case, address: str, timeout: float = 10.0):
    """The message the relay received for ``address`` within ``timeout`` s (None without one)."""
    s = sink(case)
    return s.wait_for(lambda m: any(address in r for r in m.rcpt_to), timeout) if s else None


def nothing_relayed(case, addresses: list[str], timeout: float = 10.0) -> list[str] | None:
    """The addresses among ``addresses`` the relay received mail for, checked after a marker message submitted now
    has arrived (the sink keeps messages in order of arrival); None when the relay is not observable or the marker
    never came (then the absence proves nothing)."""
    s = sink(case)
    if s is None:
        return None
    marker = unique_address("marker")
    smtp = case.submission(via_path=False)
    smtp.sendmail(case.account(0).username + "@lemonade.test", [marker],
                  b"From: marker@lemonade.test\r\nSubject: marker\r\n\r\nsent after the transactions under test\r\n")
    if relayed_to(case, marker, timeout) is None:
        return None
    return [a for a in addresses if any(a in r for m in s.messages for r in m.rcpt_to)]


def header_fields(message: bytes) -> tuple[list[bytes], bytes]:
    """(the header's fields, each with its folded lines, as sent; the body after the blank line)."""
    head, sep, body = message.partition(b"\r\n\r\n")
    fields: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        else:
            fields.append(line)
    return fields, body if sep else b""


def field_name(field: bytes) -> bytes:
    """The lower-cased name of a header field."""
    return field.split(b":", 1)[0].strip().lower()


def added_fields(original: bytes, relayed: bytes) -> tuple[list[bytes], list[str]]:
    """(header fields the relayed copy has beyond the original's, what else changed: fields lost, reordered or
    rewritten, a different body)."""
    ofields, obody = header_fields(original)
    rfields, rbody = header_fields(relayed)
    changes, extra, pos = [], [], 0
    for f in rfields:
        if pos < len(ofields) and f == ofields[pos]:
            pos += 1
        else:
            extra.append(f)
    if pos < len(ofields):
        changes.append(f"header field {ofields[pos][:80]!r} missing or rewritten")
    if rbody != obody:
        from conformance.fixtures.smime import first_difference

        changes.append(f"body changed: {first_difference(obody, rbody)}")
    return extra, changes


def mail_from_params(mail_from: str) -> set[str]:
    """The ESMTP parameters of a MAIL FROM argument as the relay received it, upper-cased ('BODY=8BITMIME', ...)."""
    return {p.upper() for p in re.split(r"\s+", mail_from.split(">", 1)[-1].strip()) if p}
