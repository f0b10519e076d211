"""Reconnect cost (RFC 7162 section 1; reconnects forced by intermediaries): the octets a quick resynchronisation
puts on the wire grow with the number of changes, not with the size of the mailbox, while a full
resynchronisation (the UID and flags of every message) grows with the mailbox."""

from __future__ import annotations

import pytest

from conformance.checks.support import ChangeMaker, full_sync, ground_truth
from conformance.protocols.imap import ImapConnection

from .resync import change_mailbox, quick_resync


def wire(conn: ImapConnection) -> int:
    """Octets on the wire so far, both directions."""
    return conn.bytes_sent + conn.bytes_received


def measure_size(case, n: int, changes: int) -> dict:
    """One mailbox of n messages: full sync, drop, changes, then quick and full resync octets."""
    setup = ChangeMaker(case, label=f"fill-{n}")
    name = setup.scratch_mailbox(f"cost{n}")
    setup.populate(name, n)
    client = case.imap(label=f"client-{n}")
    client.command("ENABLE QRESYNC")
    cached, _ = full_sync(client, name)
    case.path.kill("rst", endpoint="imap")
    client.close()
    made = change_mailbox(setup, name, sorted(cached.flags), changes=changes)
    again = case.imap(label=f"quick-{n}")
    start = wire(again)
    again.command("ENABLE QRESYNC")
    resync = quick_resync(again, name, cached)
    quick = wire(again) - start
    assert not resync.problems, "; ".join(resync.problems)
    full_conn = case.imap(label=f"full-{n}")
    start = wire(full_conn)
    fresh, _ = full_sync(full_conn, name)
    full = wire(full_conn) - start
    truth = ground_truth(case, name, conn=setup.conn)
    diff = resync.view.diff(truth)
    assert not diff, f"quick resync of {n} messages differs from the server ({made}): " + "; ".join(diff)
    assert not fresh.diff(truth), "full resync differs from the ground truth (harness): " + "; ".join(fresh.diff(truth))
    return {"n": n, "quick": quick, "full": full, "changes": str(made)}


@pytest.mark.requirement("mobile.reconnect.cost-follows-changes")
@pytest.mark.scenarios("kill")
def test_quick_resync_cost_follows_changes(case):
    """For mailboxes of each size, the same few changes while disconnected: quick resync (ENABLE + SELECT
    (QRESYNC ...) + new messages) stays under the bound whatever the size; a full resync is measured beside it."""
    probe = case.imap(via_path=False, label="probe")
    case.require_capability(probe.capability(), "QRESYNC")
    sizes = case.param("sizes")
    changes = case.param("changes")
    bound = case.param("bound_bytes")
    rows = [measure_size(case, n, changes) for n in sizes]
    for r in rows:
        case.measure(f"quick_resync_bytes.n{r['n']}", r["quick"], "B")
        case.measure(f"full_resync_bytes.n{r['n']}", r["full"], "B")
    case.attach("resync_cost", {"sizes": sizes, "quick": [r["quick"] for r in rows],
                                "full": [r["full"] for r in rows], "bound": bound, "changes": changes})
    over = [f"N={r['n']}: {r['quick']} B" for r in rows if r["quick"] > bound]
    table = ", ".join(f"N={r['n']}: quick {r['quick']} B / full {r['full']} B" for r in rows)
    assert not over, (f"quick resync after {changes} changes must stay within {bound} B whatever the mailbox size; "
                      f"over the bound: {', '.join(over)} ({table})")
    case.passed(f"{changes} changes: {table}; bound {bound} B")
