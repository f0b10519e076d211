"""Signed and encrypted mail survives the store octet for octet (RFC 9051 2.3.1.1, RFC 3516, RFC 4469, RFC 8551).

Every check appends S/MIME fixtures made at run time (conformance/fixtures/smime.py), reads them back with
exact-octet fetches and asks OpenSSL whether the signature still verifies (or the message still decrypts).
The evidence table ``roundtrip`` has one row per fixture and step.
"""

from __future__ import annotations

import re

import pytest

from conformance.checks.support import search_uids, select
from conformance.errors import ConformanceFailure, NotApplicable
from conformance.fixtures.smime import SmimeKit, first_difference
from conformance.protocols.imapwire import quote

from .roundtrip import COPYUID, append, append_finding_uid, body, compare, describe, fetch, reversible_conversion, verifies


@pytest.fixture(scope="module")
def smime():
    """The S/MIME kit of this module: a CA, certificates and the fixtures made at run time (removed afterwards)."""
    kit = SmimeKit()
    yield kit
    kit.cleanup()


@pytest.mark.requirement("imap.msg.append-roundtrip", "mobile.envelope.signed-byte-exact", "smime.part-headers-covered",
                         "smime.canonical-text", "smime.binary-capable", "uidplus.appenduid", "imap.msg.size-matches")
def test_signed_append_fetch_byte_exact(case, smime):
    """APPEND then FETCH BODY[] returns the same octets for every 7bit S/MIME shape, and each still verifies.

    Each requirement is judged on its own: a server without APPENDUID fails uidplus.appenduid only (the
    message is then found with UID SEARCH), and the octets still decide the others.
    """
    imap = case.imap()
    mailbox = case.scratch_mailbox(imap, "signed")
    select(imap, mailbox)
    uidplus = "UIDPLUS" in {c.upper() for c in imap.capability()}
    rows, sizes, appenduid = [], [], []
    for fx in smime.fixtures():
        if fx.encoding != "7bit":
            continue  # 8bit and binary shapes have their own checks: servers may legitimately convert them
        uid, problem = append_finding_uid(imap, mailbox, fx.data)
        if problem:
            appenduid.append(f"{fx.name}: {problem}")
        items = fetch(imap, uid, "BODY.PEEK[]", "RFC822.SIZE")
        seen = items.get("BODY[]", b"")
        rows.append(compare(smime, fx, seen, "APPEND/FETCH BODY[]"))
        if items.get("RFC822.SIZE") != len(seen):
            sizes.append(f"{fx.name}: RFC822.SIZE {items.get('RFC822.SIZE')} but BODY[] has {len(seen)} octets")
    case.attach("roundtrip", rows)
    if uidplus:
        case.require("uidplus.appenduid", not appenduid, "; ".join(appenduid))
    elif "UIDPLUS" in case.required_capabilities():
        case.require("uidplus.appenduid", False, "UIDPLUS is required by the selected profile but not advertised")
    else:
        case.requirement_not_applicable("uidplus.appenduid", "target does not advertise UIDPLUS")
    signed = [r for r in rows if r["fixture"] != "enveloped"]
    _judge_octets(case, "imap.msg.append-roundtrip", rows, "messages", need_openssl=False)
    _judge_octets(case, "mobile.envelope.signed-byte-exact", rows, "signed/encrypted messages")
    _judge_octets(case, "smime.canonical-text", signed, "signed messages")
    _judge_octets(case, "smime.part-headers-covered", [r for r in rows if r["fixture"] == "signed-folded-headers"],
                  "messages with folded part headers")
    _judge_octets(case, "smime.binary-capable", [r for r in rows if r["fixture"] == "enveloped"],
                  "enveloped messages with a binary inner part")
    case.require("imap.msg.size-matches", not sizes, "; ".join(sizes))
    case.passed(f"{len(rows)} S/MIME messages ({', '.join(r['fixture'] for r in rows)}) came back octet for octet; "
                "OpenSSL verified every signature and decrypted the enveloped one")


def _judge_octets(case, rid: str, rows: list[dict], what: str, need_openssl: bool = True) -> None:
    """``rid`` holds if every row's octets came back identical (and, with ``need_openssl``, still verify).
    Identical octets that OpenSSL rejects are the suite's problem (fixture or OpenSSL), not the server's."""
    changed = [r for r in rows if not r["identical"] or (need_openssl and not verifies(r))]
    rejected = [r for r in changed if r["identical"]]
    if rejected:
        case.requirement_error(rid, f"identical octets that OpenSSL rejects (a fixture or OpenSSL problem, not "
                                    f"the server's): {describe(rejected)}")
    changed = [r for r in changed if not r["identical"]]
    case.require(rid, not changed, f"{len(changed)} of {len(rows)} {what} did not come back intact: {describe(changed)}")


