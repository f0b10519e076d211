"""Signed and encrypted mail survives the store octet for octet (RFC 9051 2.3.1.1, RFC 3516, RFC 4469, RFC 8551).

Every check appends S/MIME fixtures made at run time (conformance/fixtures/smime.py), reads them back with
exact-octet fetches and asks OpenSSL whether the signature still verifies (or the message still decrypts).
The evidence table ``roundtrip`` has one row per fixture and step.
"""

from __future__ import annotations

import re
import uuid

import pytest

from conformance.checks.support import search_uids, select
from conformance.errors import ConformanceFailure, NotApplicable
from conformance.fixtures.smime import SmimeKit, first_difference
from conformance.protocols.imapwire import quote

from .roundtrip import (
    COPYUID,
    append,
    append_finding_uid,
    body,
    compare,
    fetch,
    judge_rows,
    reversible_conversion,
    verifies,
)


@pytest.fixture(scope="module")
def smime():
    """The S/MIME kit of this module: a CA, certificates and the fixtures made at run time (removed afterwards)."""
    kit = SmimeKit()
    yield kit
    kit.cleanup()


@pytest.mark.requirement("imap.msg.append-roundtrip", "mobile.envelope.signed-byte-exact", "smime.part-headers-covered",
                         "smime.canonical-text", "smime.binary-capable", "smime.signed-7bit", "uidplus.appenduid",
                         "imap.msg.size-matches")
