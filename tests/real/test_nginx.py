"""real-nginx with real sockets: proxy_read_timeout (504 before the header), proxy_buffering (nothing, not even
the header, until the buffer fills or the upstream ends), the stream module in front of a TCP endpoint, the
version and the kept log."""

from __future__ import annotations

from conformance.intermediaries.real.nginx import NGINX
from tests.intermediaries.conftest import outcome, recv_until

from .conftest import http_get, installed, target_for


def test_read_timeout_before_header_is_504(open_real, http_upstream):
    installed(NGINX)
    path = open_real("real-nginx:read_timeout=1,buffering=on", target_for(http_port=http_upstream.server_address[1]))
    host, port = path.address("jmap")
    data, _, _ = http_get(host, port, "/slowhead", timeout=4)
    assert data.startswith(b"HTTP/1.1 504"), data[:200]
    actions = [e.text for e in path.transcript.entries if e.direction == "I"]
    assert any("504" in a for a in actions), actions  # from nginx's own error log, on the case clock
    fact = path.facts["intermediary"]
    assert fact["value"].startswith("nginx 1.") and fact["package"].startswith("nginx ")


def test_buffering_holds_even_the_header(open_real, http_upstream):
    """proxy_buffering on: a small event stream sends nothing until the read timeout ends it, and then only the
    header: the event held in the buffer is lost (measured); off: the event arrives at once."""
    installed(NGINX)
    target = target_for(http_port=http_upstream.server_address[1])
    held = open_real("real-nginx:read_timeout=2,buffering=on", target)
    data, first, how = http_get(*held.address("jmap"), "/events", timeout=4)
    assert first >= 1.8 and data.startswith(b"HTTP/1.1 200"), (first, how, data[:200])  # header only at the timeout
    assert b"data: first" not in data and how == "eof", (how, data[-200:])  # the held event never reaches the client
    assert b"0\r\n\r\n" not in data, "nginx ended the chunked body cleanly after a read timeout"
    passed = open_real("real-nginx:read_timeout=2,buffering=off", target)
    data, first, _ = http_get(*passed.address("jmap"), "/events", timeout=1.5)
    assert first < 1.0 and b"data: first" in data, (first, data[:200])


def test_stream_module_relays_tcp_and_times_out(open_real, tcp_peer, tmp_path):
    installed(NGINX)
    path = open_real("real-nginx:stream_timeout=1", target_for(imap_port=tcp_peer.port), tmp_path)
    sock = path.open("imap")
    assert b"scripted peer" in recv_until(sock, b"\r\n", 3)
    fate, waited = outcome(sock, 4)
    assert fate == "eof" and 0.8 < waited < 3, (fate, waited)  # proxy_timeout closes both sides
    tcp_peer.ended[0].wait(3)
    assert tcp_peer.fate[0] == "eof"
    path.stop()
    kept = [p.name for p in tmp_path.iterdir()]
    assert any(n.endswith("error.log") for n in kept), kept
    assert all(n.startswith(path.log_prefix) for n in kept)