@pytest.mark.requirement("imap.msg.append-8bit", "smime.signed-7bit")
def test_signed_8bit_append(case, smime):
    """An 8bit signed part is kept as is, or converted reversibly (RFC 9051 6.3.12), which breaks its signature."""
    imap = case.imap()
    mailbox = case.scratch_mailbox(imap, "signed8")
    select(imap, mailbox)
    fx = next(f for f in smime.fixtures() if f.encoding == "8bit")
    _, uid = append(imap, mailbox, fx.data)
    seen = body(imap, uid)
    row = compare(smime, fx, seen, "APPEND/FETCH BODY[]")
    case.attach("roundtrip", [row])
    if row["identical"]:
        assert verifies(row), f"octets identical but OpenSSL does not verify: {row['openssl']}"
        case.passed("8bit octets kept as appended; the signature verifies")
        return
    converted = reversible_conversion(fx.content, seen)
    assert converted, (f"8bit message changed without a reversible 7bit conversion of its signed part "
                       f"(RFC 9051 6.3.12 allows only that): {row['difference']}")
    case.informational(f"the server converted the 8bit part to {converted} on APPEND, which RFC 9051 6.3.12 "
                       f"allows for a store that cannot keep 8-bit data (decoding it gives back the original "
                       f"octets); the signature "
                       f"{'still verifies' if verifies(row) else 'no longer verifies (' + row['openssl'] + ')'}")


@pytest.mark.requirement("binary.append-no-loss", "binary.fetch-decoded")
def test_binary_append_fetch(case, smime):
    """APPEND with literal8 keeps a binary part's octets: BINARY[part] and BINARY.SIZE return them exactly."""
    imap = case.imap()
    case.require_capability(imap.capability(), "BINARY")
    mailbox = case.scratch_mailbox(imap, "binary")
    select(imap, mailbox)
    fx = next(f for f in smime.fixtures() if f.encoding == "binary")
    blob = fx.content.split(b"Content-Transfer-Encoding: binary\r\n\r\n", 1)[1].rsplit(b"\r\n--", 1)[0]
    _, uid = append(imap, mailbox, fx.data, literal8=True)
    items = fetch(imap, uid, "BINARY.PEEK[1.2]", "BINARY.SIZE[1.2]", "BODY.PEEK[]")
    got = items.get("BINARY[1.2]")
    size = items.get("BINARY.SIZE[1.2]")
    seen = items.get("BODY[]", b"")
    row = compare(smime, fx, seen, "APPEND literal8/FETCH BODY[]")
    row["binary_part"] = "identical" if got == blob else first_difference(blob, got or b"")
    case.attach("roundtrip", [row])
    assert got == blob, f"BINARY[1.2] does not return the appended binary octets: {first_difference(blob, got or b'')}"
    assert size == len(blob), f"BINARY.SIZE[1.2] is {size}, the decoded part has {len(blob)} octets"
    if row["identical"]:
        case.passed(f"binary part kept byte for byte ({len(blob)} octets); BODY[] identical, {row['openssl']}")
        return
    cte = re.search(rb"(?im)^content-transfer-encoding:\s*(base64|quoted-printable)", seen)
    case.informational(
        f"BINARY[1.2] returns the exact {len(blob)} octets, but BODY[] differs from the literal8: the server changed "
        f"the binary part's transfer encoding{' to ' + cte.group(1).decode() if cte else ''} on APPEND, which RFC "
        f"3516 4.4 permits (a plain literal cannot carry NUL); the stored signed message "
        f"{'still verifies' if verifies(row) else 'no longer verifies: ' + row['openssl']}")


