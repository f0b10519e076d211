"""What every TCP-path addon shares: connection labels, activity clocks and the ways to cut a connection.

mitmproxy 11's ``flow.kill()`` does nothing for raw TCP flows, so a cut cancels the connection handler the
way mitmproxy's own idle watchdog does; an RST cut first sets SO_LINGER 0 on both sockets.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from typing import Callable

from mitmproxy import ctx, tcp
from mitmproxy.proxy import layers
from mitmproxy.proxy.mode_specs import ReverseMode

log = logging.getLogger("lemonade.intermediary")

Recorder = Callable[[str, str, str], None]  # (who, text, connection label)


def default_record(who: str, text: str, conn: str = "") -> None:
    log.warning("%s %s: %s", conn, who, text)


class Shared:
    """Per-master state all TCP addons read: labels and activity per client connection id."""

    def __init__(self) -> None:
        self.labels: dict[str, str] = {}
        self.started: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.blackholed: dict[str, float] = {}
        self.bytes: dict[str, list[int]] = {}  # [from client, from server]
        self.record: Recorder = default_record
        self.count = 0

    def label(self, flow: tcp.TCPFlow) -> str:
        cid = flow.client_conn.id
        if cid not in self.labels:
            self.count += 1
            port = flow.server_conn.address[1] if flow.server_conn.address else "?"
            self.labels[cid] = f"conn#{self.count}->{port}"
        return self.labels[cid]

    def open(self, flow: tcp.TCPFlow) -> None:
        cid = flow.client_conn.id
        if cid in self.started:
            return
        now = time.monotonic()
        self.started[cid] = now
        self.last[cid] = now
        self.bytes[cid] = [0, 0]
        self.label(flow)

    def touch(self, flow: tcp.TCPFlow, n: int, from_client: bool) -> None:
        cid = flow.client_conn.id
        self.last[cid] = time.monotonic()
        if cid in self.bytes:
            self.bytes[cid][0 if from_client else 1] += n

    def forget(self, flow: tcp.TCPFlow) -> None:
        for d in (self.started, self.last, self.bytes):
            d.pop(flow.client_conn.id, None)

    def live(self, flow: tcp.TCPFlow) -> bool:
        return flow.client_conn.id in self.started and flow.live


SHARED_ATTR = "_lemonade_shared"


def shared() -> Shared:
    """The Shared state of the current master (created on first use, so addons work alone too)."""
    master = ctx.master
    s = getattr(master, SHARED_ATTR, None)
    if s is None:
        s = Shared()
        setattr(master, SHARED_ATTR, s)
    return s


def cut(flow: tcp.TCPFlow, how: str, reason: str) -> bool:
    """Close both sides of a live TCP flow now: how = 'fin' (orderly close) or 'rst' (reset)."""
    ps = ctx.master.addons.get("proxyserver")
    handler = ps.connections.get(flow.client_conn.id) if ps else None
    if handler is None:
        return False
    if how == "rst":
        for io in list(handler.transports.values()):
            sock = io.writer.get_extra_info("socket") if io.writer is not None else None
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
    client_io = handler.transports.get(handler.client)
    if client_io is None or client_io.handler is None:
        return False
    client_io.handler.cancel(reason)
    shared().forget(flow)
    return True


def blackhole(flow: tcp.TCPFlow) -> None:
    """From now on nothing is forwarded either way and nobody is told: a NAT that forgot the mapping."""
    shared().blackholed[flow.client_conn.id] = time.monotonic()


class RawTcp:
    """Makes every reverse:tcp connection a plain TCP relay (no TLS interception), with tcp_* hooks on."""

    def next_layer(self, nextlayer) -> None:
        mode = nextlayer.context.client.proxy_mode
        if isinstance(mode, ReverseMode) and mode.scheme == "tcp" and nextlayer.layer is None:
            nextlayer.layer = layers.TCPLayer(nextlayer.context)

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        shared().open(flow)

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        m = flow.messages[-1]
        shared().touch(flow, len(m.content), m.from_client)

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        shared().forget(flow)

    def tcp_error(self, flow: tcp.TCPFlow) -> None:
        shared().forget(flow)


class Blackhole:
    """Swallows every message of a black-holed connection. Runs after the behaviour addons."""

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        if flow.client_conn.id in shared().blackholed:
            flow.messages[-1].content = b""
