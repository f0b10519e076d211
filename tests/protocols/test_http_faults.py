"""HTTP (the JMAP API client) and EventSource on the captured connection against scripted peers.

The server's faults (stall, trickle, reset, early close, garbage, huge heads, endless bodies, bad TLS) are fails
within their deadline; the suite's own proxy or listener failing is an error; a 403 to CONNECT is ``Blocked``.
"""

from __future__ import annotations

import time

import pytest

from conformance.errors import (
    Blocked,
    ConformanceFailure,
    Flood,
    HarnessError,
    ProtocolViolation,
    ServerClosed,
    ServerTimeout,
    TargetUnreachable,
    TlsHandshakeFailed,
)
from conformance.protocols.eventsource import FLOOD_EVENTS, EventStream
from conformance.protocols.http import HttpClient, JsonInvalid
from conformance.protocols.jmap import JmapClient
from conformance.transcript import Transcript
from tests.fakes.hostile import SSE_HEAD, after_head
from tests.fakes.scripted import PeerConn, ScriptedPeer, free_port, tls_server_context

PASSWORD = "carol-http-secret"


def respond(head: bytes, body: bytes = b""):
    """A peer that answers every request on the connection with ``head`` + ``body``."""
    def script(c: PeerConn) -> None:
        while c.recv_until(b"\r\n\r\n") is not None:
            if not c.send(head + body):
                return
    return script


def client(timeout: float = 1.0, **kw) -> HttpClient:
    return HttpClient(Transcript(), label="http-under-test", timeout=timeout, **kw)


def test_keep_alive_and_the_response_interface():
    body = b'{"ok": true}'
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    with ScriptedPeer(respond(head, body)) as peer:
        http = client()
        for _ in range(3):
            r = http.request("GET", f"http://127.0.0.1:{peer.port}/x")
            assert r.status_code == 200 and r.json() == {"ok": True}
            assert r.headers.get("content-TYPE") == "application/json"
        assert len(peer.conns) == 1, "one kept-alive connection for three requests"


def test_a_keep_alive_connection_the_server_closed_while_idle_is_reopened_once():
    def script(c: PeerConn) -> None:
        c.recv_until(b"\r\n\r\n")
        c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")  # then closes (script ends)

    with ScriptedPeer(script) as peer:
        http = client()
        assert http.request("GET", f"http://127.0.0.1:{peer.port}/").content == b"ok"
        time.sleep(0.1)  # the server's close reaches the client side (nothing to await on the client)
        assert http.request("GET", f"http://127.0.0.1:{peer.port}/").content == b"ok"
        assert len(peer.conns) == 2


def test_stall_trickle_and_endless_body_end_within_the_deadline():
    stall = after_head(lambda c: c.stall())
    trickle = after_head(lambda c: (c.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
                                       c.trickle(b"1\r\nx\r\n", 0.05)))
    for script in (stall, trickle):
        with ScriptedPeer(script) as peer:
            t0 = time.monotonic()
            with pytest.raises(ServerTimeout):
                client(timeout=1.0).request("GET", f"http://127.0.0.1:{peer.port}/")
            assert time.monotonic() - t0 < 3.0
    endless = after_head(lambda c: (c.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
                                       c.flood(b"ffff\r\n" + b"x" * 0xFFFF + b"\r\n")))
    with ScriptedPeer(endless) as peer:
        with pytest.raises(Flood, match="body past"):
            client(timeout=30).request("GET", f"http://127.0.0.1:{peer.port}/")