@pytest.mark.requirement("imap.msg.immutable", "mobile.envelope.signed-byte-exact", "uidplus.copyuid")
def test_body_stable_across_sessions_flags_copy_move(case, smime):
    """BODY[] of a signed message is the same in a new session, after flag changes, after COPY and after MOVE."""
    imap = case.imap(label="imap-append")
    src = case.scratch_mailbox(imap, "stable")
    dst = case.scratch_mailbox(imap, "stable-copy")
    moved = case.scratch_mailbox(imap, "stable-move")
    fx = next(f for f in smime.fixtures() if f.name == "signed-folded-headers")
    _, uid = append(imap, src, fx.data)
    imap.close()
    rows = []
    other = case.imap(label="imap-second-session")
    select(other, src)
    rows.append(compare(smime, fx, body(other, uid), "a new session"))
    res = other.command(f"UID STORE {uid} +FLAGS (\\Seen \\Flagged $Forwarded)")
    if not res.ok:
        raise ConformanceFailure(f"UID STORE failed: {res.tagged.first_line}")
    other.command(f"UID STORE {uid} -FLAGS (\\Flagged)")
    rows.append(compare(smime, fx, body(other, uid), "flag changes"))
    res = other.command(f"UID COPY {uid} {quote(dst)}")
    assert res.ok, f"UID COPY failed: {res.tagged.first_line}"
    m = COPYUID.search(res.tagged.first_line)
    if not m:
        case.non_strict(f"COPY OK without [COPYUID]: {res.tagged.first_line}")
    caps = other.capability()
    select(other, dst)
    copy_uid = int(m.group(3)) if m else search_uids(other)[-1]
    rows.append(compare(smime, fx, body(other, copy_uid), "COPY"))
    if "MOVE" in caps:
        res = other.command(f"UID MOVE {copy_uid} {quote(moved)}")
        assert res.ok, f"UID MOVE failed: {res.tagged.first_line}"
        m2 = COPYUID.search(res.tagged.first_line) or next(
            (COPYUID.search(r.first_line) for r in res.untagged if COPYUID.search(r.first_line)), None)
        select(other, moved)
        moved_uid = int(m2.group(3)) if m2 else search_uids(other)[-1]
        rows.append(compare(smime, fx, body(other, moved_uid), "MOVE"))
    else:
        case.note("MOVE not advertised: the MOVE step is left out")
    case.attach("roundtrip", rows)
    bad = [r for r in rows if not r["identical"] or not verifies(r)]
    assert not bad, f"BODY[] changed: {describe(rows)}"
    case.passed(f"identical octets and a verifying signature after {', '.join(r['step'] for r in rows)}")


@pytest.mark.requirement("catenate.octets-unchanged", "mobile.envelope.signed-byte-exact")
def test_catenate_signed_part(case, smime):
    """CATENATE rebuilding a signed message from URLs of its parts keeps the signed part byte for byte, unseen."""
    imap = case.imap()
    case.require_capability(imap.capability(), "CATENATE")
    mailbox = case.scratch_mailbox(imap, "catenate")
    uidvalidity = select(imap, mailbox).uidvalidity
    fx = next(f for f in smime.fixtures() if f.name == "signed-7bit")
    _, uid = append(imap, mailbox, fx.data)
    boundary = re.search(rb'boundary="([^"]+)"', fx.data).group(1)
    head = (b"From: Alice Lemonade <alice@lemonade.test>\r\nTo: Carol <carol@lemonade.test>\r\n"
            b"Subject: forwarded without download\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256;\r\n'
            b' boundary="' + boundary + b'"\r\n\r\n--' + boundary + b"\r\n")
    middle = b"\r\n--" + boundary + b"\r\n"
    tail = b"\r\n--" + boundary + b"--\r\n"
    url = f"/{mailbox};UIDVALIDITY={uidvalidity}/;UID={uid}"

    def text(data: bytes) -> bytes:
        """A CATENATE TEXT part as a non-synchronizing literal."""
        return f"TEXT {{{len(data)}+}}\r\n".encode() + data

    parts = [text(head), f'URL "{url}/;SECTION=1.MIME"'.encode(), f'URL "{url}/;SECTION=1"'.encode(), text(middle),
             f'URL "{url}/;SECTION=2.MIME"'.encode(), f'URL "{url}/;SECTION=2"'.encode(), text(tail)]
    tag = imap.next_tag()
    if "LITERAL+" not in imap.capability():
        raise ConformanceFailure("CATENATE check needs LITERAL+ for its TEXT parts (not advertised)")
    imap.send_raw(f"{tag} APPEND {quote(mailbox)} CATENATE (".encode() + b" ".join(parts) + b")\r\n")
    res = imap.wait_tagged(tag)
    assert res.ok, f"APPEND CATENATE from part URLs refused: {res.tagged.first_line}"
    m = re.search(r"APPENDUID \d+ (\d+)", res.tagged.first_line)
    assert m, f"CATENATE OK without APPENDUID: {res.tagged.first_line}"
    built = body(imap, int(m.group(1)))
    expected = head + fx.content + middle + fx.data.split(b"\r\n--" + boundary + b"\r\n", 2)[2].split(
        b"\r\n--" + boundary + b"--", 1)[0] + tail
    v = smime.verify(built)
    row = {"fixture": fx.name, "step": "CATENATE from SECTION=1.MIME, 1, 2.MIME, 2", "identical": built == expected,
           "difference": first_difference(expected, built),
           "openssl": "signature verifies" if v.ok else f"FAILS: {v.detail[:200]}",
           "signed_part_intact": fx.content in built}
    source_flags = fetch(imap, uid, "FLAGS").get("FLAGS", [])
    row["source_flags"] = " ".join(source_flags)
    case.attach("roundtrip", [row])
    assert fx.content in built, f"the signed part's octets were not copied unchanged: {first_difference(expected, built)}"
    assert built == expected, f"the catenated message differs from its parts: {first_difference(expected, built)}"
    assert v.ok, f"the catenated signed message does not verify: {v.detail}"
    assert "\\Seen" not in source_flags, f"CATENATE set \\Seen on the source message (FLAGS {source_flags})"
    case.passed("the message rebuilt from part URLs is octet-identical and its signature verifies; source unseen")


