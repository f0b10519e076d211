"""BURL submission (RFC 4468, RFC 5550 4 and 10.2, RFC 6409 8): refusals, chunking, 8-bit content, limits, TLS.

The message content comes from the store by URLAUTH URL (``submit+<user>``), so the MSA must check who may use the
URL, fail the whole transaction when a URL cannot be resolved, judge the size of what it assembled rather than what
the client declared, and change nothing it relays beyond what RFC 6409 8 allows. What the MSA relayed is compared
where the provider runs the relay (the embedded Dovecot's SMTP sink); elsewhere the replies alone are judged.
"""

from __future__ import annotations

import os

import pytest

from conformance.errors import NotApplicable
from conformance.fixtures.smime import SmimeKit, first_difference

from .harness_store import HarnessStore
from .roundtrip import reversible_conversion
from .submit import (
    TRACE_FIELDS,
    added_fields,
    bdat,
    burl_submission,
    field_name,
    mail_from_params,
    nothing_relayed,
    relayed_to,
    reply,
    sink,
    store,
    submit_url,
    unique_address,
)

NOTE = (b"From: burl-check@lemonade.test\r\nTo: someone@lemonade.test\r\nSubject: BURL check {n}\r\n"
        b"Message-ID: <burl-{n}@lemonade.test>\r\nDate: Thu, 01 Jan 2026 12:00:00 +0000\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n\r\nContent the MSA fetches from the store.\r\n")


def note(tag: str = "") -> bytes:
    """A small message unique to this case."""
    return NOTE.replace(b"{n}", (tag + os.urandom(5).hex()).encode())


@pytest.fixture(scope="module")
def smime():
    """The S/MIME kit of this module (its 8bit signed fixture), removed afterwards."""
    kit = SmimeKit()
    yield kit
    kit.cleanup()


def _refused(code: int) -> bool:
    return code >= 400


