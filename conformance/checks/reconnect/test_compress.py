"""COMPRESS=DEFLATE (RFC 4978) through TCP intermediaries: a compressed session keeps working across the path,
and the octets of a full synchronisation shrink."""

from __future__ import annotations

import pytest

from conformance.errors import ConformanceFailure

from .mailbox import full_sync, populate


@pytest.mark.requirement("mobile.compress.through-intermediaries", "compress.start-point")
@pytest.mark.scenarios("kill", "nat-idle:timeout=30,mode=silent")
def test_compress_full_sync_through_path(case):
    """The same full sync (SELECT, UID FETCH 1:* (FLAGS)) on a plain and on a COMPRESS=DEFLATE session through
    the intermediary: identical results, the compressed session stays usable, and fewer octets on the wire."""
    setup = case.imap(via_path=False, label="fill")
    case.require_capability(setup.capability(), "COMPRESS=DEFLATE")
    n = int(case.param("messages"))
    name = case.scratch_mailbox(setup, "compress")
    populate(setup, name, n)

    plain = case.imap(label="plain")
    start = plain.bytes_sent + plain.bytes_received
    plain_view, _ = full_sync(plain, name)
    plain_bytes = plain.bytes_sent + plain.bytes_received - start

    comp = case.imap(label="compressed")
    res = comp.compress()
    assert res.ok, f"COMPRESS DEFLATE refused although advertised: {res.tagged.first_line}"
    start = comp.bytes_sent + comp.bytes_received
    try:
        comp_view, _ = full_sync(comp, name)
        comp_bytes = comp.bytes_sent + comp.bytes_received - start
        noop = comp.command("NOOP")
    except ConformanceFailure as e:
        raise ConformanceFailure(f"the compressed session broke through the intermediary: {e}") from e
    assert noop.ok, f"NOOP on the compressed session failed: {noop.tagged.first_line}"
    diff = comp_view.diff(plain_view)
    assert not diff, "the compressed session saw a different mailbox: " + "; ".join(diff)
    ratio = plain_bytes / comp_bytes if comp_bytes else 0.0
    case.measure("full_sync_bytes.plain", plain_bytes, "B", messages=n)
    case.measure("full_sync_bytes.compressed", comp_bytes, "B", messages=n)
    case.measure("bytes_saved", plain_bytes - comp_bytes, "B")
    case.measure("compression_ratio", round(ratio, 2), "x")
    assert comp_bytes < plain_bytes, (f"COMPRESS=DEFLATE did not reduce the full sync of {n} messages: "
                                      f"{comp_bytes} B compressed vs {plain_bytes} B plain")
    case.passed(f"full sync of {n} messages: {plain_bytes} B plain, {comp_bytes} B compressed "
                f"({plain_bytes - comp_bytes} B saved, ratio {ratio:.1f}x); session usable afterwards")
