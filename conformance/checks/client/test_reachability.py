"""The HTTP-only firewall, per client: does it reach its mail at all through https-only and inspecting?"""

from __future__ import annotations

import pytest

from .support import client_timeline, intermediary_actions, play_failure

SCENARIOS = ("https-only", "https-only:endpoints=imaps", "inspecting")


def outcome(case, delivered: bool) -> str:
    if delivered:
        return "reached"
    acts = " ".join(e.text for e in intermediary_actions(case))
    if "refused with 403" in acts:
        return "blocked (403)"
    if "refused the proxy's certificate" in acts:
        return "refused the interceptor's certificate"
    if "connection cut" in acts:
        return "cut (not HTTP)"
    return "failed"


@pytest.mark.requirement("client.http.reachability")
@pytest.mark.scenarios(*SCENARIOS)
def test_reachability(case, scenario, session, mailbox):
    """Fetch one message through the firewall; the outcome is data for the per-client reachability matrix."""
    mid = mailbox.append("reach")
    play = session.play("fetch-once", timeout=45)
    delivered = session.output.first(mid) is not None
    result = outcome(case, delivered)
    url, proxy = session.server_url()
    case.attach("reachability_client", {"client": session.adapter.name, "scenario": str(scenario),
                                        "endpoint": session.endpoint, "url": url, "outcome": result})
    case.measure("reached", delivered, outcome=result)
    case.attach("timeline", client_timeline(case, session, f"{session.adapter.name}: through {scenario}").as_dict())
    detail = "" if delivered else f"; {play_failure(session, play)}"
    case.informational(f"{session.adapter.name} through {scenario} ({session.endpoint} via {proxy}): {result}{detail}")