@pytest.mark.requirement("burl.failure-modes", "burl.submit-plus-check")
@pytest.mark.uses("imap", "submission")
def test_burl_refusals(case):
    """BURL fails with no valid recipient (RFC 4468 3.2: 503/554 5.5.0), with a ``submit+<other user>`` URL (3.3),
    and with a revoked URL (554 5.6.6 / 451 4.4.1), also after an earlier chunk succeeded: the whole transaction
    fails and nothing reaches the relay (proved with a marker message submitted afterwards)."""
    smtp, _ = burl_submission(case)
    imap = case.imap()
    case.require_capability(imap.capability(), "URLAUTH")
    stored = store(case, imap, note("refusals"), "burl-refuse")
    good = submit_url(case, imap, stored)
    other = case.account(1).username if len(case.target.accounts) > 1 else "nobody-" + os.urandom(3).hex()
    foreign = submit_url(case, imap, stored, user=other, section="TEXT")
    sender = f"<{case.account(0).username}@lemonade.test>"
    rcpt = {k: unique_address(f"burl-{k}") for k in ("foreign", "revoked", "partial")}
    steps, modes, plus = [], [], []

    def step(name: str, command: str) -> tuple[int, str]:
        code, text = reply(smtp, command)
        steps.append({"step": name, "command": command.split(":internal:")[0][:90], "reply": f"{code} {text[:120]}"})
        return code, text

    # 1. no valid recipient: BURL must fail before resolving the URL
    step("no valid RCPT", f"MAIL FROM:{sender}")
    step("no valid RCPT", "RCPT TO:<not an address>")
    code, text = step("no valid RCPT", f"BURL {good} LAST")
    if not code >= 500:
        modes.append(f"BURL with no valid recipient answered {code} {text[:100]} (expected 503/554 5.5.0)")
    step("reset", "RSET")
    # 2. a submit+ URL of another user: the MSA must refuse it for this authorization identity
    step("submit+other", f"MAIL FROM:{sender}")
    step("submit+other", f"RCPT TO:<{rcpt['foreign']}>")
    code, text = step("submit+other", f"BURL {foreign} LAST")
    if not code >= 500:
        plus.append(f"BURL of a submit+{other} URL in {case.account(0).username}'s session answered {code} {text[:100]}")
    step("reset", "RSET")
    # 3. a revoked URL (RESETKEY), alone and after a chunk that resolved
    fresh = submit_url(case, imap, stored, section="TEXT")
    reset = imap.command(f"RESETKEY \"{stored.mailbox}\"")
    if not reset.ok:
        raise NotApplicable(f"RESETKEY refused, no revoked URL to submit: {reset.tagged.first_line}")
    good_after = submit_url(case, imap, stored)
    step("revoked URL", f"MAIL FROM:{sender}")
    step("revoked URL", f"RCPT TO:<{rcpt['revoked']}>")
    code, text = step("revoked URL", f"BURL {fresh} LAST")
    if not _refused(code):
        modes.append(f"BURL of a revoked URL answered {code} {text[:100]} (expected 554 5.6.6 or 451 4.4.1)")
    step("reset", "RSET")
    step("chunk, then revoked URL", f"MAIL FROM:{sender}")
    step("chunk, then revoked URL", f"RCPT TO:<{rcpt['partial']}>")
    first, _ = step("chunk, then revoked URL", f"BURL {good_after}")
    code, text = step("chunk, then revoked URL", f"BURL {fresh} LAST")
    if first < 400 and not _refused(code):
        modes.append(f"a revoked URL after a resolved chunk answered {code} {text[:100]}: the transaction went on")
    step("reset", "RSET")
    case.attach("burl_steps", steps)
    leaked = nothing_relayed(case, list(rcpt.values()))
    if leaked is None:
        case.note("the relay is not observable on this target: only the replies were judged")
    else:
        for a in leaked:
            (plus if "foreign" in a else modes).append(f"the relay received a message for {a} although BURL failed")
    case.require("burl.failure-modes", not modes, "; ".join(modes))
    case.require("burl.submit-plus-check", not plus, "the MSA must refuse a submit+ URL of another user (RFC 4468 "
                 "3.3): " + "; ".join(plus))
    case.passed("no recipient, another user's submit+ URL, a revoked URL and a revoked URL after a good chunk all "
                "refused" + ("; nothing relayed" if leaked is not None else ""))


@pytest.mark.requirement("burl.bdat-interleave")
@pytest.mark.uses("imap", "submission")
def test_burl_bdat_interleave(case):
    """With CHUNKING, BDAT and BURL interleave until one carries LAST and the message is their concatenation
    (RFC 4468 3.2): BDAT of the header, BURL of the stored body, BDAT of a trailer LAST; the relay gets exactly
    header + body + trailer after its trace fields."""
    if sink(case) is None:
        raise NotApplicable("the target's relay is not observable (only the embedded target has an SMTP sink), so the "
                            "concatenation cannot be compared")
    smtp, _ = burl_submission(case, label_caps=("BURL", "CHUNKING"))
    imap = case.imap()
    case.require_capability(imap.capability(), "URLAUTH")
    data = note("bdat")
    stored = store(case, imap, data, "burl-bdat")
    body_url = submit_url(case, imap, stored, section="TEXT")
    head, _, body = data.partition(b"\r\n\r\n")
    trailer = b"-- \r\nappended by BDAT after the BURL chunk\r\n"
    rcpt = unique_address("burl-bdat")
    replies = [reply(smtp, f"MAIL FROM:<{case.account(0).username}@lemonade.test>"), reply(smtp, f"RCPT TO:<{rcpt}>"),
               bdat(smtp, head + b"\r\n\r\n"), reply(smtp, f"BURL {body_url}"), bdat(smtp, trailer, last=True)]
    case.attach("bdat_burl", [{"reply": f"{c} {t[:100]}"} for c, t in replies])
    refused = [f"{c} {t[:100]}" for c, t in replies if c >= 400]
    case.require("burl.bdat-interleave", not refused, f"BDAT/BURL interleaving refused: {'; '.join(refused)}")
    if refused:
        return
    got = relayed_to(case, rcpt)
    expected = head + b"\r\n\r\n" + body + trailer
    if got is None:
        case.require("burl.bdat-interleave", False, "the MSA accepted BDAT+BURL+BDAT LAST but nothing reached the relay "
                     "within 10 s")
        return
    extra, changes = added_fields(expected, got.data)
    untraced = [f[:60] for f in extra if field_name(f) not in TRACE_FIELDS]
    case.require("burl.bdat-interleave", not changes and not untraced,
                 f"the relayed message is not BDAT header + BURL body + BDAT trailer: {'; '.join(changes)}"
                 + (f"; fields added: {untraced}" if untraced else ""))
    case.passed(f"BDAT {len(head) + 4} + BURL {len(body)} + BDAT LAST {len(trailer)} octets relayed as one message")


