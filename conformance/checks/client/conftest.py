"""Fixtures of the client checks: the client session through the case's path (a recording relay under direct)."""

from __future__ import annotations

import pytest

from conformance.intermediaries.path import NetworkPath
from conformance.intermediaries.scenario import parse_scenario
from conformance.subjects.driver import ClientSession, Mailbox


@pytest.fixture
def wire(case):
    """Under ``direct`` a real client's bytes would go unrecorded: put a relay with no behaviour (the ``kill``
    intermediary, idle unless a check cuts) on the path, so every byte is in the transcript. Other scenarios
    record through their own intermediaries."""
    if case.scenario.is_direct:
        case.path.stop()
        case.path = NetworkPath(parse_scenario("kill", case.depth), case.target, case.transcript)
        case.path.start()
        case.note("direct: the client's connections go through a recording relay with no behaviour (bytes are "
                  "relayed unchanged; the transcript is the client's wire)")
    elif "http-reverse" in case.scenario.paths:
        # a reverse proxy an operator runs in front of a server keeps the client's Host header (nginx:
        # proxy_set_header Host $host), so a server that builds absolute redirects from it (Cyrus:
        # /.well-known/jmap -> https://HOST/jmap) keeps the client on the proxy; mitmproxy's reverse mode would
        # rewrite it to the upstream's address and send the client around the proxy
        case.path.stop()
        case.path = NetworkPath(case.scenario, case.target, case.transcript)
        case.path.options["keep_host_header"] = True
        case.path.start()
        case.note("the reverse proxy keeps the client's Host header (as nginx with proxy_set_header Host $host)")
    return case.path


@pytest.fixture
def mailbox(case) -> Mailbox:
    """A scratch mailbox on the partner server, filled by the suite's own IMAP client on a direct connection."""
    return Mailbox(case)


@pytest.fixture
def session(case, wire, client_under_test, mailbox) -> ClientSession:
    return ClientSession(case, client_under_test, mailbox=mailbox.name)
