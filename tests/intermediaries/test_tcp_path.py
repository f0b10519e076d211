"""The TCP path with real sockets and the real embedded Dovecot: every fault with timing tolerances."""

from __future__ import annotations

import re
import time

from .conftest import outcome, peer_target, recv_until


def _imap(path, name="imap"):
    sock = path.open(name)
    recv_until(sock, b"* OK")
    return sock


def _noop(sock, tag=b"a1"):
    sock.sendall(tag + b" NOOP\r\n")
    return recv_until(sock, tag + b" OK")


def _sent_through(sock, tcp_peer, data: bytes, timeout: float = 3) -> None:
    """Send ``data`` and wait (bounded) until the scripted peer behind the path has received it."""
    sock.sendall(data)
    tcp_peer.wait_connection()
    deadline = time.monotonic() + timeout
    while data not in tcp_peer.received[0] and time.monotonic() < deadline:
        time.sleep(0.01)


def _actions(path, who):
    return [e for e in path.transcript.entries if e.direction == "I" and e.leg == who]


def test_nat_idle_keeps_a_connection_idle_below_the_timeout_and_resets_one_idle_beyond(dovecot, open_path):
    path = open_path("nat-idle:timeout=1,mode=rst", dovecot)
    sock = _imap(path)
    time.sleep(0.7)
    _noop(sock)  # idle 0.7 s: still mapped
    time.sleep(0.7)
    _noop(sock, b"a2")  # the NOOP restarted the clock
    time.sleep(1.3)
    fate, _ = outcome(sock, 3)
    assert fate == "rst", f"expected a reset after 1.3 s idle (timeout 1 s), saw {fate}"
    acts = _actions(path, "nat-idle")
    rst = r"nat-idle: 1\.\d{3} s without traffic, connection closed with RST"
    assert len(acts) == 1 and re.match(rst, acts[0].text), acts
    idle = float(acts[0].text.split()[1])
    assert 1.0 <= idle < 1.5, f"cut after {idle} s idle, expected 1 s (+ scheduling slack)"
    last_reply = [e for e in path.transcript.entries if e.leg == "proxy-server" and e.direction == "S"][-1]
    assert 1.0 <= acts[0].t - last_reply.t < 1.5, "the action's timestamp is on the legs' clock, 1 s after the last byte"


def test_nat_idle_fin_gives_the_client_an_orderly_close(dovecot, open_path):
    path = open_path("nat-idle:timeout=1,mode=fin", dovecot)
    sock = _imap(path)
    t0 = time.monotonic()
    fate, _ = outcome(sock, 4)
    waited = time.monotonic() - t0
    assert fate == "eof", f"expected EOF (FIN), saw {fate}"
    assert 0.9 <= waited < 1.6, f"EOF after {waited:.3f} s idle, expected ~1 s"


def test_nat_idle_silent_tells_neither_side(tcp_peer, open_path):
    path = open_path("nat-idle:timeout=1,mode=silent", peer_target(tcp_peer.port))
    sock = _imap(path)
    _sent_through(sock, tcp_peer, b"a1 NOOP\r\n")
    time.sleep(1.4)  # the mapping is dropped after 1 s
    sock.sendall(b"a2 NOOP\r\n")
    fate, waited = outcome(sock, 2.0)
    assert fate == "timeout", f"client must see nothing (no FIN, no RST, no data), saw {fate} after {waited:.3f} s"
    assert tcp_peer.fate[0] == "open" and not tcp_peer.ended[0].is_set(), \
        f"server side must see no close either, saw {tcp_peer.fate[0]}"
    assert b"a2 NOOP" not in tcp_peer.received[0], "data after the drop must not be forwarded"
    acts = _actions(path, "nat-idle")
    assert acts and "mapping dropped silently" in acts[0].text, acts
    assert any(e.direction == "I" and "not forwarded" in e.text for e in path.transcript.entries)
    sock.close()


def test_lifetime_cuts_a_busy_connection(dovecot, open_path):
    path = open_path("lifetime:max=1,mode=fin", dovecot)
    sock = _imap(path)
    t0 = time.monotonic()
    n = 0
    fate = "data"
    while time.monotonic() - t0 < 3:
        n += 1
        try:
            sock.sendall(b"b%d NOOP\r\n" % n)
            recv_until(sock, b"b%d OK" % n, timeout=1)
        except (EOFError, ConnectionResetError, BrokenPipeError):
            fate = "closed"
            break
        time.sleep(0.1)
    age = time.monotonic() - t0
    assert fate == "closed", "a busy connection must be cut at its maximum age"
    assert 0.9 <= age < 1.6 and n >= 5, f"cut at {age:.3f} s after {n} NOOPs; expected ~1 s of busy traffic"
    assert any("maximum age of 1 s" in e.text for e in _actions(path, "lifetime"))


def test_kill_now_resets_every_connection(dovecot, open_path):
    path = open_path("kill", dovecot)
    a, b = _imap(path), _imap(path)
    assert path.kill("rst") == 2
    assert outcome(a, 2)[0] == "rst" and outcome(b, 2)[0] == "rst"
    assert len(_actions(path, "kill")) == 2


