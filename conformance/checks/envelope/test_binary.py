"""BINARY (RFC 3516): unknown transfer encodings, CRLF in textual sections, the BODYSTRUCTURE view of binary parts, and
headers left alone (no RFC 2047 conversion either way).

A server may store a binary part as it likes, but what it sends must be self-consistent: BODYSTRUCTURE describes the
part with an encoding of the base specification, BODY[n] is that encoding of the octets BINARY[n] returns, and textual
sections always end their lines with CRLF, whatever the store keeps on disk.
"""

from __future__ import annotations

import base64
import binascii
import os
import quopri
import re

import pytest

from conformance.checks.support import Blame, append, fetch_uid, select
from conformance.errors import ConformanceFailure
from conformance.fixtures.smime import first_difference
from conformance.protocols.imapwire import body_part, fetch_list

BOUNDARY = b"lemonade-binary-boundary"
ENCODED_WORD = b"=?utf-8?q?caf=C3=A9_cr=C3=A8me?="
BINARY_DATA = bytes(range(0, 10)) + bytes(range(14, 256)) + b"\x00\xff\x00 end"  # no CR, no LF: not textual at all


def message(cte: bytes = b"binary", data: bytes = BINARY_DATA) -> bytes:
    """A two-part message: a text part with CRLF lines and an RFC 2047 Subject, and a part with ``cte``."""
    return (b"From: binary-check@lemonade.test\r\nTo: alice@lemonade.test\r\nSubject: " + ENCODED_WORD + b"\r\n"
            b"Message-ID: <binary-" + os.urandom(5).hex().encode() + b"@lemonade.test>\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"" + BOUNDARY + b"\"\r\n\r\n"
            b"--" + BOUNDARY + b"\r\nContent-Type: text/plain; charset=us-ascii\r\n"
            b"Content-Transfer-Encoding: 7bit\r\n\r\nfirst line\r\nsecond line\r\n\r\nafter an empty line\r\n"
            b"--" + BOUNDARY + b"\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: " + cte
            + b"\r\n\r\n" + data + b"\r\n--" + BOUNDARY + b"--\r\n")


def bare_line_ends(data: bytes) -> list[str]:
    """Where ``data`` has an LF without CR before it or a CR without LF after it (first three)."""
    out = []
    for m in re.finditer(rb"(?<!\r)\n|\r(?!\n)", data):
        kind = "LF" if m.group(0) == b"\n" else "CR"
        out.append(f"bare {kind} at octet {m.start()}")
        if len(out) == 3:
            break
    return out


@pytest.mark.requirement("binary.unknown-cte")
def test_binary_unknown_cte(case):
    """FETCH BINARY[2] and BINARY.SIZE[2] of a part whose Content-Transfer-Encoding the server cannot know fail with
    tagged NO [UNKNOWN-CTE] (RFC 3516 4.2, 4.3)."""
    imap = case.imap()
    case.require_capability(imap.capability(), "BINARY")
    box = case.scratch_mailbox(imap, "unknown-cte")
    select(imap, box)
    done = append(imap, box, message(b"x-lemonade-unknown", b"some text the server cannot decode"))
    uid = done.uid or 1
    seen, problems = [], []
    for item in ("BINARY.PEEK[2]", "BINARY.SIZE[2]"):
        res = imap.command(f"UID FETCH {uid} ({item})")
        seen.append(f"{item}: {res.tagged.first_line}")
        code = (res.code or "").upper()
        if res.status != "NO" or code != "UNKNOWN-CTE":
            problems.append(f"UID FETCH {item} of a part with CTE x-lemonade-unknown answered "
                            f"{res.tagged.first_line!r}, expected tagged NO [UNKNOWN-CTE]")
    case.require("binary.unknown-cte", not problems, "; ".join(problems))
    case.passed("; ".join(seen))


def _bodystructure(imap, uid: int) -> list:
    """The message's BODYSTRUCTURE (a judged step: no parsable one fails)."""
    res = imap.command(f"UID FETCH {uid} (BODYSTRUCTURE)")
    for r in res.untagged:
        value = fetch_list(r, "BODYSTRUCTURE")
        if value is not None:
            return value
    raise ConformanceFailure(f"UID FETCH {uid} (BODYSTRUCTURE) gave no BODYSTRUCTURE: {res}")


def _decode(encoding: str, text: bytes) -> bytes | None:
    """``text`` decoded from a base-spec transfer encoding (None when it is not valid in it)."""
    enc = encoding.lower()
    try:
        if enc == "base64":
            return base64.b64decode(re.sub(rb"\s+", b"", text), validate=True)
        if enc == "quoted-printable":
            return quopri.decodestring(text)
    except (binascii.Error, ValueError):
        return None
    return text if enc in ("7bit", "8bit") else None