def test_signed_append_fetch_byte_exact(case, smime):
    """APPEND then FETCH BODY[] returns the same octets for every 7bit S/MIME shape, and each still verifies.

    Each requirement is judged on its own: a server without APPENDUID fails uidplus.appenduid only (the
    message is then found with UID SEARCH), and the octets still decide the others. smime.signed-7bit: a 7-bit
    signed message must survive every store (the rule that makes S/MIME 7-bit is for its producer; what a store
    owes it is to keep it).
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
    judge_rows(case, "imap.msg.append-roundtrip", rows, "messages", need_openssl=False)
    judge_rows(case, "mobile.envelope.signed-byte-exact", rows, "signed/encrypted messages")
    judge_rows(case, "smime.canonical-text", signed, "signed messages")
    judge_rows(case, "smime.signed-7bit", signed, "7-bit signed messages")
    judge_rows(case, "smime.part-headers-covered", [r for r in rows if r["fixture"] == "signed-folded-headers"],
               "messages with folded part headers")
    judge_rows(case, "smime.binary-capable", [r for r in rows if r["fixture"] == "enveloped"],
               "enveloped messages with a binary inner part")
    case.require("imap.msg.size-matches", not sizes, "; ".join(sizes))
    case.passed(f"{len(rows)} S/MIME messages ({', '.join(r['fixture'] for r in rows)}) came back octet for octet; "
                "OpenSSL verified every signature and decrypted the enveloped one")


@pytest.mark.requirement("imap.msg.append-8bit")
def test_signed_8bit_append(case, smime):
    """An 8bit signed part is kept as is, or converted reversibly (RFC 9051 6.3.12), which breaks its signature.

    What OpenSSL says about the stored copy is evidence only: the signature's fate is the producer's business
    (smime.signed-7bit asks the producer for 7 bits; the 7-bit fixtures are judged in signed_append_fetch_byte_exact).
    """
    imap = case.imap()
    mailbox = case.scratch_mailbox(imap, "signed8")
    select(imap, mailbox)
    fx = next(f for f in smime.fixtures() if f.encoding == "8bit")
    _, uid = append(imap, mailbox, fx.data)
    seen = body(imap, uid)
    row = compare(smime, fx, seen, "APPEND/FETCH BODY[]")
    case.attach("roundtrip", [row])
    if row["identical"]:
        case.passed(f"8bit octets kept as appended; OpenSSL: {row['openssl']}")
        return
    converted = reversible_conversion(fx.content, seen)
    assert converted, (f"8bit message changed without a reversible 7bit conversion of its signed part "
                       f"(RFC 9051 6.3.12 allows only that): {row['difference']}")
    case.passed(f"the server converted the 8bit part to {converted} on APPEND, which RFC 9051 6.3.12 allows for a "
                f"store that cannot keep 8-bit data (decoding it gives back the original octets); the signature "
                f"{'still verifies' if verifies(row) else 'no longer verifies (' + row['openssl'] + ')'}")


ENCODED_PARTS = (  # (content transfer encoding, the octets the part decodes to): what BINARY[n] must return
    ("base64", bytes(range(256)) + b"\r\nbase64-encoded octets, NUL included\r\n"),
    # the CRLF before a boundary belongs to the delimiter: the decoded part ends with the space, not a line end
    ("quoted-printable", "Grüße, café = 100 % 7bit-safe\r\nline with trailing space ".encode("utf-8")),
)


def encoded_message() -> bytes:
    """A 7-bit multipart message whose parts carry ENCODED_PARTS in base64 and quoted-printable."""
    import base64
    import quopri

    parts = []
    for cte, data in ENCODED_PARTS:
        encoded = base64.encodebytes(data).replace(b"\n", b"\r\n") if cte == "base64" else \
            quopri.encodestring(data).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        parts.append(b"--enc-b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: "
                     + cte.encode() + b"\r\n\r\n" + encoded.rstrip(b"\r\n") + b"\r\n")
    return (b"From: alice@lemonade.test\r\nTo: bob@lemonade.test\r\nSubject: base64 and quoted-printable parts\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"enc-b\"\r\n\r\n"
            + b"".join(parts) + b"--enc-b--\r\n")


@pytest.mark.requirement("binary.append-no-loss", "binary.fetch-decoded")
def test_binary_append_fetch(case, smime):
    """APPEND with literal8 keeps a binary part's octets (binary.append-no-loss): BINARY[part] and BINARY.SIZE return
    them exactly. FETCH BINARY decodes base64 and quoted-printable parts too, and BINARY.SIZE is the decoded length
    (binary.fetch-decoded)."""
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
    rows = [row]
    kept = got == blob
    for rid in ("binary.append-no-loss", "binary.fetch-decoded"):
        case.require(rid, kept, f"BINARY[1.2] does not return the appended binary octets: "
                                f"{first_difference(blob, got or b'')}")
    case.require("binary.fetch-decoded", size == len(blob),
                 f"BINARY.SIZE[1.2] is {size}, the decoded part has {len(blob)} octets")
    _, enc_uid = append(imap, mailbox, encoded_message())
    wanted = [f"BINARY.PEEK[{n}]" for n in range(1, len(ENCODED_PARTS) + 1)]
    wanted += [f"BINARY.SIZE[{n}]" for n in range(1, len(ENCODED_PARTS) + 1)]
    enc = fetch(imap, enc_uid, *wanted)
    for n, (cte, data) in enumerate(ENCODED_PARTS, start=1):
        part, part_size = enc.get(f"BINARY[{n}]"), enc.get(f"BINARY.SIZE[{n}]")
        rows.append({"fixture": f"{cte} part", "step": f"FETCH BINARY[{n}]", "identical": part == data,
                     "difference": first_difference(data, part or b""), "openssl": "not signed"})
        case.require("binary.fetch-decoded", part == data,
                     f"BINARY[{n}] of a {cte} part is not the decoded content: {first_difference(data, part or b'')}")
        case.require("binary.fetch-decoded", part_size == len(data),
                     f"BINARY.SIZE[{n}] of a {cte} part is {part_size}, the decoded content has {len(data)} octets")
    case.attach("roundtrip", rows)
    if not row["identical"]:
        cte = re.search(rb"(?im)^content-transfer-encoding:\s*(base64|quoted-printable)", seen)
        case.note(f"BODY[] differs from the literal8: the server changed the binary part's transfer encoding"
                  f"{' to ' + cte.group(1).decode() if cte else ''} on APPEND, which RFC 3516 4.4 permits (a plain "
                  f"literal cannot carry its NUL octets); the stored signed message "
                  f"{'still verifies' if verifies(row) else 'no longer verifies: ' + row['openssl']}")
    case.passed(f"binary part kept byte for byte ({len(blob)} octets) by BINARY[1.2]"
                + ("" if row["identical"] else " (BODY[] re-encoded it, as RFC 3516 4.4 permits)")
                + "; base64 and quoted-printable parts decoded by BINARY with their sizes")


def _copy_uid(case, res, what: str, uidplus: bool) -> int | None:
    """The destination UID a COPY or MOVE named in [COPYUID] (tagged or untagged OK); judged for uidplus.copyuid."""
    m = COPYUID.search(res.tagged.first_line) or next(
        (COPYUID.search(r.first_line) for r in res.untagged if COPYUID.search(r.first_line)), None)
    if uidplus:
        case.require("uidplus.copyuid", m is not None, f"{what} OK without [COPYUID]: {res.tagged.first_line}")
    return int(m.group(3)) if m and m.group(3).isdigit() else None


@pytest.mark.requirement("imap.msg.immutable", "mobile.envelope.signed-byte-exact", "uidplus.copyuid")
def test_body_stable_across_sessions_flags_copy_move(case, smime):
    """BODY[] of a signed message is the same in a new session and after flag changes (imap.msg.immutable: same mailbox
    and UID), and after COPY and MOVE too, still verifying (mobile.envelope.signed-byte-exact); COPY and MOVE answer
    with [COPYUID] where UIDPLUS is advertised (uidplus.copyuid)."""
    imap = case.imap(label="imap-append")
    src = case.scratch_mailbox(imap, "stable")
    dst = case.scratch_mailbox(imap, "stable-copy")
    moved = case.scratch_mailbox(imap, "stable-move")
    fx = next(f for f in smime.fixtures() if f.name == "signed-folded-headers")
    _, uid = append(imap, src, fx.data)
    imap.close()
    rows = []
    other = case.imap(label="imap-second-session")
    caps = other.capability()
    uidplus = "UIDPLUS" in {c.upper() for c in caps}
    if not uidplus:
        case.requirement_not_applicable("uidplus.copyuid", "target does not advertise UIDPLUS")
    select(other, src)
    rows.append(compare(smime, fx, body(other, uid), "a new session"))
    res = other.command(f"UID STORE {uid} +FLAGS (\\Seen \\Flagged $Forwarded)")
    if not res.ok:
        raise ConformanceFailure(f"UID STORE failed: {res.tagged.first_line}")
    other.command(f"UID STORE {uid} -FLAGS (\\Flagged)")
    rows.append(compare(smime, fx, body(other, uid), "flag changes"))
    judge_rows(case, "imap.msg.immutable", rows, "reads of the same UID", need_openssl=False)
    res = other.command(f"UID COPY {uid} {quote(dst)}")
    if not res.ok:
        raise ConformanceFailure(f"UID COPY failed: {res.tagged.first_line}")
    copy_uid = _copy_uid(case, res, "COPY", uidplus)
    select(other, dst)
    copy_uid = copy_uid or search_uids(other)[-1]
    rows.append(compare(smime, fx, body(other, copy_uid), "COPY"))
    if "MOVE" in caps:
        res = other.command(f"UID MOVE {copy_uid} {quote(moved)}")
        if not res.ok:
            raise ConformanceFailure(f"UID MOVE failed: {res.tagged.first_line}")
        moved_uid = _copy_uid(case, res, "MOVE", uidplus)
        select(other, moved)
        rows.append(compare(smime, fx, body(other, moved_uid or search_uids(other)[-1]), "MOVE"))
    else:
        case.note("MOVE not advertised: the MOVE step is left out")
    case.attach("roundtrip", rows)
    judge_rows(case, "mobile.envelope.signed-byte-exact", rows, "copies")
    case.passed(f"identical octets and a verifying signature after {', '.join(r['step'] for r in rows)}")


def catenate_command(tag: str, mailbox: str, parts: list[tuple[str, bytes]], nonsync: bool) -> list[bytes]:
    """An APPEND CATENATE command as segments to send: TEXT parts as literals ({n+} when ``nonsync``; else {n}, each
    followed by a wait for the server's '+'), URL parts inline. Between two segments the client waits for '+'."""
    segments, current = [], f"{tag} APPEND {quote(mailbox)} CATENATE (".encode()
    for i, (kind, value) in enumerate(parts):
        sep = b" " if i else b""
        if kind == "URL":
            current += sep + b"URL " + quote(value.decode()).encode()
            continue
        current += sep + f"TEXT {{{len(value)}{'+' if nonsync else ''}}}\r\n".encode()
        if nonsync:
            current += value
        else:
            segments.append(current)
            current = value
    segments.append(current + b")\r\n")
    return segments


@pytest.mark.requirement("catenate.octets-unchanged", "mobile.envelope.signed-byte-exact")
def test_catenate_signed_part(case, smime):
    """CATENATE rebuilding a signed message from URLs of its parts copies the parts octet for octet and leaves the
    source unseen (catenate.octets-unchanged); the rebuilt message verifies (mobile.envelope.signed-byte-exact).
    TEXT parts go as non-synchronizing literals with LITERAL+, else as synchronizing ones."""
    imap = case.imap()
    caps = imap.capability()
    case.require_capability(caps, "CATENATE")
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
    parts = [("TEXT", head), ("URL", f"{url}/;SECTION=1.MIME".encode()), ("URL", f"{url}/;SECTION=1".encode()),
             ("TEXT", middle), ("URL", f"{url}/;SECTION=2.MIME".encode()), ("URL", f"{url}/;SECTION=2".encode()),
             ("TEXT", tail)]
    tag = imap.next_tag()
    nonsync = "LITERAL+" in {c.upper() for c in caps}
    segments = catenate_command(tag, mailbox, parts, nonsync)
    for segment in segments[:-1]:
        imap.send_raw(segment)
        go = imap.read_response(waiting_for="(continuation for a CATENATE TEXT literal)")
        if not go.is_continuation:
            raise ConformanceFailure(f"APPEND CATENATE refused before all its parts were sent: {go.first_line}")
    imap.send_raw(segments[-1])
    res = imap.wait_tagged(tag)
    if not res.ok:
        raise ConformanceFailure(f"APPEND CATENATE from part URLs refused: {res.tagged.first_line}")
    m = re.search(r"APPENDUID \d+ (\d+)", res.tagged.first_line)
    built_uid = int(m.group(1)) if m else max(u for u in search_uids(imap) if u != uid)
    if not m:
        case.note(f"CATENATE OK without APPENDUID ({res.tagged.first_line}); the new message found with UID SEARCH")
    built = body(imap, built_uid)
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
    case.require("catenate.octets-unchanged", fx.content in built,
                 f"the signed part's octets were not copied unchanged: {first_difference(expected, built)}")
    case.require("catenate.octets-unchanged", built == expected,
                 f"the catenated message differs from its parts: {first_difference(expected, built)}")
    case.require("catenate.octets-unchanged", "\\Seen" not in source_flags,
                 f"CATENATE set \\Seen on the source message (FLAGS {source_flags})")
    judge_rows(case, "mobile.envelope.signed-byte-exact", [row], "catenated messages")
    case.passed("the message rebuilt from part URLs is octet-identical and its signature verifies; source unseen")


def _burl_relay(case, sink, imap, mailbox: str, uidvalidity: int, uid: int) -> bytes:
    """GENURLAUTH a submit URL for the stored message, submit it with BURL, and return what the relay received. A
    step the server refuses fails the forwarding requirements (the message cannot be forwarded by URL)."""
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
    rcpt = f"burl-{uid}-{uidvalidity}-{uuid.uuid4().hex[:8]}@lemonade.test"
    code, msg = smtp.docmd(f"MAIL FROM:<{acct.username}@lemonade.test>")
    assert code == 250, f"MAIL FROM refused: {code} {msg!r}"
    code, msg = smtp.docmd(f"RCPT TO:<{rcpt}>")
    assert code == 250, f"RCPT TO refused: {code} {msg!r}"
    code, msg = smtp.docmd(f"BURL {url} LAST")
    assert code == 250, f"BURL {url.split(':internal:')[0]}... refused: {code} {msg!r}"
    relayed = sink.wait_for(lambda m: any(rcpt in r for r in m.rcpt_to), 10)
    assert relayed is not None, "BURL was accepted but nothing reached the relay within 10 s"
    return relayed.data


@pytest.mark.requirement("smime.opaque-in-transit", "mobile.envelope.signed-byte-exact", "lemonade.store.keywords")
@pytest.mark.uses("imap", "submission")
def test_burl_submission_byte_exact(case, smime):
    """URLAUTH + BURL submission relays the stored signed message unchanged, only trace fields prepended
    (smime.opaque-in-transit), and it still verifies (mobile.envelope.signed-byte-exact); $SubmitPending, then
    $Submitted and $Forwarded, are storable on the stored copy, whose octets do not change (lemonade.store.keywords)."""
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
    data = b""
    try:
        data = _burl_relay(case, sink, imap, mailbox, uidvalidity, uid)
    except AssertionError as e:
        for rid in ("smime.opaque-in-transit", "mobile.envelope.signed-byte-exact"):
            case.require(rid, False, f"the stored message could not be forwarded by URL: {e}")
    row = None
    if data:
        prefix = data[: len(data) - len(fx.data)] if data.endswith(fx.data) else b""
        added = re.findall(rb"(?m)^([A-Za-z0-9-]+):", prefix)
        v = smime.verify(data)
        row = {"fixture": fx.name, "step": "URLAUTH + BURL submission, compared with what the relay received",
               "identical": data.endswith(fx.data), "identical_after_trace_fields": data.endswith(fx.data),
               "fields_added": [a.decode() for a in added], "difference": first_difference(fx.data, data[len(prefix):]),
               "openssl": "signature verifies" if v.ok else f"FAILS: {v.detail[:200]}"}
        case.require("smime.opaque-in-transit", data.endswith(fx.data),
                     f"the relayed message is not the stored message (plus trace fields): "
                     f"{first_difference(fx.data, data)}")
        unexpected = [a.decode() for a in added if a.lower() not in (b"received", b"return-path", b"sender")]
        case.require("smime.opaque-in-transit", not unexpected,
                     f"the MSA prepended non-trace fields {unexpected} (RFC 6409 8 only allows trace fields here)")
        judge_rows(case, "mobile.envelope.signed-byte-exact", [row], "relayed messages")
    # the Lemonade flow: the client marks the stored copy $Submitted once submission succeeded
    res = imap.command(f"UID STORE {uid} FLAGS.SILENT ($Submitted $Forwarded)")  # replaces $SubmitPending
    flags = fetch(imap, uid, "FLAGS").get("FLAGS", [])
    if row is not None:
        row["keywords_after_store"] = " ".join(flags)
        case.attach("roundtrip", [row])
    case.require("lemonade.store.keywords", res.ok and {"$Submitted", "$Forwarded"} <= set(flags),
                 f"Lemonade keywords not storable: STORE {res.tagged.first_line}, FLAGS now {flags}")
    after = body(imap, uid)
    case.require("mobile.envelope.signed-byte-exact", after == fx.data,
                 f"BODY[] changed after the keyword STORE: {first_difference(fx.data, after)}")
    case.passed(f"relay received the stored octets unchanged (prepended: "
                f"{', '.join(row['fields_added']) if row else 'nothing'}); signature verifies; $Submitted $Forwarded stored")
