"""Signed mail through intermediaries: an upload and a download cut halfway, then retried, still end byte-exact.

Under ``kill`` the APPEND literal is cut after half its octets and the FETCH response is cut halfway; the
retried operations must leave exactly one intact copy and return the appended octets, and OpenSSL must still
verify the signature. Under ``link`` (latency and rate limits, when that intermediary exists) the plain round
trip is repeated. Any content-rewriting intermediary on the path shows up here as a failed signature with the
first differing octet, while the transcript's two legs show which side sent what.
"""

from __future__ import annotations

import pytest

from conformance.checks.support import search_uids, select
from conformance.errors import HarnessError, ServerClosed, ServerTimeout
from conformance.fixtures.smime import SmimeKit
from conformance.protocols.imapwire import quote

from .roundtrip import append, body, compare, describe, judge_rows


@pytest.fixture(scope="module")
def smime():
    """The S/MIME kit of this module: a CA, certificates and the fixtures made at run time (removed afterwards)."""
    kit = SmimeKit()
    yield kit
    kit.cleanup()


def _copies(imap, mailbox: str, marker: str) -> list[int]:
    """UIDs of the stored copies of the fixture whose Message-ID carries ``marker``."""
    select(imap, mailbox)
    return search_uids(imap, f"HEADER Message-ID {quote(marker)}", blame=None)


@pytest.mark.requirement("mobile.envelope.signed-byte-exact")
@pytest.mark.scenarios("kill", "link")
def test_signed_roundtrip_interrupted_and_retried(case, smime):
    """A cut APPEND leaves no partial copy; the retried APPEND and a re-FETCH after a cut return the exact octets."""
    fx = next(f for f in smime.fixtures() if f.name == "signed-folded-headers")
    marker = fx.uid_marker()
    imap = case.imap(label="imap-upload")
    mailbox = case.scratch_mailbox(imap, "cut")
    select(imap, mailbox)
    rows = []
    cutting = any(e.name == "kill" for e in case.scenario.elements)
    if cutting:
        case.path.kill_after(len(fx.data) // 2, side="client", endpoint="imap")
        try:
            append(imap, mailbox, fx.data)
        except (ServerClosed, ServerTimeout) as e:
            case.note(f"upload cut as planned: {e}")
        else:
            raise HarnessError("the intermediary did not cut the APPEND (the whole literal reached the server)")
        check = case.imap(label="imap-after-cut")
        left = _copies(check, mailbox, marker)
        for uid in left:
            rows.append(compare(smime, fx, body(check, uid), f"cut APPEND (copy UID {uid} left behind)"))
        partial = [r for r in rows if not r["identical"]]
        assert not partial, f"the cut APPEND left a partial message: {describe(rows)}"
        imap = check
    _, uid = append(imap, mailbox, fx.data)
    if cutting:
        case.path.kill_after(len(fx.data) // 2, side="server", endpoint="imap")
        try:
            body(imap, uid)
        except (ServerClosed, ServerTimeout) as e:
            case.note(f"download cut as planned: {e}")
        else:
            raise HarnessError("the intermediary did not cut the FETCH response")
        imap = case.imap(label="imap-refetch")
        select(imap, mailbox)
    rows.append(compare(smime, fx, body(imap, uid), "retried APPEND and FETCH" if cutting else "APPEND/FETCH"))
    copies = _copies(imap, mailbox, marker)
    case.attach("roundtrip", rows)
    judge_rows(case, "mobile.envelope.signed-byte-exact", rows, f"copies through the path {case.scenario}")
    assert len(copies) == 1, f"expected exactly one stored copy after the retry, found UIDs {copies}"
    case.passed(f"one intact copy; octets identical and the signature verifies under {case.scenario}")
