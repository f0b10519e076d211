"""IMAP on the captured connection against scripted peers: each fault gets the verdict the rule gives it, in time.

Stall, reset, early close, garbage, a failed or stalled TLS handshake and floods are the server's (fail, a
``ConformanceFailure``); a refused connect to the suite's own listener is the harness's (``HarnessError``); a
refused connect to the target is ``TargetUnreachable``. Deadlines are short so the module stays quick.
"""

from __future__ import annotations

import time

import pytest

from conformance.errors import (
    ConformanceFailure,
    Flood,
    HarnessError,
    ProtocolViolation,
    ServerClosed,
    ServerTimeout,
    TargetUnreachable,
    TlsHandshakeFailed,
)
from conformance.protocols.imap import FLOOD_RESPONSES, ImapConnection
from conformance.transcript import CASE_BYTES, Transcript
from tests.fakes.scripted import PeerConn, ScriptedPeer, free_port

PASSWORD = "alice-secret-pw"


def connect(peer: ScriptedPeer, timeout: float = 1.0, transcript: Transcript | None = None) -> ImapConnection:
    return ImapConnection("127.0.0.1", peer.port, transcript=transcript or Transcript(), timeout=timeout,
                          label="imap-under-test")


def greet_then(then):
    def script(c: PeerConn) -> None:
        c.send(b"* OK scripted\r\n")
        then(c)
    return script


def within(seconds: float):
    """Asserts the block ended within ``seconds`` (deadlines are honoured, with scheduling slack)."""
    class Timer:
        def __enter__(self):
            self.t0 = time.monotonic()
            return self

        def __exit__(self, *exc):
            self.elapsed = time.monotonic() - self.t0
            assert self.elapsed < seconds, f"took {self.elapsed:.2f} s, the bound was {seconds} s"
            return False
    return Timer()


def test_stall_before_greeting_is_a_timeout_within_the_deadline():
    with ScriptedPeer(lambda c: c.stall()) as peer, within(3.0):
        conn = connect(peer, timeout=0.5)
        with pytest.raises(ServerTimeout, match="sent nothing as greeting"):
            conn.read_greeting()


def test_stall_after_login_names_the_command_without_the_password():
    def script(c: PeerConn) -> None:
        c.send(b"* OK hi\r\n")
        c.recv_until()
        c.stall()

    transcript = Transcript()
    with ScriptedPeer(script) as peer, within(3.0):
        conn = connect(peer, timeout=0.5, transcript=transcript)
        conn.read_greeting()
        with pytest.raises(ServerTimeout) as e:
            conn.login("alice", PASSWORD)
    assert "LOGIN" in str(e.value) and "<redacted>" in str(e.value)
    assert PASSWORD not in str(e.value) and PASSWORD not in transcript.text()


def test_trickle_of_one_octet_at_a_time_ends_at_the_command_deadline():
    with ScriptedPeer(greet_then(lambda c: (c.recv_until(), c.trickle(b"* OK slow line ", 0.05)))) as peer, \
            within(4.0):
        conn = connect(peer, timeout=1.0)
        conn.read_greeting()
        with pytest.raises(ServerTimeout, match="no complete response .* pending; the last octet came"):
            conn.command("NOOP")


def test_reset_and_early_close_are_server_closed():
    with ScriptedPeer(greet_then(lambda c: (c.recv_until(), c.reset()))) as peer:
        conn = connect(peer)
        conn.read_greeting()
        with pytest.raises(ServerClosed) as e:
            conn.command("NOOP")
    assert e.value.how in ("reset", "eof")  # Linux reports the RST as a reset; a race may show the FIN first

    cut = greet_then(lambda c: (c.recv_until(), c.send(b"* 1 FETCH (BODY[] {100}\r\nonly a part")))
    with ScriptedPeer(cut) as peer:
        conn = connect(peer)
        conn.read_greeting()
        with pytest.raises(ServerClosed, match="closed the connection"):
            conn.command("FETCH 1 BODY[]")


def test_garbage_is_a_protocol_violation():
    with ScriptedPeer(lambda c: c.send(b"\x00\xffHTTP/1.1 400 Bad Request\r\n\r\n")) as peer:
        with pytest.raises(ProtocolViolation, match="greeting"):
            connect(peer).read_greeting()
    with ScriptedPeer(lambda c: c.flood(b"\x17" * 65536)) as peer, within(5.0):
        with pytest.raises(ProtocolViolation, match="without CRLF"):
            connect(peer, timeout=5).read_greeting()
    with ScriptedPeer(greet_then(lambda c: (c.recv_until(), c.send(b"* 1 FETCH (BODY[] {100000000000}\r\n"),
                                            c.stall()))) as peer:
        conn = connect(peer)
        conn.read_greeting()
        with pytest.raises(ProtocolViolation, match="literal"):
            conn.command("FETCH 1 BODY[]")


