"""EventSource clients: after the stream ends, reconnect with Last-Event-ID and lose no change."""

from __future__ import annotations

import re
import time

import pytest

from conformance.errors import ConformanceFailure, NotApplicable

from .support import client_timeline, play_failure
from .test_push import start_push

LAST_ID = re.compile(r"^last-event-id: *(\S+)", re.I | re.M)


def stream_requests(case) -> list:
    return [e for e in case.transcript.entries if e.leg == "proxy-server" and e.direction == "C"
            and e.text.startswith("GET ") and "eventsource" in e.text.split("\r\n", 1)[0].lower()]


@pytest.mark.requirement("sse.reconnect-resume")
@pytest.mark.uses("jmap")
@pytest.mark.scenarios("read-timeout")
def test_eventsource_reconnect_resume(case, scenario, session, mailbox, client_under_test):
    """A reverse proxy ends the quiet stream; the client comes back with Last-Event-ID and gets the next change."""
    if "eventsource" not in client_under_test.supports:
        raise NotApplicable(f"client {client_under_test.name} does not use EventSource")
    within = case.param("reconnect_within")
    quiet = float(scenario.element("read-timeout").get("timeout"))
    play, up_at = start_push(case, session, mailbox)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not stream_requests(case):  # the stream is open: a change now is pushed
        time.sleep(0.1)
    time.sleep(0.3)
    mid1 = mailbox.append("sse-1")  # a state event with an id the client must remember
    first = session.wait_for({mid1}, 15.0, play)
    if mid1 not in first:
        raise ConformanceFailure(
            f"sse.reconnect-resume: a change made while the client's stream was open (t={mailbox.appended[mid1]:.3f}) "
            f"was not delivered within 15 s, so there was no event id to resume from; {play_failure(session, play)}")
    ended_before = len(stream_requests(case))
    deadline = time.monotonic() + quiet + within + 2
    while time.monotonic() < deadline and len(stream_requests(case)) <= ended_before:
        time.sleep(0.2)
    mid2 = mailbox.append("sse-2")
    got = session.wait_for({mid2}, 15.0, play)
    session.stop(play)
    reqs = stream_requests(case)
    later = reqs[ended_before:]
    ids = [m.group(1) for e in later for m in [LAST_ID.search(e.text)] if m]
    case.measure("stream_requests", len(reqs), "")
    case.measure("last_event_id_sent", ids[:1] or None)
    ok = bool(later) and bool(ids) and mid2 in got
    case.attach("timeline", client_timeline(case, session, f"{session.adapter.name}: EventSource through {scenario}",
                                            changes={m: mailbox.appended[m] for m in (mid1, mid2)}).as_dict(
                                                "pass" if ok else "fail"))
    assert later, (f"sse.reconnect-resume: the stream was ended by the proxy after {quiet:g} s of quiet, and the client "
                   f"did not request it again within {within:g} s; {play_failure(session, play)}")
    assert ids, ("sse.reconnect-resume: the client reconnected without Last-Event-ID: "
                 f"{later[0].text.splitlines()[0]!r}")
    assert mid2 in got, "sse.reconnect-resume: the change made after the reconnect was never delivered"
    case.passed(f"reconnected with Last-Event-ID {ids[0]} and delivered the next change")
