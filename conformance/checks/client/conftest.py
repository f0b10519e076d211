"""Fixtures of the client checks: the client session through the case's path (a recording relay under direct)."""

from __future__ import annotations

import pytest

from conformance.errors import NotApplicable
from conformance.intermediaries.path import NetworkPath
from conformance.intermediaries.scenario import parse_scenario
from conformance.subjects.driver import ClientSession, Mailbox

PLAY_SHARE = 0.6  # of the case's time limit, a play may take at most this share


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
def session(request, case, wire, client_under_test, mailbox) -> ClientSession:
    """The client under test in this case; a play of it ends before the case's time limit (--case-timeout), so
    a client that never exits is stopped and judged rather than the case cut short as an error."""
    return ClientSession(case, client_under_test, mailbox=mailbox.name, time_limit=_play_limit(request))


def _play_limit(request) -> float:
    from conformance.plugin.state import state_of

    return PLAY_SHARE * state_of(request.config).plan.case_timeout_s


@pytest.fixture
def clear_session(request, case, client_under_test, mailbox) -> ClientSession:
    """A client session whose IMAP commands the relay reads in clear: under ``direct`` the path is a relay that
    terminates the client's implicit TLS (imaps) with the path's own CA, which the client is given as trusted,
    and speaks TLS again to the partner server. Every command and response is in the transcript, redacted."""
    if not case.scenario.is_direct:
        raise NotApplicable(f"reading a client's commands in clear needs the direct scenario, not {case.scenario}")
    if "imaps" not in client_under_test.supports:
        raise NotApplicable(f"client {client_under_test.name} does not connect with implicit TLS (imaps), which "
                            "the relay terminates to read its commands")
    if case.target.endpoint("imaps") is None:
        raise NotApplicable(f"target {case.target.name} has no imaps endpoint")
    case.path.stop()
    case.path = NetworkPath(parse_scenario("kill", case.depth), case.target, case.transcript)
    case.path.terminate_tls = {"imaps"}
    case.path.start()
    case.note("direct: the client's imaps connections go through a relay that terminates TLS with the path's CA "
              "(given to the client as trusted) and re-encrypts to the server: the transcript holds its commands")
    return ClientSession(case, client_under_test, mailbox=mailbox.name, endpoint="imaps",
                         time_limit=_play_limit(request))