@pytest.mark.requirement("burl.8bit-downconvert")
@pytest.mark.uses("imap", "submission")
def test_burl_8bit_content(case, smime):
    """A BURL server advertises 8BITMIME (RFC 4468 4) and relays 8-bit content fetched by URL either unchanged to an
    8BITMIME hop (BODY=8BITMIME on the relay's MAIL FROM) or down-converted to 7 bits without loss; whether the
    signed fixture still verifies is reported."""
    smtp, kw = burl_submission(case)
    imap = case.imap()
    case.require_capability(imap.capability(), "URLAUTH")
    if not case.require("burl.8bit-downconvert", "8BITMIME" in kw,
                        f"BURL advertised without 8BITMIME (EHLO after AUTH: {' '.join(sorted(kw))})"):
        return
    fx = next(f for f in smime.fixtures() if f.encoding == "8bit")
    stored = store(case, imap, fx.data, "burl-8bit")
    url = submit_url(case, imap, stored)
    rcpt = unique_address("burl-8bit")
    replies = [reply(smtp, f"MAIL FROM:<{case.account(0).username}@lemonade.test> BODY=8BITMIME"),
               reply(smtp, f"RCPT TO:<{rcpt}>"), reply(smtp, f"BURL {url} LAST")]
    refused = [f"{c} {t[:100]}" for c, t in replies if c >= 400]
    if not case.require("burl.8bit-downconvert", not refused,
                        f"BURL of 8-bit content declared BODY=8BITMIME refused: {'; '.join(refused)}"):
        return
    if sink(case) is None:
        case.passed("8BITMIME advertised and the 8-bit BURL accepted; the relay is not observable here")
        return
    got = relayed_to(case, rcpt)
    if got is None:
        case.require("burl.8bit-downconvert", False, "the MSA accepted the 8-bit BURL but nothing reached the relay "
                     "within 10 s")
        return
    eight_bit_hop = "BODY=8BITMIME" in mail_from_params(got.mail_from)
    extra, changes = added_fields(fx.data, got.data)
    v = smime.verify(got.data)
    row = {"relay MAIL FROM": got.mail_from, "octets": len(got.data),
           "fields added": [field_name(f).decode() for f in extra], "changes": changes,
           "openssl": "signature verifies" if v.ok else f"FAILS: {v.detail[:160]}"}
    case.attach("burl_8bit", [row])
    if eight_bit_hop:
        case.require("burl.8bit-downconvert", not changes,
                     f"the next hop took BODY=8BITMIME, yet the 8-bit content changed on the way: {'; '.join(changes)}")
    else:
        high = next((i for i, b in enumerate(got.data) if b > 127), None)
        converted = reversible_conversion(fx.content, got.data)
        case.require("burl.8bit-downconvert", high is None and converted is not None,
                     "relayed without BODY=8BITMIME, so the content must be down-converted to 7 bits without loss: "
                     + (f"an 8-bit octet at {high}" if high is not None else
                        f"the conversion does not decode to the original ({first_difference(fx.data, got.data)})"))
    case.passed(f"8BITMIME advertised; relayed {'unchanged with BODY=8BITMIME' if eight_bit_hop else 'down-converted'}"
                f"; OpenSSL: {row['openssl']}")


