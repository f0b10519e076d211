"""real-nat with real sockets and the kernel's own NAT: what strict and default modes do when a mapping expires,
seen from both ends (the client's socket in the client namespace, the relay socket that is the server's end)."""

from __future__ import annotations

import os
import time

import pytest

from conformance.intermediaries.real.nat import describe_event
from conformance.intermediaries.real.netns import dump_finished, dump_request, missing
from tests.intermediaries.conftest import outcome, recv_until

from .conftest import target_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="real-nat needs root (network namespaces)")


def _server_notes(path, since: float) -> list[str]:
    return [e.text for e in path.transcript.entries if e.leg == "proxy-server" and e.t >= since]


def _expired(path, timeout: float) -> float:
    """Wait for the kernel's DESTROY of the established mapping; its time on the case clock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hit = [e for e in path.transcript.entries if e.direction == "I" and "DESTROY" in e.text]
        if hit:
            return hit[0].t
        time.sleep(0.05)
    raise AssertionError("no conntrack DESTROY event: the mapping did not expire")


def test_strict_is_a_silent_black_hole(open_real, tcp_peer):
    assert missing() is None, missing()
    path = open_real("real-nat:timeout=1,mode=strict", target_for(imap_port=tcp_peer.port))
    sock = path.open("imap")
    assert b"scripted peer" in recv_until(sock, b"\r\n", 3)
    expired_at = _expired(path, 4)
    sock.sendall(b"a NOOP\r\n")  # client first after expiry: conntrack finds it INVALID (loose=0): dropped
    fate, waited = outcome(sock, 1.5)
    assert fate == "timeout", (fate, waited)  # the client's read times out
    assert tcp_peer.received[0] == b"" and tcp_peer.fate[0] == "open"  # the server saw nothing
    assert not [n for n in _server_notes(path, expired_at) if "arrived" in n or "NOOP" in n]
    assert path.facts["intermediary"]["config"].count("loose=0")


def test_default_client_first_continues_server_first_resets_server(open_real, tcp_peer):
    path = open_real("real-nat:timeout=1,mode=default", target_for(imap_port=tcp_peer.port))
    sock = path.open("imap")
    recv_until(sock, b"\r\n", 3)
    _expired(path, 4)
    sock.sendall(b"a NOOP\r\n")  # loose=1: a mid-stream packet from the client re-creates the mapping
    deadline = time.monotonic() + 3
    while b"NOOP" not in tcp_peer.received[0] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert b"a NOOP" in tcp_peer.received[0]
    assert any("re-created" in e.text for e in path.transcript.entries if e.direction == "I")


def test_default_server_first_after_expiry(open_real):
    """The server speaks first after expiry: the router answers it with RST; the client is told nothing."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    got: dict = {}

    def serve():
        conn, _ = listener.accept()
        conn.sendall(b"* OK hello\r\n")
        got["ready"].wait(5)
        try:
            conn.sendall(b"* 1 EXISTS\r\n")
            conn.settimeout(2)
            got["server"] = "data" if conn.recv(100) else "eof"
        except ConnectionResetError:
            got["server"] = "rst"
        except OSError as e:
            got["server"] = f"error {e}"
        conn.close()

    got["ready"] = threading.Event()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    path = open_real("real-nat:timeout=1,mode=default", target_for(imap_port=listener.getsockname()[1]))
    sock = path.open("imap")
    recv_until(sock, b"\r\n", 3)
    _expired(path, 4)
    got["ready"].set()
    fate, _ = outcome(sock, 1.5)
    t.join(5)
    listener.close()
    assert got.get("server") == "rst", got  # the router's own stack reset the server's end
    assert fate == "timeout"  # and the client heard nothing
    assert any("RST" in n and "server side" in n for n in _server_notes(path, 0))


def test_blackhole_on_demand_and_kill(open_real, tcp_peer):
    path = open_real("real-nat:timeout=30,mode=default", target_for(imap_port=tcp_peer.port))
    first = path.open("imap")
    recv_until(first, b"\r\n", 3)
    assert path.blackhole() == 1
    first.sendall(b"a NOOP\r\n")
    assert outcome(first, 1.0)[0] == "timeout"
    second = path.open("imap")  # a new connection still passes
    assert b"scripted peer" in recv_until(second, b"\r\n", 3)
    assert path.kill("rst", "imap") >= 1
    assert outcome(second, 2)[0] in ("rst", "eof")


def test_conntrack_event_lines_and_netlink_dump():
    """Sans-IO: what a conntrack event line becomes, and the dump request/finish framing."""
    destroy = ("[1796573134.712840]\t[DESTROY] tcp      6 ESTABLISHED src=100.64.0.2 dst=198.51.100.2 sport=48512 "
               "dport=5000 src=198.51.100.2 dst=198.51.100.1 sport=5000 dport=48512 [ASSURED]")
    kind, text, conn = describe_event(destroy, 3)
    assert kind == "I" and "forgotten after 3 s" in text and conn == "nat:48512"
    server_first = ("[1796573134.712871]\t    [NEW] tcp      6 3 ESTABLISHED src=198.51.100.2 dst=198.51.100.1 "
                    "sport=5000 dport=48512 [UNREPLIED] src=198.51.100.1 dst=198.51.100.2 sport=48512 dport=5000")
    assert describe_event(server_first, 3)[0] == "I" and "router itself" in describe_event(server_first, 3)[1]
    syn = "[1.0]\t    [NEW] tcp      6 120 SYN_SENT src=100.64.0.2 dst=198.51.100.2 sport=1 dport=2 [UNREPLIED]"
    assert describe_event(syn, 3)[0] == "N"
    assert describe_event("conntrack v1.4.7 (conntrack-tools): 6 flow events have been shown.", 3) is None
    req = dump_request(7)
    assert len(req) == 20 and req[4:6] == (0x101).to_bytes(2, "little")
    done = (16).to_bytes(4, "little") + (3).to_bytes(2, "little") + bytes(10)
    assert dump_finished(done) and not dump_finished(bytes(0))