@pytest.mark.requirement("binary.crlf-output", "binary.bodystructure-view", "binary.no-rfc2047")
def test_binary_append_seen_as_text(case):
    """After APPEND with literal8 of a message with a binary part: every textual section (BODY[], BODY[HEADER],
    BODY[1], BINARY[1]) uses CRLF line ends (RFC 3516 6); BODYSTRUCTURE gives the binary part a base-spec encoding
    and BODY[2] is that encoding of the octets BINARY[2] returns, with the size BODYSTRUCTURE states; the RFC 2047
    Subject comes back as appended in BODY[HEADER] and BINARY[] (RFC 3516 5)."""
    imap = case.imap()
    case.require_capability(imap.capability(), "BINARY")
    box = case.scratch_mailbox(imap, "binary-text")
    select(imap, box)
    data = message()
    done = append(imap, box, data, literal="literal8", blame=Blame.SERVER)
    uid = done.uid or 1
    items = fetch_uid(imap, uid, "BODY.PEEK[]", "BODY.PEEK[HEADER]", "BODY.PEEK[1]", "BINARY.PEEK[1]",
                      "BODY.PEEK[2]", "BINARY.PEEK[2]", "BINARY.PEEK[]", blame=Blame.SERVER)
    texts = {k: items.get(k) for k in ("BODY[]", "BODY[HEADER]", "BODY[1]", "BINARY[1]")}
    missing = [k for k, v in texts.items() if not isinstance(v, bytes)]
    if missing:
        raise ConformanceFailure(f"UID FETCH returned no {', '.join(missing)} for the appended message")
    # 1. CRLF in every textual section
    bare = {k: bare_line_ends(v) for k, v in texts.items() if bare_line_ends(v)}
    case.require("binary.crlf-output", not bare,
                 "textual sections must end lines with CRLF (RFC 3516 6): "
                 + "; ".join(f"{k}: {', '.join(v)}" for k, v in bare.items()))
    # 2. the BODYSTRUCTURE view of the binary part, and BODY[2] matching it
    part = body_part(_bodystructure(imap, uid), "2")
    view: list[str] = []
    if not part or len(part) < 7 or not isinstance(part[5], str):
        view.append(f"BODYSTRUCTURE has no usable entry for part 2: {part!r}")
    else:
        encoding, size = part[5], part[6]
        body2, binary2 = items.get("BODY[2]"), items.get("BINARY[2]")
        if encoding.lower() not in ("7bit", "8bit", "base64", "quoted-printable"):
            view.append(f"BODYSTRUCTURE gives part 2 the encoding {encoding!r}, not one of the base specification")
        elif not isinstance(body2, bytes):
            view.append("no BODY[2] to compare with the BODYSTRUCTURE view")
        else:
            decoded = _decode(encoding, body2)
            if decoded != BINARY_DATA:
                view.append(f"BODY[2] is not the {encoding} form of the appended octets: "
                            + ("it does not decode" if decoded is None else first_difference(BINARY_DATA, decoded)))
            if str(size) != str(len(body2)):
                view.append(f"BODYSTRUCTURE says part 2 has {size} octets, BODY[2] has {len(body2)}")
        if binary2 != BINARY_DATA:
            view.append(f"BINARY[2] is not the appended octets: {first_difference(BINARY_DATA, binary2 or b'')}")
    case.require("binary.bodystructure-view", not view, "; ".join(view))
    # 3. the encoded-word Subject as appended, in BODY[HEADER] and BINARY[]
    conversions = []
    for key in ("BODY[HEADER]", "BINARY[]"):
        got = items.get(key)
        if not isinstance(got, bytes):
            conversions.append(f"no {key} returned")
        elif b"Subject: " + ENCODED_WORD + b"\r\n" not in got:
            subject = re.search(rb"(?im)^subject:[^\r\n]*", got)
            conversions.append(f"{key} has {subject.group(0)[:80] if subject else 'no Subject'!r} instead of the "
                               f"appended 'Subject: {ENCODED_WORD.decode()}'")
    case.require("binary.no-rfc2047", not conversions, "headers must not be converted (RFC 3516 5): "
                 + "; ".join(conversions))
    case.attach("binary_view", [{"part 2 in BODYSTRUCTURE": " ".join(str(x) for x in (part or [])[:7]),
                                 "BODY[2] octets": len(items.get("BODY[2]") or b""),
                                 "BINARY[2] octets": len(items.get("BINARY[2]") or b"")}])
    case.passed(f"CRLF in BODY[], BODY[HEADER], BODY[1], BINARY[1]; part 2 seen as {part[5] if part else '?'} "
                f"consistently; Subject unchanged")
