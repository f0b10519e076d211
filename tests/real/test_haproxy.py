"""real-haproxy with real sockets: timeout client/server in tcp mode (an idle tunnel closed) and http mode (504
before the header), with haproxy's own log flags as the recorded action."""

from __future__ import annotations

from conformance.intermediaries.real.haproxy import HAPROXY
from tests.intermediaries.conftest import outcome, recv_until

from .conftest import http_get, installed, target_for


def test_tcp_idle_timeout(open_real, tcp_peer):
    installed(HAPROXY)
    path = open_real("real-haproxy:timeout=1", target_for(imap_port=tcp_peer.port))
    sock = path.open("imap")
    assert b"scripted peer" in recv_until(sock, b"\r\n", 3)
    fate, waited = outcome(sock, 4)
    assert fate in ("eof", "rst") and 0.8 < waited < 3, (fate, waited)
    tcp_peer.ended[0].wait(10)  # an event awaited: haproxy closes the server side at the same timeout
    assert tcp_peer.fate[0] in ("eof", "rst")


def test_http_timeout_before_header(open_real, http_upstream):
    installed(HAPROXY)
    path = open_real("real-haproxy:timeout=1", target_for(http_port=http_upstream.server_address[1]))
    data, _, _ = http_get(*path.address("jmap"), "/slowhead", timeout=4)
    assert data.startswith(b"HTTP/1.1 504") or data.startswith(b"HTTP/1.0 504"), data[:200]
