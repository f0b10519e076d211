"""Many push sessions through one intermediary, a control group beside them, and a reconnect storm (lemonade load)."""

from __future__ import annotations

import asyncio
import resource
from urllib.parse import urlsplit

import pytest

from conformance.errors import HarnessError, NotApplicable
from conformance.load.engine import Endpoints, Engine
from conformance.load.eventsource import JmapAccount

NOTIFIED = "scale.push.every-session-notified"
KEPT = "scale.push.sessions-kept"
RECOVERS = "scale.reconnect.storm-recovers"
NO_LOSS = "scale.reconnect.storm-no-loss"
EVENTSOURCE_PING_S = 10  # the keepalive a stream asks for, inside the load's default NAT window (30 s)


def raise_fd_limit() -> int:
    """Thousands of sessions need thousands of descriptors (three per session through the path): the soft limit
    goes up to the hard one, in this process only."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def imap_endpoint(case) -> str:
    for name in ("imap", "imaps"):
        if case.target.endpoint(name) is not None:
            return name
    raise NotApplicable(f"target {case.target.name} has no IMAP endpoint (the change-maker appends over IMAP)")


def endpoints(case, name: str) -> Endpoints:
    ep = case.target.endpoint(name)
    if ep is None:
        raise NotApplicable(f"target {case.target.name} has no {name} endpoint")
    tls = case.target.tls.client_context() if ep.scheme in ("imaps", "https") else None
    changes = case.target.endpoint(imap_endpoint(case))
    return Endpoints(path=case.path.address(name), direct=(ep.host, ep.port), tls=tls,
                     changes=(changes.host, changes.port),
                     changes_tls=case.target.tls.client_context() if changes.scheme == "imaps" else None)


def jmap_accounts(case, ping: int) -> dict[str, JmapAccount]:
    """Each account's JMAP session facts, discovered on the direct path: the same request targets then go
    through the path (an EventSource stream asks for Email changes and a ping every ``ping`` seconds)."""
    from conformance.checks.support.jmap import client, event_source_url

    out = {}
    ep = case.target.endpoint("jmap")
    for i, acct in enumerate(case.target.accounts):
        c = client(case, i, label=f"discovery#{i}", via_path=False)
        events = urlsplit(event_source_url(c, types="Email", closeafter="no", ping=ping))
        api = urlsplit(c.url("apiUrl"))
        out[acct.username] = JmapAccount(acct.username, acct.password, c.account_id,
                                         events.path + (f"?{events.query}" if events.query else ""),
                                         api.path + (f"?{api.query}" if api.query else ""), f"{ep.host}:{ep.port}")
    return out


def measure(case, report: dict) -> None:
    """Every figure of the report as a measurement (what `lemonade diff` compares between runs)."""
    for group in ("path", "control"):
        g = report["groups"][group]
        case.measure(f"sessions.{group}", g["sessions"])
        for phase, unit_key in (("before", ""), ("storm", ".storm"), ("after", ".after")):
            lat = g["latency"][phase]
            if lat["n"]:
                for k in ("p50_s", "p95_s", "p99_s", "max_s"):
                    case.measure(f"latency.{group}{unit_key}.{k[:-2]}", lat[k], "s", n=lat["n"])
        case.measure(f"keepalive_gap.{group}.max", g["keepalive_gap"]["max_s"], "s")
        case.measure(f"ramp_up.{group}", g["ramp_up_s"], "s")
        case.measure(f"octets.{group}", g["octets"], "B")
    added = report.get("added_latency", {})
    for k, v in added.items():
        if k != "ci95":
            case.measure(f"latency.added.{k[:-2]}", v, "s", ci95=added.get("ci95", {}).get(k),
                         note="path minus control, changes before the storm")
    path = report["groups"]["path"]
    case.measure("sessions.lost", path["lost"], drops=path["drops"])
    case.measure("sessions.refused", sum(path["refusals"].values()), by=path["refusals"])
    case.measure("notifications.missing_sessions", path["final_count_short"])
    case.measure("changes.made", report["changes"]["made"], mailboxes=report["changes"]["mailboxes"])
    if report["changes"].get("rate_achieved") is not None:
        case.measure("changes.rate", report["changes"]["rate_achieved"], "1/s")
    storm = report.get("storm")
    if storm:
        case.measure("storm.cut", storm["connections_cut"])
        case.measure("storm.all_back", storm["all_back_s"], "s", not_back=storm["not_back"])
        for k in ("p50_s", "p99_s"):
            case.measure(f"storm.recovery.{k[:-2]}", storm["recovery"][k], "s")
        case.measure("storm.octets", storm["octets"], "B", per_session=storm["octets_per_session"])
        case.measure("storm.attempts", storm["attempts"], failed=storm["failed_attempts"])
        case.measure("storm.refusals", sum(storm["refusals"].values()), by=storm["refusals"])
        case.measure("storm.changes_lost", storm["changes_lost"])
    for k, v in report["resources"].items():
        case.measure(f"suite.{k}", v, "s" if k.endswith("_s") else "MB" if k.endswith("_mb") else "")


def for_figure(report: dict) -> dict:
    """What the report's load figure draws: histograms, the timeline, storm recoveries (no per-session data)."""
    keep = {k: report[k] for k in ("plan", "phases", "timeline", "added_latency", "changes", "resources")
            if k in report}
    keep["groups"] = {g: {"sessions": v["sessions"], "latency": v["latency"], "keepalive_gap": v["keepalive_gap"]}
                      for g, v in report["groups"].items()}
    if "storm" in report:
        keep["storm"] = report["storm"]
    return keep


