"""What the envelope checks share: APPEND with APPENDUID, FETCH of exact octets, and comparison rows.

A comparison row is the evidence unit of this family: which fixture, which step, whether the octets are
identical (with the first difference when not) and what OpenSSL said about the signature or decryption.
"""

from __future__ import annotations

import hashlib
import re

from conformance.checks.support import Blame, fetch_uid, search_uids, select
from conformance.checks.support import append as append_message
from conformance.errors import ConformanceFailure
from conformance.fixtures.smime import Fixture, SmimeKit, first_difference, split_multipart_signed
from conformance.protocols.imap import ImapConnection

COPYUID = re.compile(r"\[COPYUID (\d+) ([0-9:,]+) ([0-9:,]+)\]", re.I)


def append(imap: ImapConnection, mailbox: str, data: bytes, *, literal8: bool = False,
           flags: str = "") -> tuple[int, int]:
    """APPEND ``data`` (a judged step: a refusal fails); returns (uidvalidity, uid), from APPENDUID when the server
    gives one. Without a usable APPENDUID the message is found with UID SEARCH in the selected scratch mailbox: a
    missing APPENDUID is uidplus.appenduid's business (signed_append_fetch_byte_exact judges it), never a reason to
    fail another requirement. literal8 (~{n}) for binary content."""
    done = append_message(imap, mailbox, data, literal="literal8" if literal8 else "sync", flags=flags,
                          blame=Blame.SERVER)
    if done.uid is not None:
        return done.uidvalidity or 0, done.uid
    selected = select(imap, mailbox)  # set-up: a refusal is the harness's
    found = search_uids(imap, blame=None)
    if not found:
        raise ConformanceFailure(f"the appended message is not in {mailbox}: UID SEARCH ALL found nothing")
    return selected.uidvalidity or 0, max(found)


def append_finding_uid(imap: ImapConnection, mailbox: str, data: bytes) -> tuple[int, str]:
    """APPEND ``data`` (a refusal fails); the new message's UID, and what is wrong with [APPENDUID] ("" when
    nothing). Without a usable APPENDUID the UID comes from UID SEARCH (the scratch mailbox holds only this check's
    messages), so a server without UIDPLUS fails uidplus.appenduid alone."""
    done = append_message(imap, mailbox, data, blame=Blame.SERVER)
    if done.uid is not None:
        return done.uid, ""
    problem = (f"APPENDUID for one message must be a single UID, got {done.uid_set!r}" if done.uid_set else
               f"APPEND OK without [APPENDUID uidvalidity uid]: {done.result.tagged.first_line}")
    found = search_uids(imap, blame=None)
    if not found:
        raise ConformanceFailure(f"the appended message is not in {mailbox}: UID SEARCH ALL found nothing")
    return max(found), problem


def fetch(imap: ImapConnection, uid: int, *items: str) -> dict[str, object]:
    """UID FETCH ``items`` of one message (a judged step); the parsed item dictionary (literals as bytes)."""
    merged = fetch_uid(imap, uid, *items, blame=Blame.SERVER)
    if not merged:
        raise ConformanceFailure(f"UID FETCH {uid} returned no FETCH response for the message")
    return merged


def body(imap: ImapConnection, uid: int) -> bytes:
    """BODY.PEEK[] of one message: the exact octets the store returns."""
    items = fetch(imap, uid, "BODY.PEEK[]")
    data = items.get("BODY[]")
    if not isinstance(data, bytes):
        raise ConformanceFailure(f"UID FETCH {uid} BODY.PEEK[] returned no literal")
    return data


def sha(data: bytes) -> str:
    """A short SHA-256 of octets, for evidence rows."""
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
    """Did OpenSSL verify (or decrypt) what came back in this evidence row?"""
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


def judge_rows(case, rid: str, rows: list[dict], what: str, *, need_openssl: bool = True) -> bool:
    """Judge ``rid`` on evidence rows: every row's octets must come back identical (and, with ``need_openssl``,
    still verify or decrypt). Identical octets that OpenSSL rejects are the suite's problem (a fixture or OpenSSL),
    not the server's: that requirement is error, never fail. Returns whether ``rid`` passed."""
    changed = [r for r in rows if not r["identical"] or (need_openssl and not verifies(r))]
    rejected = [r for r in changed if r["identical"]]
    if rejected:
        case.requirement_error(rid, f"identical octets that OpenSSL rejects (a fixture or OpenSSL problem, not the "
                                    f"server's): {describe(rejected)}")
    changed = [r for r in changed if not r["identical"]]
    return case.require(rid, not changed,
                        f"{len(changed)} of {len(rows)} {what} did not come back intact: {describe(changed)}") \
        and not rejected
