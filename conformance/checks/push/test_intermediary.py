"""Push through idle-timeout intermediaries (mobile-intermediary profile): keepalive gap, survival, silent drops.

Which idle timeout T a verdict uses: under ``nat-idle`` the intermediary's own ``timeout`` (what really sat in
the path: depth default 3 s quick / 30 s full, or the one given with ``--scenario nat-idle:timeout=T``);
under ``direct`` and ``lifetime`` the profile's ``idle_timeout``. Both values are recorded as measurements,
so a reader sees when they differ; pass ``--scenario nat-idle:timeout=120`` to test the profile's value.
"""

from __future__ import annotations

import pytest

from conformance.checks.support import ChangeMaker, Watch, select, untagged
from conformance.errors import HarnessError, NotApplicable
from conformance.intermediaries.addons.record import LEG as SERVER_LEG

from .idling import IdleRun, idle_then_append
from .timelines import conn_entries, intermediary_actions, timeline

SCENARIOS = ("direct", "nat-idle:mode=rst", "nat-idle:mode=fin", "nat-idle:mode=silent", "lifetime")


def _prompt_wait(case) -> float:
    """How long to wait for the change to be pushed: the max_latency of mobile.push.prompt-through-intermediary."""
    return case.param("max_latency", requirement="mobile.push.prompt-through-intermediary")


def _idle_timeout(case, scenario) -> tuple[float, str | None, float]:
    """(the idle timeout T the verdict uses, the nat-idle mode, how long to watch before the change); measured."""
    profile_t = case.param("idle_timeout")
    observe = case.param("observe")
    nat, life = scenario.element("nat-idle"), scenario.element("lifetime")
    if life is not None:  # watch past the session limit, so the cut and the recovery after it are seen
        observe = max(observe, float(life.get("max")) + 0.5)
    limit = float(nat.get("timeout")) if nat else profile_t
    case.measure("idle_timeout", limit, "s", source="nat-idle scenario" if nat else "profile idle_timeout",
                 profile_idle_timeout=profile_t)
    return limit, (nat.get("mode") if nat else None), observe


def _measure(case, run: IdleRun, limit: float) -> None:
    """The run's measurements: longest gap against the idle timeout, keepalives, survival, latency, cuts."""
    gap, drop, watch = run.gap, run.drop, run.watch
    case.measure("longest_gap", gap[0], "s", start=gap[1], end=gap[2], threshold=limit)
    case.measure("keepalives", run.keepalives, "", observed_s=round(run.change_at - run.idle_from, 3))
    case.measure("survived", watch.closed_at is None and run.got is not None)
    case.measure("notification_latency", run.latency, "s")
    if drop is not None:
        case.measure("intermediary_action_at", drop.t, "s", action=drop.text)
    if watch.closed_at is not None:
        case.measure("closed_at", watch.closed_at, "s", reason=watch.closed_reason)


def _timeline(case, run: IdleRun, limit: float, title: str, *, labels: tuple[str, ...] = (),
              end: float | None = None, blackhole_at: float | None = None):
    """The timeline of the idling connection (and of ``labels``), with the idle timeout as threshold."""
    return timeline(case, (run.imap.label, *labels) if labels else run.imap.label, title,
                    start=max(0.0, run.idle_from - 0.3), end=(run.end if end is None else end) + 0.2,
                    idle_from=run.idle_from, change_at=run.change_at,
                    change_label="second connection APPENDed a message", closed_at=run.watch.closed_at,
                    closed_label=run.watch.closed_reason, gap=run.gap, thresholds={"idle timeout": limit},
                    blackhole_at=blackhole_at)


KEEPALIVE_RULES = ("idle.keepalive", "nat.idle-timeouts")  # the gap rule, stated for IMAP and for NATs