@pytest.mark.requirement("smime.opaque-in-transit", "mobile.envelope.signed-byte-exact", "lemonade.store.keywords")
@pytest.mark.uses("imap", "submission")
def test_burl_submission_byte_exact(case, smime):
    """URLAUTH + BURL submission relays the stored signed message unchanged; $Submitted etc. are storable."""
    sink = getattr(case.target, "sink", None)
    if sink is None:
        raise NotApplicable("the target's relay is not observable (only the embedded target has an SMTP sink), "
                            "so what BURL delivered cannot be compared")
    imap = case.imap()
    caps = imap.capability()
    case.require_capability(caps, "URLAUTH")
    mailbox = case.scratch_mailbox(imap, "burl")
    uidvalidity = select(imap, mailbox).uidvalidity
    fx = next(f for f in smime.fixtures() if f.name == "signed-7bit")
    _, uid = append(imap, mailbox, fx.data, flags="$SubmitPending")
    acct = case.account(0)
    host = case.target.endpoint("imap").host
    rump = f"imap://{acct.username}@{host}/{mailbox};UIDVALIDITY={uidvalidity}/;UID={uid};urlauth=submit+{acct.username}"
    res = imap.command(f"GENURLAUTH {quote(rump)} INTERNAL")
    assert res.ok, f"GENURLAUTH refused: {res.tagged.first_line}"
    found = res.find("GENURLAUTH")
    assert found, "GENURLAUTH OK without an untagged GENURLAUTH response"
    url = re.search(r'GENURLAUTH "?([^"\s]+)', found[0].first_line).group(1)
    smtp = case.submission()
    kw = smtp.ehlo_keywords()
    if "BURL" not in kw:
        raise NotApplicable(f"submission does not advertise BURL (EHLO: {' '.join(sorted(kw))})")
    rcpt = f"burl-{uid}-{uidvalidity}@lemonade.test"
    code, msg = smtp.docmd(f"MAIL FROM:<{acct.username}@lemonade.test>")
    assert code == 250, f"MAIL FROM refused: {code} {msg!r}"
    code, msg = smtp.docmd(f"RCPT TO:<{rcpt}>")
    assert code == 250, f"RCPT TO refused: {code} {msg!r}"
    code, msg = smtp.docmd(f"BURL {url} LAST")
    assert code == 250, f"BURL {url.split(':internal:')[0]}... refused: {code} {msg!r}"
    relayed = sink.wait_for(lambda m: any(rcpt in r for r in m.rcpt_to), 10)
    assert relayed is not None, "BURL was accepted but nothing reached the relay within 10 s"
    data = relayed.data
    prefix = data[: len(data) - len(fx.data)] if data.endswith(fx.data) else b""
    added = re.findall(rb"(?m)^([A-Za-z0-9-]+):", prefix)
    v = smime.verify(data)
    row = {"fixture": fx.name, "step": "URLAUTH + BURL submission, compared with what the relay received",
           "identical_after_trace_fields": data.endswith(fx.data), "fields_added": [a.decode() for a in added],
           "difference": first_difference(fx.data, data[len(prefix):]),
           "openssl": "signature verifies" if v.ok else f"FAILS: {v.detail[:200]}"}
    # the Lemonade flow: the client marks the stored copy $Submitted once submission succeeded
    res = imap.command(f"UID STORE {uid} FLAGS.SILENT ($Submitted $Forwarded)")  # replaces $SubmitPending
    flags = fetch(imap, uid, "FLAGS").get("FLAGS", [])
    row["keywords_after_store"] = " ".join(flags)
    case.attach("roundtrip", [row])
    assert data.endswith(fx.data), (f"the relayed message is not the stored message (plus trace fields): "
                                    f"{first_difference(fx.data, data)}")
    unexpected = [a.decode() for a in added if a.lower() not in (b"received", b"return-path", b"sender")]
    assert not unexpected, f"the MSA prepended non-trace fields {unexpected} (RFC 6409 8 only allows trace fields here)"
    assert v.ok, f"the relayed message does not verify: {v.detail}"
    assert res.ok and {"$Submitted", "$Forwarded"} <= set(flags), (
        f"Lemonade keywords not storable: STORE {res.tagged.first_line}, FLAGS now {flags}")
    after = body(imap, uid)
    assert after == fx.data, f"BODY[] changed after the keyword STORE: {first_difference(fx.data, after)}"
    case.passed(f"relay received the stored octets unchanged (prepended: {', '.join(row['fields_added']) or 'nothing'}); "
                f"signature verifies; $Submitted $Forwarded stored")
