"""link: a slow link (a mobile network): one-way delay and bandwidth, applied to each direction separately.

Each direction is a queue in front of mitmproxy's socket writer: an octet written at t leaves at
``max(t, link free) + size / rate + latency``, so data in flight overlaps (a pipe, not a stop-and-wait), the
order of data and of the closing FIN is kept, and a full queue slows mitmproxy's reading (backpressure).
Alone: ``mitmdump --mode reverse:tcp://127.0.0.1:143@10143 -s link.py --set link_latency=200 --set link_rate=50``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from mitmproxy import tcp

from conformance.intermediaries.addons.common import RawTcp, add_options, check_options, current_master, shared, spawn, value
from conformance.intermediaries.scenario import Emulator, Param

SLICE = 16384  # octets released at once at most, so a big read is spread over its transmission time
LATENCY = Param("latency", int, 100, 300, "one-way delay added in each direction", unit="ms", option="link_latency")
RATE = Param("rate", int, 0, 50, "bandwidth per direction, 0 = unlimited", unit="KB/s", option="link_rate")


class ShapedWriter:
    """Wraps an asyncio StreamWriter: write/write_eof/close are released on the link's schedule."""

    def __init__(self, writer: asyncio.StreamWriter, latency: float, rate: float) -> None:
        self.writer = writer
        self.latency = latency  # seconds, one way
        self.rate = rate  # octets per second, 0 = unlimited
        self.queue: deque[tuple[float, str, bytes]] = deque()  # (release time, op, data)
        self.queued = 0
        self.free_at = 0.0
        self.closing = False
        self.discarded = False
        self.wakeup = asyncio.Event()
        self.drained = asyncio.Event()
        self.drained.set()
        self.task = spawn(self._pump(), "link pump")

    # -- what mitmproxy's connection handler calls --------------------------------------------
    def write(self, data: bytes) -> None:
        now = time.monotonic()
        for i in range(0, len(data), SLICE):
            piece = data[i:i + SLICE]
            start = max(now, self.free_at)
            self.free_at = start + (len(piece) / self.rate if self.rate else 0.0)
            self._put(self.free_at + self.latency, "data", piece)

    def write_eof(self) -> None:
        self._put(max(time.monotonic(), self.free_at) + self.latency, "eof", b"")

    def close(self) -> None:
        if self.discarded or not self.queue:
            self.discarded = True
            self.task.cancel()
            self.writer.close()
            return
        self.closing = True
        self._put(max(time.monotonic(), self.free_at) + self.latency, "close", b"")

    def is_closing(self) -> bool:
        return self.closing or self.discarded or self.writer.is_closing()

    def can_write_eof(self) -> bool:
        return self.writer.can_write_eof()

    def get_extra_info(self, name: str, default=None):
        return self.writer.get_extra_info(name, default)

    async def drain(self) -> None:
        # backpressure: mitmproxy reads on only when the link has room (one bandwidth-delay product + 64 KiB)
        limit = 65536 + (self.rate * self.latency if self.rate else 0)
        if self.queued > limit:
            self.drained.clear()
            try:
                await asyncio.wait_for(self.drained.wait(), timeout=60)
            except asyncio.TimeoutError:
                pass
        await self.writer.drain()

    def discard(self) -> None:
        """The connection is cut: queued data is lost."""
        self.discarded = True
        self.queue.clear()
        self.queued = 0
        self.drained.set()
        self.task.cancel()

    # -- the pump ------------------------------------------------------------------------------
    def _put(self, when: float, op: str, data: bytes) -> None:
        self.queue.append((when, op, data))
        self.queued += len(data)
        self.wakeup.set()

    async def _pump(self) -> None:
        try:
            while True:
                if not self.queue:
                    self.wakeup.clear()
                    await self.wakeup.wait()
                    continue
                when, op, data = self.queue[0]
                delay = when - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                self.queue.popleft()
                self.queued -= len(data)
                if self.queued <= 65536 + (self.rate * self.latency if self.rate else 0):
                    self.drained.set()
                if self.writer.is_closing():
                    continue
                if op == "data":
                    self.writer.write(data)
                elif op == "eof":
                    if self.writer.can_write_eof():
                        self.writer.write_eof()
                else:
                    self.writer.close()
                    return
        except asyncio.CancelledError:
            pass
        except OSError:
            pass


class Link:
    OPTIONS = (LATENCY, RATE)

    def load(self, loader) -> None:
        add_options(loader, self.OPTIONS)

    def configure(self, updated) -> None:
        check_options(self.OPTIONS, updated)

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        self._shape(flow)

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        self._shape(flow)  # the upstream writer may appear only after tcp_start

    def _shape(self, flow: tcp.TCPFlow) -> None:
        ps = current_master().addons.get("proxyserver")
        handler = ps.connections.get(flow.client_conn.id) if ps else None
        if handler is None:
            return
        latency = value(LATENCY) / 1000.0
        rate = value(RATE) * 1000.0
        shaped = 0
        for io in handler.transports.values():
            writer = io.writer
            if writer is not None and not isinstance(writer, ShapedWriter) and isinstance(writer, asyncio.StreamWriter):
                io.writer = ShapedWriter(io.writer, latency, rate)
                shaped += 1
        if shaped:
            s = shared()
            s.record("link", f"{shaped} direction(s) shaped: {value(LATENCY):g} ms one-way delay, "
                             + (f"{value(RATE):g} KB/s" if rate else "unlimited rate"), s.label(flow))


SCENARIO = Emulator(
    name="link", path="tcp", addon=Link,
    summary="Slow mobile link: one-way delay and bandwidth per direction (a pipe: data in flight overlaps).")
addons = [RawTcp(), Link()]