def _judge_gap(case, run: IdleRun, limit: float, what: str) -> bool:
    """The keepalive gap against the idle timeout: judged for every requirement this check names."""
    gap = run.gap
    message = (f"longest silence on the idling connection {gap[0]:.3f} s (t={gap[1]:.3f}-{gap[2]:.3f}, "
               f"{run.keepalives} keepalives in {run.change_at - run.idle_from:.1f} s) is not below the idle timeout "
               f"{limit:g} s ({what}): an intermediary with that timeout would drop this push channel")
    ok = True
    for rid in (*KEEPALIVE_RULES, "mobile.push.survives-idle-timeout"):
        ok = case.require(rid, gap[0] < limit, message) and ok
    return ok


def _judge_under_session_limit(case, scenario, run: IdleRun, limit: float, wait: float) -> None:
    """Under ``lifetime`` a session limit cuts whatever the traffic (not the server's fault): the keepalive gap and
    a working push on the next session are what the server controls."""
    gap, watch = run.gap, run.watch
    case.attach("timeline", _timeline(case, run, limit, f"IMAP IDLE through {scenario}").as_dict(
        "pass" if gap[0] < limit else "fail"))
    _judge_gap(case, run, limit, "profile idle_timeout")
    if run.got is not None:
        case.passed(f"keepalive gap {gap[0]:.3f} s < {limit:g} s; change reported after {run.latency:.3f} s "
                    "(the session limit had not cut the connection yet)")
        return
    again = case.imap(label="idler-2")
    select(again, run.box)
    tag2 = again.idle(timeout=5)
    second = Watch(case, again)
    change2 = case.transcript.now()
    run.other.append(run.box, n=2)
    got2 = second.until(wait, untagged.exists())
    tl = _timeline(case, run, limit, f"IMAP IDLE through {scenario}, then a new session", labels=(again.label,),
                   end=case.transcript.now())
    tl.event(change2, "change", "APPEND while the new session idles")
    case.attach("timeline", tl.as_dict("pass" if got2 is not None and gap[0] < limit else "fail"))
    if not case.require("mobile.push.survives-idle-timeout", got2 is not None,
                        f"after {scenario} cut the first session, a new IDLE session was not told about a new message "
                        f"within {wait:g} s"):
        return
    case.measure("resumed_latency", round(second.seen[-1][0] - change2, 3), "s")
    again.done(tag2, timeout=3)
    case.passed(f"keepalive gap {gap[0]:.3f} s < {limit:g} s; the session was cut at its maximum age "
                f"(t={watch.closed_at or run.end:.3f}); a new session got the change after "
                f"{second.seen[-1][0] - change2:.3f} s")


def _judge_idle_timeout(case, scenario, run: IdleRun, limit: float, mode: str | None, wait: float) -> None:
    """Direct or behind nat-idle: the connection must never fall silent for the idle timeout, so the intermediary
    never drops it (every requirement), and the change reaches the client (mobile.push.survives-idle-timeout)."""
    gap, drop, watch, change_at = run.gap, run.drop, run.watch, run.change_at
    blackhole_at = drop.t if drop is not None and mode == "silent" else None
    survived = watch.closed_at is None and run.got is not None and drop is None
    tl = _timeline(case, run, limit, f"IMAP IDLE through {scenario}", blackhole_at=blackhole_at)
    case.attach("timeline", tl.as_dict("pass" if survived and gap[0] < limit else "fail"))
    if drop is not None:
        before = [e.t for e in conn_entries(case, run.imap.label, run.idle_from, drop.t)]
        quiet = round(drop.t - max(before or [run.idle_from]), 3)
        alive = "session looks alive to the client" if watch.closed_at is None else watch.closed_reason
        if mode == "silent":
            message = (f"silent black hole nobody noticed: after {quiet:.3f} s without a keepalive (idle timeout "
                       f"{limit:g} s) the intermediary dropped the mapping at t={drop.t:.3f} s ({drop.text}); no byte, "
                       f"FIN or RST reached the client, and the message APPENDed at t={change_at:.3f} s was never "
                       f"reported ({alive})")
        else:
            message = (f"push did not survive an idle timeout of {limit:g} s: the server sent nothing for {quiet:.3f} s "
                       f"(longest gap t={gap[1]:.3f}-{gap[2]:.3f}), so the intermediary dropped the idling connection "
                       f"at t={drop.t:.3f} s ({drop.text}); the message APPENDed at t={change_at:.3f} s never reached "
                       f"the client")
        for rid in (*KEEPALIVE_RULES, "mobile.push.survives-idle-timeout"):
            case.require(rid, False, message)
        return
    if not _judge_gap(case, run, limit, "nat-idle timeout" if mode else "profile idle_timeout"):
        return
    if not case.require("mobile.push.survives-idle-timeout", watch.closed_at is None,
                        f"the idling connection ended at t={watch.closed_at or 0:.3f} s: {watch.closed_reason}"):
        return
    if not case.require("mobile.push.survives-idle-timeout", run.got is not None,
                        f"the message APPENDed at t={change_at:.3f} s was not reported within {wait:g} s"):
        return
    run.imap.done(run.tag, timeout=3)
    case.passed(f"keepalive gap {gap[0]:.3f} s < idle timeout {limit:g} s ({run.keepalives} keepalives); "
                f"change reported after {run.latency:.3f} s")


