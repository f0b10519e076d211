"""Helpers for the real-intermediary tests: a started real path per test, a scripted HTTP upstream, and
skips only where a program cannot be installed (the README commands install them all)."""

from __future__ import annotations

import contextlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conformance.intermediaries.path import NetworkPath
from conformance.intermediaries.scenario import parse_scenario
from conformance.targets import Account, Endpoint, Target
from conformance.transcript import Transcript
from tests.intermediaries.conftest import TcpPeer


@contextlib.contextmanager
def real_path(scenario: str, target: Target, keep_logs=None):
    transcript = Transcript()
    path = NetworkPath.for_scenario(parse_scenario(scenario), target, transcript)
    path.keep_logs = keep_logs
    try:
        yield path.start()
    finally:
        path.stop()


@pytest.fixture
def open_real():
    """open_real(scenario, target, keep_logs=None) -> started path, stopped at the end of the test."""
    with contextlib.ExitStack() as stack:
        yield lambda scenario, target, keep_logs=None: stack.enter_context(real_path(scenario, target, keep_logs))


@pytest.fixture
def tcp_peer():
    peer = TcpPeer().start()
    yield peer
    peer.stop()


class Handler(BaseHTTPRequestHandler):
    """/events: header and one small event, then silence; /slowhead: the header only after 3 s; else a body."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/slowhead"):
            self.server.stop_flag.wait(3)
        if self.path.startswith("/events"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()  # HTTP/1.0 upstream (nginx's default): close-delimited body
            self.wfile.write(b"data: first\n\n")
            self.wfile.flush()
            self.server.stop_flag.wait(6)
            return
        body = b"hello through the proxy\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def http_upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.stop_flag = threading.Event()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server
    server.stop_flag.set()
    server.shutdown()
    server.server_close()


def target_for(imap_port: int | None = None, http_port: int | None = None) -> Target:
    eps = {}
    if imap_port:
        eps["imap"] = Endpoint("imap", "imap", "127.0.0.1", imap_port)
    if http_port:
        eps["jmap"] = Endpoint("jmap", "http", "127.0.0.1", http_port, "/jmap")
    return Target(name="scripted", endpoints=eps, accounts=[Account("user", "secretpw")])


def http_get(host: str, port: int, path: str, timeout: float) -> tuple[bytes, float, str]:
    """GET over a raw socket: (everything received, seconds until the first octet or the end, how it ended)."""
    import socket

    t0 = time.monotonic()
    first = None
    data = b""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        deadline = t0 + timeout
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                return data, (first or time.monotonic()) - t0, "timeout"
            except ConnectionResetError:
                return data, (first or time.monotonic()) - t0, "rst"
            if not chunk:
                return data, (first or time.monotonic()) - t0, "eof"
            if first is None:
                first = time.monotonic()
            data += chunk
            if b"Content-Length" in data and data.endswith(b"\n") and b"\r\n\r\n" in data and b"hello" in data:
                return data, first - t0, "complete"


def installed(program) -> None:
    """Skip only where the program cannot be installed (no root to run the README commands)."""
    import os

    if program.path() is None and os.geteuid() != 0:
        pytest.skip(f"{program.name} is not installed and cannot be installed here (not root)")
