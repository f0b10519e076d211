"""The HTTP path with real sockets: explicit proxies (https-only, inspecting) and reverse proxies
(buffering, read-timeout), against the real Dovecot and small scripted HTTP servers."""

from __future__ import annotations

import hashlib
import socket
import ssl
import time

import httpx
import pytest
from cryptography import x509

from conformance.errors import NotApplicable
from conformance.intermediaries.path import Blocked
from conformance.targets import Target

from .conftest import http_target, insecure_tls, outcome, recv_until


def _actions(path, who):
    return [e.text for e in path.transcript.entries if e.direction == "I" and e.leg == who]


def test_https_only_refuses_connect_to_a_non_https_port_and_tunnels_imaps(dovecot, open_path):
    path = open_path("https-only:endpoints=imaps", dovecot)
    assert path.proxy_url and path.ca_file is None, "an opaque firewall terminates no TLS"
    with pytest.raises(Blocked) as blocked:
        path.open("imap")
    assert blocked.value.status == 403 and blocked.value.endpoint == "imap"
    with pytest.raises(NotApplicable, match="only through its HTTP proxy"):
        path.endpoint("imap")  # a direct connection would bypass the firewall
    tunnel = insecure_tls().wrap_socket(path.open("imaps"), server_hostname="localhost")
    direct = insecure_tls().wrap_socket(socket.create_connection(("127.0.0.1", dovecot.endpoint("imaps").port)),
                                        server_hostname="localhost")
    assert hashlib.sha256(tunnel.getpeercert(True)).digest() == hashlib.sha256(direct.getpeercert(True)).digest(), \
        "the tunnel must carry the server's own TLS, not an intercepted one"
    direct.close()
    recv_until(tunnel, b"* OK")
    user = dovecot.accounts[0]
    tunnel.sendall(f"a1 LOGIN {user.username} {user.password}\r\n".encode())
    assert b"a1 OK" in recv_until(tunnel, b"a1 ")
    tunnel.sendall(b"a2 LOGOUT\r\n")
    recv_until(tunnel, b"a2 OK")
    tunnel.close()
    acts = _actions(path, "https-only")
    imap_port, imaps_port = dovecot.endpoint("imap").port, dovecot.endpoint("imaps").port
    assert any(f":{imap_port} refused with 403" in a for a in acts), acts
    assert any(f":{imaps_port} allowed" in a for a in acts), acts
    assert user.password not in path.transcript.text()


def test_https_only_passes_plain_http_and_refuses_a_tunnel_to_it(http_peer, open_path):
    target = http_target(http_peer)
    path = open_path("https-only", target)
    url = path.endpoint("jmap").url
    r = httpx.get(url, proxy=path.proxy_url, timeout=5)
    assert r.status_code == 200 and r.text == "hello over http\n"
    with pytest.raises(Blocked):
        path.open("jmap")  # CONNECT to the plain-HTTP port: not declared HTTPS
    assert any(e.leg == "proxy-server" and e.text.startswith("GET http://") for e in path.transcript.entries)


def _combined(https_peer, dovecot) -> Target:
    t = http_target(https_peer, "https")
    t.endpoints["imaps"] = dovecot.endpoint("imaps")
    return t


def test_inspecting_intercepts_tls_with_its_own_ca_and_cuts_non_http(https_peer, dovecot, open_path):
    path = open_path("inspecting", _combined(https_peer, dovecot))
    assert path.ca_file and path.proxy_url
    url = path.endpoint("jmap").url
    r = httpx.get(url, proxy=path.proxy_url, verify=ssl.create_default_context(cafile=path.ca_file), timeout=5)
    assert r.status_code == 200 and r.text == "hello over http\n", "HTTP inside TLS passes"
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, proxy=path.proxy_url, timeout=5)  # the system trust store does not know the proxy's CA
    tunnel = insecure_tls().wrap_socket(path.open("imaps"), server_hostname="localhost")
    issuer = x509.load_der_x509_certificate(tunnel.getpeercert(True)).issuer.rfc4514_string()
    assert "lemonade intermediary CA" in issuer, f"TLS must be terminated by the proxy's own CA, issuer {issuer}"
    fate, waited = outcome(tunnel, 5)
    assert fate in ("eof", "rst"), f"IMAP inside TLS must be cut, saw {fate} after {waited:.3f} s"
    acts = _actions(path, "inspecting")
    assert any("non-HTTP traffic inside TLS" in a for a in acts), acts


