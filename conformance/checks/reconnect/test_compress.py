"""COMPRESS=DEFLATE (RFC 4978) through TCP intermediaries: a compressed session keeps working across the path,
and the octets of a full synchronisation shrink."""

from __future__ import annotations

import time

import pytest

from conformance.checks.support import ChangeMaker, full_sync, populate, select, untagged, wait_for_untagged
from conformance.errors import ConformanceFailure, HarnessError, ProtocolViolation, ServerClosed, ServerTimeout

CUT_AFTER = 600  # compressed octets of the full sync's answer that pass before the kill scenario cuts it


def _compressed_sync(case, label: str, name: str):
    """A COMPRESS=DEFLATE session through the path and its full sync of ``name``: (view, octets on the wire, the
    session). A refusal of COMPRESS fails compress.start-point; a stream that does not inflate fails it too."""
    comp = case.imap(label=label)
    res = comp.compress()
    if not res.ok:
        raise ConformanceFailure(f"COMPRESS DEFLATE refused although advertised: {res.tagged.first_line}",
                                 requirement="compress.start-point")
    start = comp.bytes_sent + comp.bytes_received
    try:
        view, _ = full_sync(comp, name)
    except ProtocolViolation as e:
        raise ConformanceFailure(f"the compressed stream does not decode as raw DEFLATE from the octet after the OK: "
                                 f"{e}", requirement="compress.start-point") from e
    return view, comp.bytes_sent + comp.bytes_received - start, comp


@pytest.mark.requirement("mobile.compress.through-intermediaries", "compress.start-point")
@pytest.mark.scenarios("kill", "nat-idle:timeout=30,mode=silent")
def test_compress_full_sync_through_path(case):
    """The same full sync (SELECT, UID FETCH 1:* (FLAGS)) on a plain and on a COMPRESS=DEFLATE session through
    the intermediary: the compressed replies decode from the octet after the OK (compress.start-point); the results
    are identical, the compressed session stays usable, and it puts fewer octets on the wire
    (mobile.compress.through-intermediaries). Under ``kill`` the first compressed sync is cut midway and a new
    compressed session must then give the same result (a cut leaves nothing behind that breaks the next one)."""
    setup = ChangeMaker(case, label="fill")
    case.require_capability(setup.conn.capability(), "COMPRESS=DEFLATE")
    n = case.param("messages")
    name = setup.scratch_mailbox("compress")
    setup.populate(name, n)

    plain = case.imap(label="plain")
    start = plain.bytes_sent + plain.bytes_received
    plain_view, _ = full_sync(plain, name)
    plain_bytes = plain.bytes_sent + plain.bytes_received - start

    cutting = case.scenario.element("kill") is not None
    if cutting:
        comp = case.imap(label="compressed-cut")
        res = comp.compress()
        if not res.ok:
            raise ConformanceFailure(f"COMPRESS DEFLATE refused although advertised: {res.tagged.first_line}",
                                     requirement="compress.start-point")
        mark = case.transcript.mark()
        case.path.kill_after(CUT_AFTER, side="server", endpoint="imap")
        failed: Exception | None = None
        try:
            full_sync(comp, name)
        except (ServerClosed, ServerTimeout, ProtocolViolation) as e:
            failed = e
        cut = next((e.text for e in case.transcript.since(mark) if e.direction == "I" and "cut" in e.text), None)
        if cut is None and isinstance(failed, ProtocolViolation):
            raise ConformanceFailure(f"the compressed stream does not decode as raw DEFLATE from the octet after the "
                                     f"OK: {failed}", requirement="compress.start-point") from failed
        if failed is not None:
            case.note(f"compressed full sync cut as planned: {failed}")
        if cut is None:
            raise HarnessError(f"the intermediary did not cut the compressed full sync after {CUT_AFTER} octets "
                               f"(no cut in the path's record): the answer was smaller, or the cut did not happen")
        comp.close()
    comp_view, comp_bytes, comp = _compressed_sync(case, "compressed-after-cut" if cutting else "compressed", name)
    case.require("compress.start-point", True, "")
    noop = comp.command("NOOP")
    after = " after a cut compressed session" if cutting else ""
    case.require("mobile.compress.through-intermediaries", noop.ok,
                 f"NOOP on the compressed session{after} failed: {noop.tagged.first_line}")
    diff = comp_view.diff(plain_view)
    case.require("mobile.compress.through-intermediaries", not diff,
                 f"the compressed session{after} saw a different mailbox: " + "; ".join(diff))
    ratio = plain_bytes / comp_bytes if comp_bytes else 0.0
    case.measure("full_sync_bytes.plain", plain_bytes, "B", messages=n)
    case.measure("full_sync_bytes.compressed", comp_bytes, "B", messages=n)
    case.measure("bytes_saved", plain_bytes - comp_bytes, "B")
    case.measure("compression_ratio", round(ratio, 2), "x")
    case.require("mobile.compress.through-intermediaries", comp_bytes < plain_bytes,
                 f"COMPRESS=DEFLATE did not reduce the full sync of {n} messages: {comp_bytes} B compressed vs "
                 f"{plain_bytes} B plain")
    case.passed(f"full sync of {n} messages: {plain_bytes} B plain, {comp_bytes} B compressed "
                f"({plain_bytes - comp_bytes} B saved, ratio {ratio:.1f}x); session usable afterwards"
                + ("; a new compressed session after a cut one gave the same result" if cutting else ""))


@pytest.mark.requirement("compress.interactive-flush")
def test_compress_idle_push_decodes_promptly(case):
    """On a COMPRESS=DEFLATE session in IDLE, a message appended from a second connection must arrive as an
    EXISTS that decodes within max_latency: the server flushes the compressor after each response instead of
    holding the push until more output (the reply to DONE) comes along."""
    conn = case.imap(label="compressed-idle")
    case.require_capability(conn.capability(), "COMPRESS=DEFLATE", "IDLE")
    budget = case.param("max_latency")
    name = case.scratch_mailbox(conn, "flush")
    populate(conn, name, 1)
    res = conn.compress()
    assert res.ok, f"COMPRESS DEFLATE refused although advertised: {res.tagged.first_line}"
    select(conn, name)
    tag = conn.idle()
    ChangeMaker(case).populate(name, 1, tag="push")
    start = time.monotonic()
    wire_before = conn.bytes_received
    exists = wait_for_untagged(conn, untagged.exists(), budget)
    latency = time.monotonic() - start
    held = conn.bytes_received - wire_before
    done = conn.done(tag, timeout=10)
    case.measure("compressed_push_latency", round(latency, 3), "s", budget=budget)
    if exists is None:
        late = [r.first_line for r in done.untagged if untagged.exists()(r)]
        where = (f"it came only with the reply to DONE ({late[0]!r}): the server held it in the compressor"
                 if late else "it did not come with the reply to DONE either")
        raise ConformanceFailure(
            f"no EXISTS decoded within {budget:g} s of an APPEND from another connection on a compressed IDLE "
            f"session ({held} compressed octets arrived meanwhile); {where}")
    assert done.ok, f"DONE after the compressed IDLE failed: {done.tagged.first_line}"
    case.passed(f"{exists.first_line!r} decoded {latency * 1000:.0f} ms after the other connection's APPEND "
                f"(budget {budget:g} s) on a COMPRESS=DEFLATE session")