@pytest.mark.requirement("mobile.push.survives-idle-timeout", "idle.keepalive", "nat.idle-timeouts")
@pytest.mark.scenarios(*SCENARIOS)
def test_push_survives_idle_timeout(case, scenario):
    """An IDLE session outlives an idle-timeout intermediary because the server's keepalives come often enough."""
    limit, mode, observe = _idle_timeout(case, scenario)
    wait = _prompt_wait(case)
    run = idle_then_append(case, observe=observe, wait=wait)
    _measure(case, run, limit)
    if scenario.element("lifetime") is not None:
        _judge_under_session_limit(case, scenario, run, limit, wait)
    else:
        _judge_idle_timeout(case, scenario, run, limit, mode, wait)


def server_sent(case, start: float, end: float) -> list[float]:
    """When the server sent something on the proxy-to-server leg between ``start`` and ``end``: what it sent, seen
    before any intermediary action (the leg is recorded as it arrives, also after a black hole)."""
    return sorted(e.t for e in case.transcript.entries
                  if e.leg == SERVER_LEG and e.direction == "S" and start <= e.t <= end)


@pytest.mark.requirement("mobile.push.silent-drop-noticed")
@pytest.mark.scenarios("nat-idle:mode=silent")
def test_silent_drop_noticed(case, scenario):
    """A black-holed IDLE channel is noticed within detect_within, because keepalives stop on a known schedule.

    The schedule is learned from what the server sends (the proxy-to-server leg, which no intermediary action cuts)
    over a window long enough for two keepalives of any schedule that can pass; the longest silence in it is the
    schedule, and a silence still running when learning ends counts as a lower bound of it. A client that declares
    the channel dead after ``slack`` times that silence notices a black hole, at worst, ``slack`` x schedule after
    it began (a black hole right after a keepalive): that must be within detect_within. Fewer than two keepalives
    in the window is no schedule a client could learn.
    """
    nat = scenario.element("nat-idle")
    if nat is None or nat.get("mode") != "silent":
        raise NotApplicable(f"needs a silent drop; {scenario} is not nat-idle with mode=silent "
                            "(run with --scenario nat-idle:mode=silent)")
    detect_within = case.param("detect_within")
    slack = case.param("slack")
    imap = case.imap(label="idler")
    box = ChangeMaker(case).scratch_mailbox()
    select(imap, box)
    imap.idle(timeout=5)
    idle_from = case.transcript.now()
    watch = Watch(case, imap)
    # a passing schedule is at most detect_within / slack: two of its keepalives come within twice that
    learn_min, learn_max = detect_within / slack + 0.5, 2 * detect_within / slack + 0.5
    watch.until(learn_min)
    while len(server_sent(case, idle_from, case.transcript.now())) < 2 and case.transcript.now() - idle_from < learn_max:
        watch.until(min(0.25, learn_max - (case.transcript.now() - idle_from)))
    learned_at = case.transcript.now()
    sent = server_sent(case, idle_from, learned_at)
    marks = [idle_from, *sent, learned_at]
    gaps = [(round(b - a, 3), a, b) for a, b in zip(marks, marks[1:])]
    schedule = max(gaps)  # the last gap is still running: a lower bound of the schedule, counted as such
    natural = [e for e in intermediary_actions(case) if e.t >= idle_from]
    if natural:
        blackhole_at = natural[0].t
        case.note(f"the intermediary acted on its own at t={blackhole_at:.3f} s: {natural[0].text}")
    else:
        blackhole_at = case.transcript.now()
        if case.path.blackhole() < 1:
            raise HarnessError("the intermediary had no live connection to black-hole")
    client_saw = [t for t, _ in watch.seen if t <= blackhole_at]
    last_seen = max(client_saw or [idle_from])
    worst = round(slack * schedule[0], 3)
    noticed_at = last_seen + slack * schedule[0]
    delay = round(noticed_at - blackhole_at, 3)
    leak = watch.until(max(0.0, min(noticed_at, blackhole_at + detect_within) - case.transcript.now()) + 0.3,
                       lambda r: True)
    if leak is not None:
        raise HarnessError(f"data arrived through a black-holed connection: {leak.first_line!r}")
    end = case.transcript.now()
    case.measure("keepalives", len(sent), "", learned_s=round(learned_at - idle_from, 3))
    case.measure("keepalive_gap", schedule[0], "s", start=schedule[1], end=schedule[2],
                 lower_bound=schedule is gaps[-1])
    case.measure("blackhole_at", round(blackhole_at, 3), "s", natural=bool(natural))
    case.measure("noticed_after", delay, "s", threshold=detect_within, worst_case=worst,
                 rule=f"{slack:g} x longest keepalive gap")
    tl = timeline(case, imap.label, f"silent drop on {scenario}", start=max(0.0, idle_from - 0.3), end=end + 0.2,
                  idle_from=idle_from, noticed_at=noticed_at if len(sent) >= 2 else None,
                  noticed_label=f"no keepalive for {slack * schedule[0]:.3f} s: client declares the channel dead",
                  gap=schedule, blackhole_at=blackhole_at, thresholds={"detect within": (detect_within, blackhole_at)})
    ok = len(sent) >= 2 and worst <= detect_within
    case.attach("timeline", tl.as_dict("pass" if ok else "fail"))
    window = f"{learned_at - idle_from:.1f} s of IDLE"
    assert len(sent) >= 2, (
        f"fewer than two keepalives ({len(sent)}) in {window}: the server's silence of at least {schedule[0]:.3f} s "
        f"(t={schedule[1]:.3f}-{schedule[2]:.3f}) is no schedule a client can learn, so the black hole that began at "
        f"t={blackhole_at:.3f} s cannot be told from a quiet mailbox within {detect_within:g} s "
        f"(a passing schedule is at most {detect_within / slack:.2f} s: detect_within / slack)")
    bound = " at least" if schedule is gaps[-1] else ""
    assert worst <= detect_within, (
        f"the server's keepalive schedule is{bound} {schedule[0]:.3f} s (longest silence t={schedule[1]:.3f}-"
        f"{schedule[2]:.3f} in {window}, {len(sent)} keepalives), so a black hole right after a keepalive is noticed "
        f"only{bound} {worst:.3f} s later ({slack:g} x the schedule), expected within {detect_within:g} s; this one, "
        f"from t={blackhole_at:.3f} s, at t={noticed_at:.3f} s")
    case.passed(f"keepalives every <= {schedule[0]:.3f} s ({len(sent)} in {window}): a black hole is noticed within "
                f"{worst:.3f} s (<= {detect_within:g} s); this one, from t={blackhole_at:.3f} s, {delay:.3f} s later")
