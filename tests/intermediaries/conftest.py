"""Helpers for the intermediary tests: a NetworkPath per test, scripted TCP/HTTP peers on loopback."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

import pytest

from conformance.intermediaries.path import NetworkPath
from conformance.intermediaries.scenario import parse_scenario
from conformance.targets import Account, Endpoint, Target
from conformance.transcript import Transcript


@contextlib.contextmanager
def network_path(scenario: str, target: Target):
    transcript = Transcript()
    transcript.secrets |= target.secrets()
    path = NetworkPath(parse_scenario(scenario), target, transcript).start()
    try:
        yield path
    finally:
        path.stop()
    # the suite's own intermediary must never raise while it does its job (a fault would make a case error)
    assert not path.harness_errors, path.harness_errors


@pytest.fixture
def open_path():
    """open_path(scenario, target) -> started NetworkPath, stopped at the end of the test."""
    with contextlib.ExitStack() as stack:
        yield lambda scenario, target: stack.enter_context(network_path(scenario, target))


def recv_until(sock: socket.socket, marker: bytes, timeout: float = 5.0) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while marker not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no {marker!r} within {timeout} s; got {data[-300:]!r}")
        sock.settimeout(left)
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(f"EOF before {marker!r}; got {data[-300:]!r}")
        data += chunk
    return data


def outcome(sock: socket.socket, timeout: float) -> tuple[str, float]:
    """Wait for the connection's fate: ('eof'|'rst'|'data'|'timeout', seconds waited)."""
    t0 = time.monotonic()
    sock.settimeout(timeout)
    try:
        data = sock.recv(65536)
    except ConnectionResetError:
        return "rst", time.monotonic() - t0
    except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
        return "eof", time.monotonic() - t0
    except (socket.timeout, TimeoutError):
        return "timeout", time.monotonic() - t0
    return ("data" if data else "eof"), time.monotonic() - t0


def insecure_tls() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass
class TcpPeer:
    """A scripted TCP server: sends ``greeting``, records what it receives and how each connection ended."""

    greeting: bytes = b"* OK scripted peer\r\n"
    sock: socket.socket = field(default_factory=socket.socket)
    received: list[bytearray] = field(default_factory=list)
    fate: list[str] = field(default_factory=list)  # per connection: eof | rst | open
    ended: list[threading.Event] = field(default_factory=list)

    def start(self) -> "TcpPeer":
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.stop_flag = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def _accept(self) -> None:
        while not self.stop_flag.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            i = len(self.received)
            self.received.append(bytearray())
            self.fate.append("open")
            self.ended.append(threading.Event())
            threading.Thread(target=self._serve, args=(conn, i), daemon=True).start()

    def _serve(self, conn: socket.socket, i: int) -> None:
        with conn:
            if self.greeting:
                conn.sendall(self.greeting)
            conn.settimeout(0.1)
            while not self.stop_flag.is_set():
                try:
                    data = conn.recv(65536)
                except (socket.timeout, TimeoutError):
                    continue
                except ConnectionResetError:
                    self.fate[i] = "rst"
                    break
                if not data:
                    self.fate[i] = "eof"
                    break
                self.received[i] += data
            self.ended[i].set()

    def wait_connection(self, n: int = 1, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < n:
            if time.monotonic() > deadline:
                raise TimeoutError("no connection reached the peer")
            time.sleep(0.01)

    def stop(self) -> None:
        self.stop_flag.set()
        self.sock.close()


@pytest.fixture
def tcp_peer():
    peer = TcpPeer().start()
    yield peer
    peer.stop()


def peer_target(imap_port: int, jmap: Endpoint | None = None) -> Target:
    eps = {"imap": Endpoint("imap", "imap", "127.0.0.1", imap_port)}
    if jmap:
        eps["jmap"] = jmap
    return Target(name="scripted", endpoints=eps, accounts=[Account("user", "secretpw")])



def _make_http_peer(tls_dir=None):
    """A threaded HTTP/1.1 server with scripted routes; TLS when ``tls_dir`` holds cert.pem/key.pem."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def do_GET(self):  # noqa: N802
            if self.path.startswith("/stream") or self.path.startswith("/silent"):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.flush()
                if self.path.startswith("/stream"):
                    for i in range(3):
                        self._chunk(b"data: %d\n\n" % i)
                        time.sleep(0.4)
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                else:
                    self._chunk(b"data: hello\n\n")
                    self.server.stop_flag.wait(6)  # silent, until the test ends
                    try:
                        self.wfile.write(b"0\r\n\r\n")
                    except OSError:
                        pass
                return
            body = b"hello over http\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.stop_flag = threading.Event()
    if tls_dir is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls_dir / "cert.pem", tls_dir / "key.pem")
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    return server


@pytest.fixture
def http_peer():
    server = _make_http_peer()
    yield server
    server.stop_flag.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def https_peer(tmp_path):
    from conformance.providers.base import make_certificate

    make_certificate(tmp_path)
    server = _make_http_peer(tmp_path)
    server.cert_file = tmp_path / "cert.pem"
    yield server
    server.stop_flag.set()
    server.shutdown()
    server.server_close()


def http_target(server, scheme: str = "http", imap_port: int | None = None) -> Target:
    port = server.server_address[1]
    jmap = Endpoint("jmap", scheme, "127.0.0.1", port, "/jmap")
    eps = {"jmap": jmap}
    if imap_port:
        eps["imap"] = Endpoint("imap", "imap", "127.0.0.1", imap_port)
    return Target(name="http-scripted", endpoints=eps, accounts=[Account("user", "secretpw")])