def _get(addr: tuple[str, int], target_path: str) -> tuple[socket.socket, float]:
    sock = socket.create_connection(addr, timeout=5)
    sock.sendall(f"GET {target_path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    t0 = time.monotonic()
    return sock, t0


def _first_event_and_end(sock: socket.socket, t0: float) -> tuple[float, float]:
    data = recv_until(sock, b"\r\n\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    while b"data: 0" not in body:
        body += recv_until(sock, b"\n", timeout=5)
    first = time.monotonic() - t0
    while b"0\r\n\r\n" not in body:
        body += recv_until(sock, b"\n", timeout=5)
    return first, time.monotonic() - t0


def test_buffering_delays_a_streamed_response_until_its_end(http_peer, open_path):
    target = http_target(http_peer)
    plain = open_path("read-timeout:timeout=30", target)  # a streaming reverse proxy for comparison
    first, end = _first_event_and_end(*_get(plain.address("jmap"), "/stream"))
    assert first < 0.4 and end >= 0.8, f"streaming proxy: first event {first:.3f} s, end {end:.3f} s"

    held = open_path("buffering:limit=65536", target)
    first, end = _first_event_and_end(*_get(held.address("jmap"), "/stream"))
    assert first >= 0.8 and end - first < 0.2, \
        f"buffering proxy must hold the events until the end: first event {first:.3f} s, end {end:.3f} s"
    assert any("response complete" in a for a in _actions(held, "buffering"))

    small = open_path("buffering:limit=8", target)
    first, _ = _first_event_and_end(*_get(small.address("jmap"), "/stream"))
    assert first < 0.4, f"a limit below one event releases it at once, first event after {first:.3f} s"


def test_read_timeout_ends_a_silent_response(http_peer, open_path):
    path = open_path("read-timeout:timeout=1", http_target(http_peer))
    assert path.endpoint("jmap").port != http_peer.server_address[1], "endpoint('jmap') is the proxy"
    sock, t0 = _get(path.address("jmap"), "/silent")
    data = recv_until(sock, b"data: hello")
    t_event = time.monotonic()
    fate, _ = outcome(sock, 4)
    while fate == "data":
        fate, _ = outcome(sock, 4)
    ended = time.monotonic() - t_event
    assert fate in ("eof", "rst") and 0.9 <= ended < 1.7, f"expected the response ended ~1 s after the last byte, " \
                                                         f"saw {fate} after {ended:.3f} s"
    assert b"0\r\n\r\n" not in data, "the response was cut, not completed"
    acts = _actions(path, "read-timeout")
    assert acts and "without a byte from upstream: response 200 ended mid-body" in acts[0], acts


def test_reverse_proxy_in_front_of_an_https_jmap_terminates_tls_with_its_own_ca(https_peer, open_path):
    path = open_path("buffering", http_target(https_peer, "https"))
    ep = path.endpoint("jmap")
    assert ep.scheme == "https" and ep.port != https_peer.server_address[1] and path.ca_file
    r = httpx.get(ep.url.replace("localhost", "127.0.0.1"), verify=ssl.create_default_context(cafile=path.ca_file),
                  timeout=5)
    assert r.status_code == 200 and r.text == "hello over http\n"
    assert any("response complete" in a for a in _actions(path, "buffering"))


def test_tcp_faults_compose_with_the_forward_proxy(dovecot, open_path):
    path = open_path("https-only:endpoints=imaps+nat-idle:timeout=1,mode=fin", dovecot)
    tunnel = insecure_tls().wrap_socket(path.open("imaps"), server_hostname="localhost")
    recv_until(tunnel, b"* OK")
    t0 = time.monotonic()
    fate, _ = outcome(tunnel, 4)
    waited = time.monotonic() - t0
    assert fate in ("eof", "rst") and 0.8 <= waited < 1.7, f"the idle tunnel must be cut after ~1 s: {fate} {waited:.3f}"
    assert _actions(path, "nat-idle")
