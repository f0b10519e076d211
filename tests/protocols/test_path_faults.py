"""The rule through a real scenario path (mitmproxy): the far side resetting through the intermediary is the
server's fault; the suite's own listener refusing is the harness's; a direct connect refused is the target's."""

from __future__ import annotations

import pytest

from conformance.errors import ConformanceFailure, HarnessError, ServerClosed, TargetUnreachable
from conformance.protocols.imap import ImapConnection
from tests.fakes.scripted import PeerConn, ScriptedPeer, free_port
from tests.intermediaries.conftest import network_path, peer_target


def test_a_reset_by_the_far_side_through_the_intermediary_is_a_fail():
    def script(c: PeerConn) -> None:
        c.send(b"* OK behind the path\r\n")
        c.recv_until()
        c.reset()

    with ScriptedPeer(script) as peer, network_path("link", peer_target(peer.port)) as path:
        host, port = path.address("imap")
        conn = ImapConnection(host, port, transcript=path.transcript, timeout=3, via="intermediary listener (link)")
        conn.read_greeting()
        with pytest.raises(ServerClosed):
            conn.command("NOOP")


def test_the_suite_s_own_listener_refusing_is_an_error_and_the_target_refusing_is_unreachable():
    port = free_port()
    with ScriptedPeer(lambda c: c.stall()) as peer, network_path("link", peer_target(peer.port)) as path:
        path.reverse["imap"] = ("127.0.0.1", port)  # the intermediary's listener is gone (nothing listens there)
        with pytest.raises(HarnessError, match="suite's own intermediary") as own:
            path.open("imap", timeout=1)
    assert not isinstance(own.value, (TargetUnreachable, ConformanceFailure))
    with network_path("direct", peer_target(port)) as direct:
        with pytest.raises(TargetUnreachable):
            direct.open("imap", timeout=1)
