"""Push through intermediaries: delivery after visible drops, recovery after a silent one, re-IDLE within 29 min.

The partner server keeps its stock IDLE keepalive (Dovecot: 2 min), so an intermediary's idle timer acts on
the client's own connection: under ``nat-idle`` the client's idle push connection is dropped (RST, FIN, or a
black hole nobody is told about) and what the client does about it is what these checks judge.
"""

from __future__ import annotations

import time

import pytest

from conformance.errors import ConformanceFailure, HarnessError, NotApplicable

from .support import client_timeline, connections, intermediary_actions, play_failure

PUSH_WALL = 3000.0  # the suite stops a push play itself; this only bounds a play the check forgot


def start_push(case, session, mailbox):
    """A push play, and the time the client proved it is up (it delivered the message already there)."""
    first = mailbox.append("push-first")
    play = session.start("push", wall_s=PUSH_WALL)
    got = session.wait_for({first}, 30.0, play)
    if first not in got:
        if not play.process.running():
            session.finish(play, 5)  # an adapter's 127 becomes not-applicable here
        raise ConformanceFailure(f"the push client never delivered the message already in {mailbox.name} "
                                 f"(30 s): {play_failure(session, play)}")
    return play, got[first].t


def wait_for_drop(case, since: float, seconds: float):
    """Wait until the intermediary has dropped every connection the client holds open (a client may keep a push
    channel beside a command connection: the change must come after the push channel is gone), at most
    ``seconds``. The first drop, or None when the intermediary did nothing."""
    time.sleep(1.0)  # a client opens its push channel right after its first delivery
    deadline = time.monotonic() + seconds
    while True:
        acts = [e for e in intermediary_actions(case, since) if "nat-idle" in e.text or "blackhole" in e.text]
        live = [c.label for c in connections(case).values() if c.closed is None]
        if acts and set(live) <= {e.conn for e in acts}:
            return acts[0]
        if time.monotonic() >= deadline:
            return acts[0] if acts else None
        time.sleep(0.1)


@pytest.mark.requirement("client.push.delivery")
@pytest.mark.scenarios("direct", "nat-idle:mode=rst", "nat-idle:mode=fin")
def test_push_delivery(case, scenario, session, mailbox):
    """A message appended while the client idles (after a visible drop, under nat-idle) reaches its output in time."""
    max_latency = case.param("max_latency")
    settle = case.param("settle")
    nat = scenario.element("nat-idle")
    if nat is not None:
        settle = max(settle, float(nat.get("timeout")) + 2.0)
    play, up_at = start_push(case, session, mailbox)
    drop = wait_for_drop(case, up_at, settle) if nat is not None else None
    if drop is None:
        time.sleep(max(0.0, up_at + settle - case.transcript.now()))
    mid = mailbox.append("push")
    changed_at = mailbox.appended[mid]
    got = session.wait_for({mid}, 2 * max_latency, play)
    latency = round(got[mid].t - changed_at, 3) if mid in got else None
    session.stop(play)
    case.measure("delivery_latency", latency, "s", threshold=max_latency)
    case.measure("connections", len(connections(case)), "")
    if drop is not None:
        case.measure("dropped_at", drop.t, "s", action=drop.text)
    ok = latency is not None and latency <= max_latency
    case.attach("timeline", client_timeline(
        case, session, f"{session.adapter.name}: push through {scenario}", start=max(0.0, play.started_at - 0.2),
        changes={mid: changed_at}, thresholds={"max latency": (max_latency, changed_at)}).as_dict("pass" if ok else "fail"))
    where = f" after the intermediary dropped its connection at t={drop.t:.3f} ({drop.text})" if drop else ""
    assert latency is not None, (f"client.push.delivery: the message appended at t={changed_at:.3f}{where} was not "
                                 f"delivered within {2 * max_latency:g} s; {play_failure(session, play)}")
    assert latency <= max_latency, (f"client.push.delivery: delivered {latency:.3f} s after the APPEND{where}, "
                                    f"more than max_latency {max_latency:g} s")
    case.passed(f"delivered {latency:.3f} s after the APPEND{where}")


