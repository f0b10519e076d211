"""What the envelope checks share: APPEND (literal or literal8), FETCH of exact octets, and comparison rows.

A comparison row is the evidence unit of this family: which fixture, which step, whether the octets are
identical (with the first difference when not) and what OpenSSL said about the signature or decryption.
"""

from __future__ import annotations

import hashlib
import re

from conformance.errors import ConformanceFailure, HarnessError
from conformance.fixtures.smime import Fixture, SmimeKit, first_difference, split_multipart_signed
from conformance.protocols.imap import ImapConnection
from conformance.protocols.imapwire import parse_fetch, quote

APPENDUID = re.compile(r"\[APPENDUID (\d+) ([0-9:,]+)\]", re.I)
COPYUID = re.compile(r"\[COPYUID (\d+) ([0-9:,]+) ([0-9:,]+)\]", re.I)


def append(imap: ImapConnection, mailbox: str, data: bytes, *, literal8: bool = False,
           flags: str = "") -> tuple[int, int]:
    """APPEND ``data``; returns (uidvalidity, uid) from APPENDUID. literal8 (~{n}) for binary content."""
    head = f"APPEND {quote(mailbox)}" + (f" ({flags})" if flags else "")
    if literal8:
        tag = imap.next_tag()
        imap.send_raw(f"{tag} {head} ~{{{len(data)}}}\r\n".encode())
        cont = imap.read_response(waiting_for="for the literal8 continuation")
        if not cont.is_continuation:
            raise ConformanceFailure(f"APPEND with literal8 refused: {cont.first_line}")
        imap.send_raw(data + b"\r\n", note=f"[literal8, {len(data)} octets]")
        res = imap.wait_tagged(tag)
    else:
        res = imap.command(head, literal=data)
    if not res.ok:
        raise ConformanceFailure(f"APPEND of {len(data)} octets refused: {res.tagged.first_line}")
    m = APPENDUID.search(res.tagged.first_line)
    if not m:
        raise ConformanceFailure(f"APPEND OK without [APPENDUID uidvalidity uid]: {res.tagged.first_line}")
    if ":" in m.group(2) or "," in m.group(2):
        raise ConformanceFailure(f"APPENDUID for one message must be a single UID, got {m.group(2)!r}")
    return int(m.group(1)), int(m.group(2))


def fetch(imap: ImapConnection, uid: int, *items: str) -> dict[str, object]:
    """UID FETCH ``items`` of one message; the parsed item dictionary (literals as bytes)."""
    res = imap.command(f"UID FETCH {uid} ({' '.join(items)})")
    if not res.ok:
        raise ConformanceFailure(f"UID FETCH {uid} ({' '.join(items)}) failed: {res.tagged.first_line}")
    merged: dict[str, object] = {}
    for r in res.untagged:
        parsed = parse_fetch(r)
        if parsed and parsed[1].get("UID", uid) == uid:
            merged.update(parsed[1])
    if not merged:
        raise ConformanceFailure(f"UID FETCH {uid} returned no FETCH response for the message")
    return merged


def body(imap: ImapConnection, uid: int) -> bytes:
    items = fetch(imap, uid, "BODY.PEEK[]")
    data = items.get("BODY[]")
    if not isinstance(data, bytes):
        raise ConformanceFailure(f"UID FETCH {uid} BODY.PEEK[] returned no literal")
    return data


def select(imap: ImapConnection, mailbox: str) -> int:
    res = imap.command(f"SELECT {quote(mailbox)}")
    if not res.ok:
        raise HarnessError(f"cannot SELECT {mailbox}: {res.tagged.first_line}")
    m = re.search(r"UIDVALIDITY (\d+)", str(res))
    return int(m.group(1)) if m else 0


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def compare(kit: SmimeKit, fixture: Fixture, seen: bytes, step: str) -> dict:
    """One evidence row: identical octets?, where they differ, and OpenSSL's verdict on what came back."""
    v = kit.check(fixture, seen)
    ok_word = "signature verifies" if fixture.kind != "enveloped" else "decrypts to the original"
    return {"fixture": fixture.name, "step": step, "shape": fixture.shape, "octets_sent": len(fixture.data),
            "octets_back": len(seen), "identical": seen == fixture.data,
            "difference": first_difference(fixture.data, seen), "sha256_back": sha(seen),
            "openssl": ok_word if v.ok else f"FAILS ({'signature' if fixture.kind != 'enveloped' else 'decryption'}): "
            + v.detail[:200]}


def verifies(row: dict) -> bool:
    return not row["openssl"].startswith("FAILS")


def describe(rows: list[dict]) -> str:
    """The failing rows as one sentence each."""
    bad = [r for r in rows if not r["identical"] or not verifies(r)]
    return "; ".join(f"{r['fixture']} after {r['step']}: {'identical' if r['identical'] else r['difference']}; "
                     f"OpenSSL: {r['openssl']}" for r in bad)


def reversible_conversion(entity: bytes, stored: bytes) -> str | None:
    """The 7bit encoding the stored copy's signed part now uses, if decoding it restores the original body."""
    import base64
    import quopri

    parts = split_multipart_signed(stored)
    if not isinstance(parts, tuple):
        return None
    head, _, text = parts[0].partition(b"\r\n\r\n")
    m = re.search(rb"(?im)^content-transfer-encoding:\s*(quoted-printable|base64)\s*$", head)
    if not m:
        return None
    original = entity.partition(b"\r\n\r\n")[2]
    try:
        decoded = quopri.decodestring(text) if m.group(1).lower() == b"quoted-printable" else base64.b64decode(text)
    except ValueError:
        return None
    return m.group(1).decode().lower() if decoded == original else None