@pytest.mark.requirement("lemonade.submit.size-after-burl")
@pytest.mark.uses("imap", "submission")
def test_submission_size_after_burl(case):
    """The MSA judges its SIZE limit on the message it assembled from BURL URLs, not on the SIZE= the client declared
    (RFC 5550 4.4): MAIL FROM SIZE=200 then BURL of a stored message larger than the limit must be refused (552/554),
    and nothing relayed."""
    smtp, kw = burl_submission(case)
    imap = case.imap()
    case.require_capability(imap.capability(), "URLAUTH")
    limit = int(kw.get("SIZE", "0").strip() or 0) if kw.get("SIZE", "").strip().isdigit() else 0
    if limit <= 0:
        raise NotApplicable(f"the submission server announces no SIZE limit (EHLO: {' '.join(sorted(kw))})")
    bound = case.param("max_limit")
    if limit > bound:
        raise NotApplicable(f"the SIZE limit {limit} is larger than this check stores ({bound:g} octets at this depth)")
    line = b"x" * 76 + b"\r\n"
    head = note("size").partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
    data = head + line * ((limit + 65536) // len(line))
    stored = store(case, imap, data, "burl-size")
    url = submit_url(case, imap, stored)
    rcpt = unique_address("burl-size")
    mail = reply(smtp, f"MAIL FROM:<{case.account(0).username}@lemonade.test> SIZE=200")
    rc = reply(smtp, f"RCPT TO:<{rcpt}>")
    code, text = reply(smtp, f"BURL {url} LAST")
    case.measure("size_limit", limit, "B")
    case.measure("assembled", len(data), "B")
    leaked = nothing_relayed(case, [rcpt])
    problems = []
    if mail[0] >= 400 or rc[0] >= 400:
        raise NotApplicable(f"the MSA refused the envelope before BURL ({mail[0]} {mail[1][:80]}; {rc[0]} {rc[1][:80]})")
    if code < 500:
        problems.append(f"BURL of {len(data)} octets (limit {limit}, declared SIZE=200) answered {code} {text[:100]}")
    if leaked:
        problems.append(f"the relay received the {len(data)}-octet message")
    case.require("lemonade.submit.size-after-burl", not problems,
                 "the MSA must judge its SIZE limit on the assembled message (RFC 5550 4.4): " + "; ".join(problems))
    case.passed(f"{len(data)} octets assembled by BURL over the {limit}-octet limit refused: {code} {text[:80]}")


@pytest.mark.requirement("lemonade.submit.burl-fetch-tls")
@pytest.mark.uses("imap", "submission")
def test_burl_fetch_over_tls(case):
    """When the MSA fetches a BURL URL from an IMAP server, it protects that session with TLS before credentials or
    URLFETCH (RFC 5550 10.2): a URL naming a harness IMAP listener shows what the MSA sends first. An MSA that
    resolves URLs only against its own store, by a channel no client sees, cannot be judged."""
    smtp, _ = burl_submission(case)
    user = case.account(0).username
    harness = HarnessStore(case.transcript, deadline=case.deadline).start()
    case.on_cleanup(harness.stop)
    url = (f"imap://{user}@127.0.0.1:{harness.port}/INBOX;UIDVALIDITY=1/;UID=1;URLAUTH=submit+{user}"
           f":INTERNAL:{os.urandom(16).hex()}")
    reply(smtp, f"MAIL FROM:<{user}@lemonade.test>")
    reply(smtp, f"RCPT TO:<{unique_address('burl-tls')}>")
    code, text = reply(smtp, f"BURL {url} LAST")
    contact = harness.wait(0.3)  # the MSA fetches before it replies: a contact has begun by now
    if contact is None:
        raise NotApplicable(f"the MSA opened no IMAP session to the server the URL names (BURL answered {code} "
                            f"{text[:100]}): it resolves URLs against its own store only, by a channel no client sees")
    case.attach("harness_store", [{"first": contact.first, "protected": contact.protected, "lines": contact.lines}])
    if contact.protected is None:
        raise NotApplicable(f"the MSA connected to the harness store but decided nothing within {case.deadline:g} s "
                            f"({contact.lines or 'silent'})")
    case.require("lemonade.submit.burl-fetch-tls", contact.protected,
                 f"the MSA's IMAP session to fetch the URL sent {contact.first!r} in the clear before STARTTLS "
                 "(RFC 5550 10.2)")
    case.passed(f"the MSA protected its IMAP session first ({contact.first})")


@pytest.mark.requirement("burl.not-on-25")
@pytest.mark.uses("relay")
def test_burl_not_on_port_25(case):
    """A relay on port 25 does not offer BURL, neither before nor after STARTTLS (RFC 4468 3.1: BURL is a submission
    extension). Needs the target's ``relay`` endpoint (an MTA on port 25)."""
    case.require_endpoint("relay")
    plain = case.submission(account=None, endpoint="relay", tls="none")
    seen = {"before TLS": plain.ehlo_keywords()}
    plain.quit()
    if "STARTTLS" in seen["before TLS"]:
        seen["after STARTTLS"] = case.submission(account=None, endpoint="relay", tls="starttls").ehlo_keywords()
    offered = [f"{when}: BURL {kw['BURL']}".strip() for when, kw in seen.items() if "BURL" in kw]
    case.require("burl.not-on-25", not offered, "the port-25 relay advertises BURL (RFC 4468 3.1 keeps it to "
                 "submission): " + "; ".join(offered))
    case.passed("EHLO on the relay " + " and ".join(seen) + ": no BURL")


ALLOWED_ADDITIONS = TRACE_FIELDS | {b"sender", b"date", b"message-id"}


@pytest.mark.requirement("submit.modification-limits")
@pytest.mark.uses("submission")
def test_submission_modifies_only_what_it_may(case, smime):
    """An MSA may add Sender, Date or Message-ID (when missing) and trace fields, nothing else, to 7-bit content it has
    no need to re-encode (RFC 6409 8): a signed message and a bare one (no Date, no Message-ID) submitted with DATA
    reach the relay with every original field and the body octet for octet."""
    if sink(case) is None:
        raise NotApplicable("the target's relay is not observable (only the embedded target has an SMTP sink), so what "
                            "the MSA changed cannot be seen")
    fx = next(f for f in smime.fixtures() if f.name == "signed-7bit")
    bare = b"From: bare@lemonade.test\r\nTo: someone@lemonade.test\r\nSubject: no Date, no Message-ID\r\n\r\nhello\r\n"
    smtp = case.submission()
    problems, rows = [], []
    for name, data in (("signed-7bit", fx.data), ("bare", bare)):
        rcpt = unique_address(f"modify-{name}")
        smtp.sendmail(f"{case.account(0).username}@lemonade.test", [rcpt], data)
        got = relayed_to(case, rcpt)
        if got is None:
            problems.append(f"{name}: nothing reached the relay within 10 s")
            continue
        extra, changes = added_fields(data, got.data)
        present = {field_name(f) for f in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")}
        bad = [f[:60].decode("utf-8", "replace") for f in extra if field_name(f) not in ALLOWED_ADDITIONS
               or (field_name(f) in {b"date", b"message-id", b"sender"} and field_name(f) in present)]
        rows.append({"message": name, "added": [field_name(f).decode() for f in extra], "changes": changes})
        if changes or bad:
            problems.append(f"{name}: " + "; ".join(changes + [f"added {b!r}" for b in bad]))
    case.attach("modifications", rows)
    case.require("submit.modification-limits", not problems,
                 "the MSA changed more than RFC 6409 8 allows: " + "; ".join(problems))
    case.passed("; ".join(f"{r['message']}: added {', '.join(r['added']) or 'nothing'}" for r in rows))
