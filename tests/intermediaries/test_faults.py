"""A fault of the suite's own intermediary (an exception in an addon) lands in the case transcript with its
traceback, in ``path.harness_errors``, and makes the case ``error``: never a ``fail`` of the target."""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

from conformance.intermediaries.path import NetworkPath
from conformance.intermediaries.scenario import parse_scenario
from conformance.transcript import Transcript
from tests.conftest import run_cli

from . import raising_addon  # noqa: F401 - registers the test-only intermediaries
from .conftest import http_target, outcome, peer_target

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def started(scenario: str, target):
    path = NetworkPath(parse_scenario(scenario), target, Transcript(secrets=target.secrets())).start()
    try:
        yield path
    finally:
        path.stop()


def _fault_lines(path) -> list[str]:
    return [e.text for e in path.transcript.entries if e.direction == "I" and e.leg == "intermediary"]


def _wait_for_fault(path, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.harness_errors and time.monotonic() < deadline:
        time.sleep(0.01)


def test_an_exception_in_tcp_message_is_a_recorded_fault_with_its_traceback(tcp_peer):
    with started("raising:hook=tcp_message", peer_target(tcp_peer.port)) as path:
        sock = path.open("imap")
        fate, _ = outcome(sock, 5)
        sock.close()
        _wait_for_fault(path)
    assert fate == "eof", f"the test addon cuts the connection before it raises, saw {fate}"
    assert path.harness_errors and "Raising.tcp_message" in path.harness_errors[0] \
        and "RuntimeError: deliberate failure in tcp_message" in path.harness_errors[0], path.harness_errors
    lines = _fault_lines(path)
    assert lines and "not the target's fault" in lines[0], lines
    assert "raising_addon.py" in lines[0] and "in tcp_message" in lines[0], "the innermost frames must be kept"


def test_an_exception_in_the_http_response_hook_is_a_recorded_fault(http_peer):
    with started("raising-http:hook=response", http_target(http_peer)) as path:
        with socket.create_connection(path.address("jmap"), timeout=5) as sock:
            sock.sendall(b"GET /plain HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        _wait_for_fault(path)
    assert data.startswith(b"HTTP/1.1 200"), data[:100]
    assert path.harness_errors and "Raising.response" in path.harness_errors[0], path.harness_errors
    assert any("in response" in line for line in _fault_lines(path))


def test_a_crash_inside_mitmproxy_from_a_stream_callable_is_a_recorded_fault(http_peer):
    with started("raising-http:hook=stream", http_target(http_peer)) as path:
        with socket.create_connection(path.address("jmap"), timeout=5) as sock:
            sock.sendall(b"GET /plain HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            _wait_for_fault(path)
    assert path.harness_errors and "deliberate failure in a response stream" in path.harness_errors[0], \
        path.harness_errors
    assert any("_failing_stream" in line for line in _fault_lines(path)), _fault_lines(path)


def test_a_fault_that_quotes_traffic_keeps_the_passwords_out(tcp_peer):
    with started("raising:hook=quote", peer_target(tcp_peer.port)) as path:
        sock = path.open("imap")
        sock.sendall(b'a1 LOGIN "user" "secretpw"\r\n')
        _wait_for_fault(path)
        sock.close()
    assert path.harness_errors and "LOGIN" in path.harness_errors[0], path.harness_errors
    assert "secretpw" not in " ".join(path.harness_errors + _fault_lines(path))


def test_an_exception_in_an_addon_timer_is_a_recorded_fault(tcp_peer):
    with started("raising:hook=timer", peer_target(tcp_peer.port)) as path:
        sock = path.open("imap")
        _wait_for_fault(path)
        sock.close()
    assert path.harness_errors and path.harness_errors[0].startswith("raising timer: RuntimeError"), \
        path.harness_errors


def test_an_addon_that_does_not_raise_leaves_no_fault(tcp_peer):
    with started("raising:hook=none", peer_target(tcp_peer.port)) as path:
        sock = path.open("imap")
        sock.settimeout(5)
        assert sock.recv(100).startswith(b"* OK")
        sock.close()
    assert path.harness_errors == [] and _fault_lines(path) == []


def test_a_case_whose_intermediary_raised_is_error_not_fail(tmp_path):
    """Under hook=tcp_message the client sees the target's connection end (a `fail` on its own); the fault
    of the intermediary makes it `error`, with the traceback in the result's transcript. The control
    scenario (hook=none) passes the same check."""
    run = run_cli(tmp_path / "run", "run", "--scenario", "raising:hook=none", "--scenario", "raising:hook=tcp_message",
                  "-k", "test_capability_code_greeting_and_login", prelude="import tests.intermediaries.raising_addon")
    results = {r["scenario"]: r for r in run.results["results"]}
    assert set(results) == {"raising:hook=none", "raising:hook=tcp_message"}, (run.out, run.err)
    assert results["raising:hook=none"]["verdict"] == "pass", results["raising:hook=none"]["message"]
    bad = results["raising:hook=tcp_message"]
    assert bad["verdict"] == "error", (bad["verdict"], bad["message"])
    assert "intermediary failed" in bad["message"] and "deliberate failure in tcp_message" in bad["message"]
    assert "the check had found: fail" in bad["message"], bad["message"]
    assert bad["requirement_verdicts"] and all(v["verdict"] == "error" for v in bad["requirement_verdicts"].values())
    faults = [e["text"] for e in bad["evidence"]["transcript"] if e["direction"] == "I" and e["leg"] == "intermediary"]
    assert faults and "raising_addon.py" in faults[0], faults
    assert run.rc == 2, "a harness error is exit 2"