@pytest.mark.load
@pytest.mark.requirement(NOTIFIED, KEPT, RECOVERS, NO_LOSS)
def test_push_at_scale(case, load_plan):
    """N push sessions (IMAP IDLE, or JMAP EventSource streams) through the scenario's intermediary and a control
    group direct: notification latency on every session, sessions kept, and the reconnect storm when the
    intermediary drops them all at once."""
    raise_fd_limit()
    jmap = None
    if load_plan.protocol == "eventsource":
        name = "jmap"
        eps = endpoints(case, name)
        jmap = jmap_accounts(case, ping=EVENTSOURCE_PING_S)
    else:
        name = imap_endpoint(case)
        eps = endpoints(case, name)
    direct = case.scenario.is_direct
    case.path.record_messages(False)  # thousands of sessions: connection events only, not every notification
    kill = None if direct else (lambda how: case.path.kill(how, endpoint=name))
    proxy_cpu = None if direct else case.path.relay_cpu
    accounts = [(a.username, a.password) for a in case.target.accounts]
    case.note(f"load: {load_plan.sessions} {load_plan.protocol} sessions through {case.scenario}, "
              f"{load_plan.control} direct, {len(accounts)} accounts, {load_plan.rate}/s for {load_plan.duration_s} s, "
              f"shard {load_plan.shard}")
    engine = Engine(load_plan, accounts, eps, kill=kill, proxy_cpu=proxy_cpu, jmap=jmap)
    report = asyncio.run(engine.run())
    measure(case, report)
    case.attach("load", for_figure(report))
    broken = [e for g in report["groups"].values() for e in g["errors"] if "session failed" in e]
    if broken or report["notes"]:
        raise HarnessError("the load client failed: " + "; ".join((report["notes"] + broken)[:3]))

    path = report["groups"]["path"]
    before = path["latency"]["before"] if path["latency"]["before"]["n"] else path["latency"]["after"]
    bound = case.param("max_latency_p99")
    added = report.get("added_latency", {}).get("p99_s")
    case.require(NOTIFIED, path["final_count_short"] == 0 and before["n"] > 0 and before["p99_s"] <= bound,
                 f"{NOTIFIED}: expected every one of {path['sessions']} sessions to see all "
                 f"{report['changes']['made']} changes with p99 <= {bound} s; saw {path['final_count_short']} sessions "
                 f"short of the final count, p99 {before['p99_s']:.3f} s over {before['n']} notifications "
                 f"(control p99 {report['groups']['control']['latency']['before']['p99_s']:.3f} s"
                 + (f", path minus control {added * 1000:+.1f} ms" if added is not None else "") + ")")
    refused = sum(path["refusals"].values())
    case.require(KEPT, not path["lost"] and not path["never_idle"] and not refused,
                 f"{KEPT}: expected all {path['sessions']} sessions to reach IDLE and stay up; "
                 f"{path['never_idle']} never idled, {refused} refusals {path['refusals']}, {path['lost']} dropped "
                 f"outside the storm {path['drops']}; longest silence {path['keepalive_gap']['max_s']:.1f} s; "
                 f"first errors: {path['errors'][:2]}")
    storm = report.get("storm")
    if storm is None:
        reason = ("the scenario is direct: nothing to drop the sessions" if direct
                  else "the storm was not asked for (--no-storm)")
        case.requirement_not_applicable(RECOVERS, reason)
        case.requirement_not_applicable(NO_LOSS, reason)
    else:
        within = case.param("recovery_within")
        back = storm["all_back_s"]
        case.require(RECOVERS, back is not None and back <= within,
                     f"{RECOVERS}: expected all {storm['sessions']} sessions back within {within} s of the cut; "
                     f"{storm['not_back']} not back after {storm['window_s']:.1f} s, last back at "
                     f"{back if back is not None else '-'} s, refusals {storm['refusals']}, "
                     f"failed attempts {storm['failed_attempts']}")
        case.require(NO_LOSS, storm["changes_lost"] == 0 and path["final_count_short"] == 0,
                     f"{NO_LOSS}: expected every change since each session's previous SELECT to be reported by its "
                     f"resync; {storm['changes_lost']} missing (UIDs {storm['lost_uids_example']}), "
                     f"{path['final_count_short']} sessions short of the final count")
    case.passed(f"{path['sessions']} sessions: p99 {before['p99_s'] * 1000:.0f} ms"
                + (f" (path minus control {added * 1000:+.1f} ms)" if added is not None else "")
                + (f"; storm: all back in {storm['all_back_s']} s, {storm['octets_per_session']:.0f} B per session"
                   if storm else ""))
