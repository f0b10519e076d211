"""JMAP over WebSocket on the captured connection against scripted peers: a 2^63-octet frame header, endless
fragments, message floods, garbage, stalls and resets all end within their deadline, as fails."""

from __future__ import annotations

import json
import socket
import struct
import time

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from conformance.errors import Flood, ProtocolViolation, ServerTimeout
from conformance.protocols.websocket import FLOOD_MESSAGES, MAX_FRAGMENTS, MAX_MESSAGE, JmapWebSocket, WsReader
from conformance.transcript import Transcript
from tests.fakes.scripted import PeerConn, ScriptedPeer


def upgraded(then):
    """A peer that completes the upgrade (wsproto, server side), then runs ``then(conn, ws)``."""
    def script(c: PeerConn) -> None:
        ws = WSConnection(ConnectionType.SERVER)
        head = c.recv_until(b"\r\n\r\n")
        if head is None:
            return
        ws.receive_data(head)
        req = next(e for e in ws.events() if isinstance(e, Request))
        c.send(ws.send(AcceptConnection(subprotocol=req.subprotocols[0] if req.subprotocols else None)))
        then(c, ws)
    return script


def frame(opcode: int, payload: bytes, fin: bool = True, length: int | None = None) -> bytes:
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        head = bytes([first, n])
    elif n < 1 << 16:
        head = bytes([first, 126]) + struct.pack("!H", n)
    else:
        head = bytes([first, 127]) + struct.pack("!Q", n)
    return head + payload


def open_ws(peer: ScriptedPeer, transcript: Transcript | None = None, handshake: bool = True) -> JmapWebSocket:
    sock = socket.create_connection(("127.0.0.1", peer.port))
    ws = JmapWebSocket(sock, f"127.0.0.1:{peer.port}", "/jmap/ws", "Basic eA==", transcript or Transcript(),
                       label="ws-under-test")
    if handshake:
        ws.handshake(timeout=2)
    return ws


def test_messages_fragments_and_pings_on_a_conformant_peer():
    def then(c: PeerConn, ws: WSConnection) -> None:
        c.send(ws.send(TextMessage(data='{"@type": "Response"', message_finished=False)))
        c.send(ws.send(TextMessage(data=', "n": 1}', message_finished=True)))
        c.send(frame(0x9, b"are you there"))
        c.stall()

    with ScriptedPeer(upgraded(then)) as peer:
        ws = open_ws(peer)
        assert ws.accepted is not None and ws.accepted.subprotocol == "jmap"
        msg = ws.recv_json(2, lambda o: isinstance(o, dict) and o.get("@type") == "Response")
        assert msg.json == {"@type": "Response", "n": 1} and msg.fragments == 2
        assert ws.recv(0.5) is None  # the ping was answered, not queued
    pong = [e for e in ws.transcript.entries if e.direction == "C" and e.text.startswith("[pong]")]
    assert pong and "are you there" in pong[0].text


def test_stall_before_the_upgrade_answer_is_a_timeout():
    with ScriptedPeer(lambda c: c.stall()) as peer:
        ws = open_ws(peer, handshake=False)
        t0 = time.monotonic()
        with pytest.raises(ServerTimeout, match="handshake"):
            ws.handshake(timeout=0.5)
        assert time.monotonic() - t0 < 2.0


def test_garbage_upgrade_answer_is_a_protocol_violation():
    with ScriptedPeer(lambda c: (c.recv_until(b"\r\n\r\n"), c.send(b"HTTP/1.1 101 OK\r\n\r\n"), c.stall())) as peer:
        ws = open_ws(peer, handshake=False)
        with pytest.raises(ProtocolViolation):
            ws.handshake(timeout=2)


def test_a_2_63_octet_frame_header_is_read_as_it_comes_and_stopped_at_the_bound():
    def then(c: PeerConn, ws: WSConnection) -> None:
        c.send(frame(0x1, b"", length=(1 << 63) - 1))
        c.flood(b"a" * 65536)

    with ScriptedPeer(upgraded(then)) as peer:
        ws = open_ws(peer)
        t0 = time.monotonic()
        with pytest.raises(Flood, match=f"{MAX_MESSAGE} octets"):
            ws.recv(20)
        assert time.monotonic() - t0 < 10


def test_invalid_frames_are_protocol_violations():
    """A reserved opcode, invalid UTF-8 in a text frame. (A 64-bit length with its top bit set passes wsproto; the
    message bound above stops it like any other endless frame.)"""
    for bad in (frame(0x3, b"reserved opcode"), frame(0x1, b"\xff\xfe not UTF-8")):
        with ScriptedPeer(upgraded(lambda c, ws, bad=bad: (c.send(bad), c.stall()))) as peer:
            with pytest.raises(ProtocolViolation, match="invalid WebSocket data"):
                open_ws(peer).recv(2)


def test_endless_fragments_and_message_floods_end_as_floods():
    def fragments(c: PeerConn, ws: WSConnection) -> None:
        c.send(frame(0x1, b"x", fin=False))
        c.flood(frame(0x0, b"x", fin=False) * 1000)

    def messages(c: PeerConn, ws: WSConnection) -> None:
        c.flood(frame(0x1, json.dumps({"@type": "Noise"}).encode()) * 1000)

    for then, match in ((fragments, f"{MAX_FRAGMENTS} frames"), (messages, f"{FLOOD_MESSAGES}|flood: 1")):
        with ScriptedPeer(upgraded(then)) as peer:
            ws = open_ws(peer, handshake=False)
            t0 = time.monotonic()
            with pytest.raises(Flood, match=match):  # the flood may start in the segment that accepts the upgrade
                ws.handshake(timeout=2)
                ws.recv_json(20, lambda o: False)
            assert time.monotonic() - t0 < 10
            assert len(ws.skipped) <= 1000


def test_a_reset_ends_the_connection_as_closed():
    with ScriptedPeer(upgraded(lambda c, ws: (c.stopping.wait(0.1), c.reset()))) as peer:
        ws = open_ws(peer)
        t0 = time.monotonic()
        assert ws.recv(3) is None or ws.closed
        assert ws.closed and time.monotonic() - t0 < 3


def test_the_reader_alone_with_plain_bytes():
    """WsReader is sans-IO: an accept and a text frame in one feed."""
    server = WSConnection(ConnectionType.SERVER)
    reader = WsReader()
    server.receive_data(reader.request("x", "/", ["jmap"], []))
    req = next(e for e in server.events() if isinstance(e, Request))
    data = server.send(AcceptConnection(subprotocol=req.subprotocols[0])) + frame(0x1, b'{"a": 1}')
    (msg,) = reader.feed(data)
    assert reader.accepted is not None and msg.kind == "text" and msg.json == {"a": 1}