def test_tls_handshake_failure_and_stall_after_starttls_are_fails(tmp_path):
    def garbage(c: PeerConn) -> None:
        c.send(b"* OK hi\r\n")
        tag = c.recv_until().split(b" ")[0]
        c.send(tag + b" OK begin TLS\r\n")
        c.recv_until(b"\x01", timeout=5)  # the ClientHello's handshake type
        c.send(b"this is not TLS at all\r\n" * 10)

    def stall(c: PeerConn) -> None:
        c.send(b"* OK hi\r\n")
        tag = c.recv_until().split(b" ")[0]
        c.send(tag + b" OK begin TLS\r\n")
        c.stall()

    for script, match in ((garbage, "handshake failed"), (stall, "stalled")):
        with ScriptedPeer(script) as peer, within(3.0):
            conn = connect(peer, timeout=0.7)
            conn.read_greeting()
            with pytest.raises(TlsHandshakeFailed, match=match):
                conn.starttls()


def test_implicit_tls_handshake_against_a_plain_server_is_a_fail():
    plain = lambda c: (c.recv_until(b"\x01", timeout=5), c.send(b"* OK plain text, no TLS\r\n" * 20))  # noqa: E731
    with ScriptedPeer(plain) as peer:
        with pytest.raises(TlsHandshakeFailed):
            ImapConnection("127.0.0.1", peer.port, transcript=Transcript(), tls="implicit", timeout=1.0)


def test_refused_connect_is_the_harness_s_at_its_own_listener_and_unreachable_at_the_target():
    port = free_port()
    with pytest.raises(HarnessError, match="suite's own intermediary") as own:
        ImapConnection("127.0.0.1", port, transcript=Transcript(), via="intermediary listener (scenario kill)")
    assert not isinstance(own.value, TargetUnreachable) and not isinstance(own.value, ConformanceFailure)
    with pytest.raises(TargetUnreachable):
        ImapConnection("127.0.0.1", port, transcript=Transcript())


def test_flood_of_untagged_lines_is_a_flood_long_before_the_deadline_with_bounded_evidence():
    transcript = Transcript()
    with ScriptedPeer(greet_then(lambda c: (c.recv_until(), c.flood(b"* OK flood flood flood\r\n" * 2000)))) as peer, \
            within(8.0) as timer:
        conn = connect(peer, timeout=30, transcript=transcript)
        conn.read_greeting()
        with pytest.raises(Flood, match=f"flood: {FLOOD_RESPONSES}|flood: 5"):
            conn.command("NOOP")
    assert timer.elapsed < 8.0
    assert transcript.retained_bytes <= CASE_BYTES and transcript.dropped > 1000
    assert "left out here" in transcript.text()


def test_idle_without_continuation_ends_at_its_deadline():
    """Issue 20 section 0: an untagged response and never '+' used to spin a core forever."""
    def script(c: PeerConn) -> None:
        c.send(b"* OK hi\r\n")
        c.recv_until()
        c.send(b"* 3 EXISTS\r\n")
        c.stall()

    with ScriptedPeer(script) as peer, within(3.0):
        conn = connect(peer, timeout=0.8)
        conn.read_greeting()
        with pytest.raises(ServerTimeout, match="IDLE"):
            conn.idle()
    assert [r.first_line for r in conn.queue] == ["* 3 EXISTS"], "the untagged response stays for the caller"


def test_idle_with_untagged_and_continuation_in_separate_segments_works():
    def script(c: PeerConn) -> None:
        c.send(b"* OK hi\r\n")
        tag = c.recv_until().split(b" ")[0]
        c.send(b"* 4 EXISTS\r\n")
        c.stopping.wait(0.3)
        c.send(b"+ idling\r\n")
        c.stopping.wait(0.2)
        c.send(b"* 5 EXISTS\r\n")
        c.recv_until()  # DONE
        c.send(tag + b" OK IDLE done\r\n")
        c.stall()

    with ScriptedPeer(script) as peer:
        conn = connect(peer, timeout=2.0)
        conn.read_greeting()
        tag = conn.idle()
        assert conn.poll(1.0).first_line == "* 4 EXISTS"
        assert conn.poll(1.0).first_line == "* 5 EXISTS"
        assert conn.done(tag).ok


def test_idle_flood_before_the_continuation_is_a_flood():
    with ScriptedPeer(greet_then(lambda c: (c.recv_until(), c.flood(b"* 1 EXISTS\r\n" * 4000)))) as peer, within(8.0):
        conn = connect(peer, timeout=30)
        conn.read_greeting()
        with pytest.raises(Flood):
            conn.idle()