def test_huge_head_garbage_reset_and_early_close():
    cases = [
        (after_head(lambda c: c.flood(b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"y" * 60000 + b"\r\n")),
         ProtocolViolation),
        (after_head(lambda c: c.send(b"\x16\x03\x01 not http at all\r\n\r\n")), ProtocolViolation),
        (after_head(lambda c: c.reset()), ServerClosed),
        (after_head(lambda c: c.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")), ServerClosed),
    ]
    for script, error in cases:
        with ScriptedPeer(script) as peer:
            with pytest.raises(error):
                client(timeout=5).request("GET", f"http://127.0.0.1:{peer.port}/")


def test_tls_handshake_failure_and_stall_are_fails():
    def garbage(c: PeerConn) -> None:
        c.recv_until(b"\x01", timeout=5)
        c.send(b"HTTP/1.1 400 Bad Request\r\n\r\n" * 5)

    for script in (garbage, lambda c: c.stall()):
        with ScriptedPeer(script) as peer:
            t0 = time.monotonic()
            with pytest.raises(TlsHandshakeFailed):
                client(timeout=0.7).request("GET", f"https://127.0.0.1:{peer.port}/")
            assert time.monotonic() - t0 < 2.5


def test_refusals_own_listener_own_proxy_and_target():
    port = free_port()
    with pytest.raises(TargetUnreachable):
        client().request("GET", f"http://127.0.0.1:{port}/")
    with pytest.raises(HarnessError) as own:
        client(via="intermediary listener (scenario buffering)").request("GET", f"http://127.0.0.1:{port}/")
    assert not isinstance(own.value, (TargetUnreachable, ConformanceFailure))
    with pytest.raises(HarnessError) as proxy:
        client(proxy=f"http://127.0.0.1:{port}").request("GET", "https://127.0.0.1:1/")
    assert "HTTP proxy" in str(proxy.value) and not isinstance(proxy.value, TargetUnreachable)


def test_the_suite_s_own_proxy_refusing_or_breaking_connect_is_never_a_fail():
    with ScriptedPeer(respond(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")) as proxy:
        with pytest.raises(Blocked):
            client(proxy=f"http://127.0.0.1:{proxy.port}").request("GET", "https://127.0.0.1:1/")
    with ScriptedPeer(after_head(lambda c: c.send(b"garbage\r\n\r\n"))) as proxy:
        with pytest.raises(HarnessError) as e:
            client(proxy=f"http://127.0.0.1:{proxy.port}").request("GET", "https://127.0.0.1:1/")
    assert not isinstance(e.value, ConformanceFailure)
    with ScriptedPeer(after_head(lambda c: c.stall())) as proxy:
        with pytest.raises(HarnessError) as e:
            client(timeout=0.5, proxy=f"http://127.0.0.1:{proxy.port}").request("GET", "https://127.0.0.1:1/")
    assert not isinstance(e.value, ConformanceFailure)


def test_a_connection_reset_through_the_proxy_tunnel_is_the_far_side_s(tmp_path):
    """Once CONNECT answered 200, what happens in the tunnel comes from the target: a fail."""
    def tunnel(c: PeerConn) -> None:
        c.recv_until(b"\r\n\r\n")
        c.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
        c.recv_until(b"\x01", timeout=5)
        c.reset()

    with ScriptedPeer(tunnel) as proxy:
        with pytest.raises(TlsHandshakeFailed):
            client(proxy=f"http://127.0.0.1:{proxy.port}").request("GET", "https://127.0.0.1:1/")


def test_jmap_json_that_is_not_json_is_a_protocol_violation():
    deep = b"[" * 100000 + b"]" * 100000
    for body in (b"not json", b'{"a": NaN}', deep, b"\xff\xfe"):
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
        with ScriptedPeer(respond(head, body)) as peer:
            jmap = JmapClient(f"http://127.0.0.1:{peer.port}", "carol", PASSWORD, Transcript())
            with pytest.raises(JsonInvalid):
                jmap.discover()


def test_basic_credentials_never_reach_transcript_or_messages():
    transcript = Transcript()
    with ScriptedPeer(after_head(lambda c: c.stall())) as peer:
        jmap = JmapClient(f"http://127.0.0.1:{peer.port}", "carol", PASSWORD, transcript, timeout=0.5)
        with pytest.raises(ServerTimeout) as e:
            jmap.discover()
    import base64

    basic = base64.b64encode(f"carol:{PASSWORD}".encode()).decode()
    for text in (str(e.value), transcript.text()):
        assert PASSWORD not in text and basic not in text


# -- EventSource ----------------------------------------------------------------------------------
def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def stream(peer: ScriptedPeer, transcript: Transcript | None = None) -> EventStream:
    import socket

    sock = socket.create_connection(("127.0.0.1", peer.port))
    return EventStream(sock, f"127.0.0.1:{peer.port}", "/es", "Basic eA==", transcript or Transcript(), label="es")


def test_event_stream_reads_events_and_a_reset_mid_body_is_server_closed():
    def script(c: PeerConn) -> None:
        c.recv_until(b"\r\n\r\n")
        c.send(SSE_HEAD + chunk(b"event: state\ndata: {}\n\n") + chunk(b": ping\n\n"))
        c.stopping.wait(0.2)
        c.reset()

    with ScriptedPeer(script) as peer:
        es = stream(peer)
        es.read_head(2)
        kinds = []
        with pytest.raises(ServerClosed, match="before the response was complete"):  # a chunked body cut short
            for item in es.events(time.monotonic() + 3):
                kinds.append(item.kind)
    assert kinds == ["event", "comment"]
    assert es.unclean_close and "reset" in es.unclean_close


def test_event_stream_stall_before_the_head_is_a_timeout():
    with ScriptedPeer(after_head(lambda c: c.stall())) as peer:
        with pytest.raises(ServerTimeout, match="head"):
            stream(peer).read_head(0.5)


def test_event_stream_floods_end_early_as_floods():
    no_boundary = after_head(lambda c: (c.send(SSE_HEAD), c.flood(chunk(b"data: more and more\n" * 500))))
    no_line_end = after_head(lambda c: (c.send(SSE_HEAD), c.flood(chunk(b"data: " + b"z" * 8000))))
    events = after_head(lambda c: (c.send(SSE_HEAD), c.flood(chunk(b": ping\n\n" * 500))))
    for script, match in ((no_boundary, "no blank line"), (no_line_end, "without an end of line"),
                          (events, f"{FLOOD_EVENTS}|flood: 1")):
        with ScriptedPeer(script) as peer:
            es = stream(peer)
            es.read_head(2)
            t0 = time.monotonic()
            with pytest.raises(Flood, match=match):
                for _ in es.events(time.monotonic() + 20):
                    pass
            assert time.monotonic() - t0 < 10


def test_event_stream_garbage_head_is_a_protocol_violation():
    with ScriptedPeer(after_head(lambda c: c.send(b"SSH-2.0-OpenSSH\r\n\r\n"))) as peer:
        with pytest.raises(ProtocolViolation):
            stream(peer).read_head(2)


def test_event_stream_over_tls_with_the_stream_connection(tmp_path):
    import socket

    from conformance.protocols.eventsource import stream_connection

    ctx = tls_server_context(tmp_path)

    def script(c: PeerConn) -> None:
        if c.start_tls(ctx) and c.recv_until(b"\r\n\r\n") is not None:
            c.send(SSE_HEAD + chunk(b"data: hi\n\n") + b"0\r\n\r\n")

    with ScriptedPeer(script) as peer:
        conn = stream_connection(socket.create_connection(("127.0.0.1", peer.port)), "https", "localhost", None,
                                 transcript=Transcript(), label="es-tls")
        es = EventStream(conn, "localhost", "/es", None, conn.transcript)
        assert es.read_head(2).status_code == 200
        assert [x.kind for x in es.events(time.monotonic() + 3)] == ["event", "eof"]