@pytest.mark.requirement("client.push.silent-drop-recovery")
@pytest.mark.scenarios("nat-idle:mode=silent")
@pytest.mark.long_wait
def test_silent_drop_recovery(case, scenario, session, mailbox):
    """After a black hole on its idle push connection, how long until the client delivers new mail again?"""
    recover_within = case.param("recover_within")
    observe = case.param("observe")
    nat = scenario.element("nat-idle")
    if nat is None or nat.get("mode") != "silent":
        raise HarnessError(f"needs nat-idle:mode=silent, not {scenario}")
    play, up_at = start_push(case, session, mailbox)
    drop = wait_for_drop(case, up_at, float(nat.get("timeout")) + 10.0)
    if drop is None:  # the client's own traffic kept the mapping alive: nothing to recover from
        session.stop(play)
        case.measure("blackhole_at", None, "s")
        case.passed(f"the client wrote at least every {nat.get('timeout')} s, so the idle timer never "
                    "black-holed its connection")
        return
    mid = mailbox.append("after-blackhole")
    got = session.wait_for({mid}, observe, play)
    recovered = round(got[mid].t - drop.t, 3) if mid in got else None
    end = case.transcript.now()
    alive = play.process.running()
    session.stop(play)
    later = [c for c in connections(case).values() if c.opened > drop.t]
    case.measure("blackhole_at", drop.t, "s", action=drop.text)
    case.measure("recovered_after", recovered, "s", threshold=recover_within, observed=observe)
    case.measure("reconnects_after_blackhole", len(later), "")
    if recovered is None:
        case.measure("deaf_for_at_least", round(end - drop.t, 3), "s")
    ok = recovered is not None and recovered <= recover_within
    case.attach("timeline", client_timeline(
        case, session, f"{session.adapter.name}: silent drop on {scenario}", start=max(0.0, play.started_at - 0.2),
        end=end + 0.2, changes={mid: mailbox.appended[mid]}, blackhole_at=drop.t,
        thresholds={"recover within": (recover_within, drop.t)}).as_dict("pass" if ok else "fail"))
    state = (f"was still deaf {end - drop.t:.1f} s later" if alive else
             f"exited ({play_failure(session, play)}) without delivering it")
    assert recovered is not None, (
        f"client.push.silent-drop-recovery: black hole from t={drop.t:.3f}; the client {state} (observed {observe:g} s, "
        f"bound {recover_within:g} s): the message appended right after it was never delivered and the client opened "
        f"{len(later)} new connection(s)")
    assert recovered <= recover_within, (
        f"client.push.silent-drop-recovery: recovered {recovered:.1f} s after the black hole began (t={drop.t:.3f}), "
        f"more than recover_within {recover_within:g} s")
    case.passed(f"recovered {recovered:.1f} s after the black hole ({len(later)} new connection(s))")


@pytest.mark.requirement("idle.reissue-29")
@pytest.mark.depth("full")
def test_idle_reissued_within_29_minutes(case, session, mailbox, client_under_test):
    """The client writes on its idling connection (DONE + IDLE, or NOOP) at least every 29 minutes."""
    if "idle" not in client_under_test.supports:
        raise NotApplicable(f"client {client_under_test.name} does not use IMAP IDLE")
    max_gap = case.param("max_gap")
    observe = case.param("observe")
    play, up_at = start_push(case, session, mailbox)
    deadline = time.monotonic() + observe
    while time.monotonic() < deadline and play.process.running():
        time.sleep(1.0)
    end = case.transcript.now()
    session.stop(play)
    conns = [c for c in connections(case, up_at - 5).values()]
    if not conns:
        raise HarnessError("the relay recorded no connection of the push client")
    idler = max(conns, key=lambda c: (c.closed or end) - c.opened)
    times = [up_at] + [t for t in idler.client_times if t >= up_at] + [idler.closed or end]
    gaps = [(b - a, a, b) for a, b in zip(times, times[1:])]
    gap = max(gaps) if gaps else (0.0, up_at, end)
    case.measure("longest_client_silence", round(gap[0], 1), "s", start=gap[1], end=gap[2], threshold=max_gap)
    ok = gap[0] <= max_gap
    case.attach("timeline", client_timeline(case, session, f"{session.adapter.name}: IDLE for {observe / 60:.0f} min",
                                            start=max(0.0, up_at - 1)).as_dict("pass" if ok else "fail"))
    assert ok, (f"idle.reissue-29: the client wrote nothing on its idling connection {idler.label} for {gap[0] / 60:.1f} "
                f"min (t={gap[1]:.0f}-{gap[2]:.0f} s), more than {max_gap / 60:.0f} min")
    case.passed(f"longest client silence on the idling connection {gap[0] / 60:.1f} min <= {max_gap / 60:.0f} min")
