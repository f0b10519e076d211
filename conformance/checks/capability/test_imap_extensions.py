"""Spot checks of IMAP extensions the Lemonade profile requires: LITERAL+, ESEARCH, CONTEXT=SEARCH."""

from __future__ import annotations

import re

import pytest

from conformance.checks.support import ChangeMaker, append, fetch_uid, select, uids, untagged
from conformance.errors import HarnessError
from conformance.protocols.imapwire import parse_esearch, parse_expunge, parse_vanished

from .samples import SAMPLE


@pytest.mark.requirement("literal-plus.nonsync")
def test_literal_plus_without_continuation(case):
    """APPEND with a {n+} literal sent in one write completes with no '+' continuation; LITERAL- is not also offered."""
    imap = case.imap()
    caps = imap.capability()
    case.require_capability(caps, "LITERAL+")
    upper = {c.upper() for c in caps}
    assert "LITERAL-" not in upper, f"both LITERAL+ and LITERAL- advertised (CAPABILITY: {' '.join(caps)})"
    box = case.scratch_mailbox(imap)
    res = append(imap, box, SAMPLE, literal="non-sync", blame=None).result
    prompts = [r.first_line for r in res.untagged if r.is_continuation]
    assert not prompts, f"server sent a continuation for a non-synchronizing literal: {prompts[0]!r}"
    assert res.ok, f"APPEND with a {{n+}} literal was not accepted: {res.tagged.first_line}"
    select(imap, box)
    stored = uids(imap)
    body = fetch_uid(imap, stored[-1], "BODY.PEEK[]").get("BODY[]") if stored else None
    assert body == SAMPLE, (f"the message stored from the {{n+}} literal differs from what was sent "
                            f"({len(body or b'')} octets)")
    case.passed(f"{{{len(SAMPLE)}+}} literal accepted without a continuation and stored intact")


@pytest.mark.requirement("esearch.count-always")
def test_esearch_count_always_single_response(case):
    """SEARCH with RETURN options answers with one ESEARCH (UID-marked for UID SEARCH), COUNT present, MIN absent
    when empty."""
    imap = case.imap()
    case.require_capability(imap.capability(), "ESEARCH")
    box = case.scratch_mailbox(imap)
    select(imap, box)
    results = []  # (command, UID indicator expected, COUNT expected, reply)
    text = "UID SEARCH RETURN (COUNT MIN) UNDELETED"  # on the empty mailbox
    results.append((text, True, 0, imap.command(text)))
    append(imap, box, SAMPLE)
    imap.command("NOOP")
    text = "SEARCH RETURN (COUNT) ALL"  # one message now
    results.append((text, False, 1, imap.command(text)))
    for text, want_uid, want_count, res in results:
        assert res.ok, f"'{text}' failed: {res.tagged.first_line}"
        plain = [r for r in res.untagged if re.match(r"^\* SEARCH\b", r.first_line, re.I)]
        assert not plain, f"'{text}' got an old-style SEARCH response instead of ESEARCH: {plain[0].first_line!r}"
        es = [e for e in (parse_esearch(r) for r in res.untagged) if e is not None]
        assert len(es) == 1, f"'{text}' got {len(es)} ESEARCH responses, expected exactly one ({' | '.join(res.lines())})"
        e = es[0]
        assert e.tag == res.tag, f"ESEARCH does not correlate with tag {res.tag}: {e.line!r}"
        assert e.uid == want_uid, (f"ESEARCH {'lacks' if want_uid else 'has'} the UID indicator for '{text}': {e.line!r}")
        assert e.data.get("COUNT") == str(want_count), f"'{text}': expected COUNT {want_count}, got {e.line!r}"
        if want_count == 0:
            assert "MIN" not in e.data, f"'{text}' matched nothing but ESEARCH carries MIN: {e.line!r}"
    case.passed("one ESEARCH per command, UID indicator right, COUNT always present, no MIN for an empty result")


@pytest.mark.requirement("context.update-order")
def test_context_update_order(case):
    """With SEARCH RETURN (UPDATE), ADDTO follows the EXISTS it depends on and REMOVEFROM precedes the EXPUNGE."""
    imap = case.imap(label="watcher")
    case.require_capability(imap.capability(), "CONTEXT=SEARCH")
    box = case.scratch_mailbox(imap)
    append(imap, box, SAMPLE)
    select(imap, box)
    res = imap.command("SEARCH RETURN (UPDATE) UNSEEN")
    assert res.ok, f"SEARCH RETURN (UPDATE) UNSEEN was refused: {res.tagged.first_line}"
    ctag = res.tag
    other = ChangeMaker(case)
    other.append(box, SAMPLE)
    responses = imap.command("NOOP").untagged
    lines = [r.first_line for r in responses]
    exists_at = next((i for i, r in enumerate(responses) if untagged.exists(2)(r)), None)
    addto_at = next((i for i, l in enumerate(lines) if re.search(rf'ESEARCH \(TAG "{ctag}"\).* ADDTO', l, re.I)), None)
    assert addto_at is not None, f"no ADDTO for the new unseen message after NOOP (got: {' | '.join(lines) or 'nothing'})"
    assert exists_at is not None and exists_at < addto_at, (
        f"ADDTO was sent before the EXISTS that announces its message: {' | '.join(lines)}")
    if not other.select(box).exists:
        raise HarnessError(f"second session sees no message in {box}")
    other.expunge(1, uid=False)
    responses = imap.command("NOOP").untagged
    lines = [r.first_line for r in responses]
    gone_at = next((i for i, r in enumerate(responses) if parse_expunge(r) == 1 or parse_vanished(r)), None)
    remove_at = next((i for i, l in enumerate(lines)
                      if re.search(rf'ESEARCH \(TAG "{ctag}"\).* REMOVEFROM', l, re.I)), None)
    assert gone_at is not None, f"the expunge of message 1 was not reported after NOOP (got: {' | '.join(lines)})"
    assert remove_at is not None, f"no REMOVEFROM for the expunged unseen message (got: {' | '.join(lines)})"
    assert remove_at < gone_at, f"REMOVEFROM came after the expunge it reports: {' | '.join(lines)}"
    case.passed("EXISTS before ADDTO, REMOVEFROM before EXPUNGE")
