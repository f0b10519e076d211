"""Resynchronisation: nothing lost or repeated across kills, resets and a flaky link; resync cost after a reconnect."""

from __future__ import annotations

import time

import pytest

from conformance.errors import ConformanceFailure

from .support import client_timeline, delivered_once, play_failure, server_octets


@pytest.mark.requirement("client.sync.no-loss-no-duplicate")
@pytest.mark.scenarios("kill", "flaky")
def test_no_loss_no_duplicate(case, scenario, session, mailbox, wire):
    """Sync plays cut mid-download, a client killed mid-play, then clean plays: each message delivered once."""
    attempts = case.param("attempts")
    mids = mailbox.append_many("sync-a", 12, size=2048)
    interrupted = []
    if scenario.element("kill") is not None:
        wire.kill_after(8000, side="server", how="rst")  # the next connection is reset mid-download
        case.note("armed: the next connection is reset after 8000 octets from the server")
    first = session.play("sync", timeout=40)
    interrupted.append(f"play 1 ({'connection cut' if scenario.element('kill') else str(scenario)}) exit {first.exit_code}")
    mids += mailbox.append_many("sync-b", 12, size=2048)
    second = session.start("sync", wall_s=40)
    session.wait_for({mids[-1]}, 0.6, second)  # let it get going, then kill it without warning
    second.process.kill("SIGKILL mid-play")
    session.finish(second, 5)
    interrupted.append(f"play 2 (client killed) exit {second.exit_code}")
    mids += mailbox.append_many("sync-c", 4, size=2048)
    final = None
    for _ in range(attempts):
        final = session.play("sync", timeout=40)
        if final.exit_code == 0 and not delivered_once(session, mids)[0]:
            break
    missing, dups = delivered_once(session, mids)
    case.measure("plays", len(session.plays), "")
    case.measure("delivered", len(session.output.deliveries), "files", distinct=len(session.output.counts()),
                 expected=len(mids))
    ok = not missing and not dups
    case.attach("timeline", client_timeline(case, session, f"{session.adapter.name}: sync under {scenario}",
                                            changes=dict(mailbox.appended)).as_dict("pass" if ok else "fail"))
    assert not dups, (f"client.sync.no-loss-no-duplicate: {len(dups)} message(s) delivered more than once after "
                      f"{'; '.join(interrupted)}: " + ", ".join(f"{m} x{c}" for m, c in list(dups.items())[:3]))
    assert not missing, (f"client.sync.no-loss-no-duplicate: {len(missing)} of {len(mids)} messages never delivered "
                         f"after {len(session.plays)} plays ({'; '.join(interrupted)}); "
                         f"{play_failure(session, final)}")
    case.passed(f"{len(mids)} messages delivered exactly once across {len(session.plays)} plays "
                f"({'; '.join(interrupted)})")


@pytest.mark.requirement("client.sync.resync-cost")
def test_resync_cost(case, session, mailbox):
    """After one new message, the client's resync pulls about one message, not the mailbox again."""
    n = case.param("messages")
    size = case.param("message_size")
    max_fraction = case.param("max_fraction")
    mids = mailbox.append_many("cost", n, size=size)
    t0 = case.transcript.now()
    first = session.play("sync", timeout=90)
    t1 = case.transcript.now()
    missing, _ = delivered_once(session, mids)
    if missing:
        raise ConformanceFailure(f"client.sync.resync-cost: the first sync delivered {n - len(missing)} of {n} "
                                 f"messages; {play_failure(session, first)}")
    full = server_octets(case, t0, t1)
    new = mailbox.append("cost-new", size=size)
    time.sleep(0.05)
    t2 = case.transcript.now()
    second = session.play("sync", timeout=90)
    t3 = case.transcript.now()
    resync = server_octets(case, t2, t3)
    mailbox_octets = (n + 1) * size
    fraction = round(resync / mailbox_octets, 4)
    case.measure("first_sync_octets", full, "B")
    case.measure("resync_octets", resync, "B", changed=1, message_size=size)
    case.measure("resync_fraction_of_mailbox", fraction, "", threshold=max_fraction, mailbox_octets=mailbox_octets)
    got_new = session.output.first(new) is not None
    ok = got_new and fraction <= max_fraction
    case.attach("timeline", client_timeline(case, session, f"{session.adapter.name}: sync, one new message, resync",
                                            start=max(0.0, t2 - 0.5), changes={new: mailbox.appended[new]}).as_dict(
                                                "pass" if ok else "fail"))
    assert got_new, f"client.sync.resync-cost: the resync did not deliver the new message; {play_failure(session, second)}"
    assert fraction <= max_fraction, (
        f"client.sync.resync-cost: after one new message the resync pulled {resync} octets, {fraction:.0%} of the "
        f"mailbox's {mailbox_octets} ({n + 1} x {size}): an O(mailbox) re-download (bound {max_fraction:.0%}; the first "
        f"sync pulled {full})")
    case.passed(f"resync pulled {resync} octets for one new {size}-octet message ({fraction:.1%} of the mailbox; "
                f"first sync {full})")