def test_kill_only_one_endpoint(dovecot, open_path):
    path = open_path("kill", dovecot)
    imap = _imap(path)
    sub = path.open("submission")
    recv_until(sub, b"220")
    assert path.kill("fin", endpoint="submission") == 1
    assert outcome(sub, 2)[0] == "eof"
    _noop(imap)


def test_blackhole_forwards_nothing_and_tells_nobody(tcp_peer, open_path):
    path = open_path("kill", peer_target(tcp_peer.port))
    sock = _imap(path)
    _sent_through(sock, tcp_peer, b"a1 NOOP\r\n")
    assert path.blackhole() == 1
    assert path.blackhole() == 0, "a connection already black-holed is not counted again"
    sock.sendall(b"a2 NOOP\r\n")
    fate, waited = outcome(sock, 1.0)
    assert fate == "timeout", f"client must see nothing (no FIN, no RST, no data), saw {fate} after {waited:.3f} s"
    assert tcp_peer.fate[0] == "open" and not tcp_peer.ended[0].is_set(), "server side must see no close either"
    assert b"a2 NOOP" not in tcp_peer.received[0], "data after the black hole must not be forwarded"
    acts = _actions(path, "blackhole")
    assert len(acts) == 1 and "dropped silently on demand" in acts[0].text, acts
    sock.close()


def test_blackhole_only_one_endpoint(dovecot, open_path):
    path = open_path("kill", dovecot)
    imap = _imap(path)
    sub = path.open("submission")
    recv_until(sub, b"220")
    assert path.blackhole(endpoint="submission") == 1
    sub.sendall(b"NOOP\r\n")
    assert outcome(sub, 1.0)[0] == "timeout", "the black-holed submission connection must stay silent"
    _noop(imap)  # the IMAP connection still carries data both ways
    sub.close()


def test_kill_after_lets_n_client_octets_pass_then_cuts(tcp_peer, open_path):
    path = open_path("kill", peer_target(tcp_peer.port))
    path.kill_after(10, side="client", how="rst")
    sock = _imap(path)
    sock.sendall(b"0123456789ABCDEFGHIJ")
    fate, _ = outcome(sock, 3)
    assert fate == "rst", f"client must see the cut as a reset, saw {fate}"
    tcp_peer.wait_connection()
    assert tcp_peer.ended[0].wait(3), "server side must be closed too"
    assert bytes(tcp_peer.received[0]) == b"0123456789", f"exactly 10 octets must pass, got {tcp_peer.received[0]!r}"
    assert any("10 octets from the client passed" in e.text for e in _actions(path, "kill"))


def test_both_legs_on_one_time_axis_with_credentials_redacted(dovecot, open_path):
    from conformance.protocols.imap import ImapConnection

    path = open_path("nat-idle:timeout=30", dovecot)
    host, port = path.address("imap")
    user = dovecot.accounts[0]
    with ImapConnection(host, port, transcript=path.transcript, leg=path.leg, timeout=5) as c:
        c.read_greeting()
        c.login(user.username, user.password)
        c.command("NOOP")
    entries = path.transcript.entries
    legs = {e.leg for e in entries}
    assert {"client-proxy", "proxy-server"} <= legs, legs
    greet_server = next(e for e in entries if e.leg == "proxy-server" and e.direction == "S")
    greet_client = next(e for e in entries if e.leg == "client-proxy" and e.direction == "S")
    assert greet_server.t <= greet_client.t, "the proxy sees the greeting before the client does"
    assert user.password not in path.transcript.text(), "the password must be redacted on both legs"
    assert any(e.leg == "proxy-server" and "LOGIN" in e.text for e in entries)


def test_imaps_passes_the_tcp_path_untouched(dovecot, open_path):
    import hashlib
    import socket

    from .conftest import insecure_tls

    path = open_path("kill", dovecot)
    via = insecure_tls().wrap_socket(path.open("imaps"), server_hostname="localhost")
    direct = insecure_tls().wrap_socket(socket.create_connection(("127.0.0.1", dovecot.endpoint("imaps").port)),
                                        server_hostname="localhost")
    assert hashlib.sha256(via.getpeercert(True)).digest() == hashlib.sha256(direct.getpeercert(True)).digest(), \
        "the TCP path must relay TLS, not terminate it"
    recv_until(via, b"* OK")
    via.close()
    direct.close()


def test_link_adds_latency_per_direction_and_limits_rate(tcp_peer, open_path):
    path = open_path("link:latency=100,rate=100", peer_target(tcp_peer.port))
    t0 = time.monotonic()
    sock = path.open("imap")
    recv_until(sock, b"* OK")
    greet = time.monotonic() - t0
    assert greet >= 0.1, f"greeting after {greet:.3f} s: a 100 ms one-way delay was expected"
    tcp_peer.wait_connection()
    t0 = time.monotonic()
    sock.sendall(b"x" * 50_000)  # 50 KB at 100 KB/s: ~0.5 s + 0.1 s delay
    deadline = time.monotonic() + 5
    while len(tcp_peer.received[0]) < 50_000 and time.monotonic() < deadline:
        time.sleep(0.005)
    took = time.monotonic() - t0
    assert len(tcp_peer.received[0]) == 50_000
    assert 0.5 <= took < 2.0, f"50 KB at 100 KB/s + 100 ms took {took:.3f} s, expected ~0.6 s"
    sock.close()
    assert tcp_peer.ended[0].wait(3), "the close is forwarded after the data"
