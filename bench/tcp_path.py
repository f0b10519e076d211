"""Benchmark (not a test): the TCP path against a direct connection to the embedded Dovecot, in one run.

Measures the median round trip of 1,000 IMAP NOOPs and the throughput of one 20 MB FETCH, direct and
through the path (scenario ``nat-idle`` with a window far beyond the run, so it never fires), prints both
ratios, and the start time of a path (ProxyHost, one mitmproxy master) per case.

    .venv/bin/python bench/tcp_path.py [--noops 1000] [--size-mb 20] [--scenario nat-idle:timeout=100000]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conformance.intermediaries.path import NetworkPath  # noqa: E402
from conformance.intermediaries.scenario import parse_scenario  # noqa: E402
from conformance.providers.dovecot import DovecotProvider  # noqa: E402
from conformance.transcript import Transcript  # noqa: E402


class Imap:
    """Just enough raw IMAP for timing: no transcript, no parsing beyond the tagged line."""

    def __init__(self, addr: tuple[str, int]) -> None:
        self.sock = socket.create_connection(addr, timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.n = 0
        self.until(b"\r\n")

    def until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError(f"closed while waiting for {marker!r}")
            self.buf += chunk
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def cmd(self, text: bytes) -> bytes:
        """Send a command, return every octet up to and including its tagged completion line."""
        self.n += 1
        tag = b"t%d " % self.n
        self.sock.sendall(tag + text + b"\r\n")
        data = bytearray(self.buf)
        self.buf = b""
        marker = b"\r\n" + tag
        searched = 0
        while True:
            if data.startswith(tag):
                at = 0
            else:
                at = data.find(marker, max(0, searched - len(marker)))
                at = at + 2 if at >= 0 else -1
            if at >= 0:
                end = data.find(b"\r\n", at)
                if end >= 0:
                    self.buf = bytes(data[end + 2:])
                    return bytes(data[:end + 2])
            searched = len(data)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("closed while waiting for a tagged reply")
            data += chunk


class BareRelay:
    """The floor for any Python relay: a plain asyncio TCP relay in a thread of this process, no mitmproxy."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        import asyncio
        import threading

        self.upstream = upstream
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def pipe(reader, writer):
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except OSError:
                pass
            finally:
                writer.close()

        async def handle(reader, writer):
            ur, uw = await asyncio.open_connection(*self.upstream)
            await asyncio.gather(pipe(reader, uw), pipe(ur, writer))

        async def main():
            self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self.address = self.server.sockets[0].getsockname()[:2]
            ready.set()
            await self.server.serve_forever()

        self.thread = threading.Thread(target=lambda: self.loop.run_until_complete(main()), daemon=True)
        self.thread.start()
        ready.wait(10)


def noop_rtts(addr, n: int) -> list[float]:
    c = Imap(addr)
    c.cmd(b"NOOP")  # warm up
    rtts = []
    for _ in range(n):
        t0 = time.perf_counter()
        c.cmd(b"NOOP")
        rtts.append(time.perf_counter() - t0)
    c.sock.close()
    return rtts


def fetch_rate(addr, user, size: int) -> float:
    c = Imap(addr)
    c.cmd(b"LOGIN " + user.username.encode() + b" " + user.password.encode())
    c.cmd(b"SELECT bench")
    t0 = time.perf_counter()
    data = c.cmd(b"FETCH 1 BODY.PEEK[]")
    took = time.perf_counter() - t0
    assert len(data) >= size, f"FETCH returned {len(data)} octets, expected {size}"
    c.sock.close()
    return len(data) / took


def append_message(addr, user, size: int) -> None:
    c = Imap(addr)
    c.cmd(b"LOGIN " + user.username.encode() + b" " + user.password.encode())
    c.cmd(b"DELETE bench")
    c.cmd(b"CREATE bench")
    line = b"x" * 76 + b"\r\n"
    body = b"From: bench@example.org\r\nSubject: 20 MB\r\n\r\n" + line * (size // len(line) + 1)
    reply = c.cmd(b"APPEND bench {%d+}\r\n" % len(body) + body)
    assert reply.rsplit(b"\r\n", 2)[-2].split(b" ", 2)[1] == b"OK", reply[-200:]
    c.sock.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--noops", type=int, default=1000)
    ap.add_argument("--size-mb", type=float, default=20)
    ap.add_argument("--scenario", default="nat-idle:timeout=100000")
    ap.add_argument("--starts", type=int, default=10, help="path starts to time")
    args = ap.parse_args()
    size = int(args.size_mb * 1_000_000)
    prov = DovecotProvider()
    target = prov.start()
    try:
        user = target.accounts[0]
        direct = (target.endpoint("imap").host, target.endpoint("imap").port)
        append_message(direct, user, size)
        transcript = Transcript()
        transcript.secrets |= target.secrets()
        path = NetworkPath(parse_scenario(args.scenario), target, transcript).start()
        try:
            via = path.address("imap")
            # interleave direct and path runs so load changes on the machine hit both
            rd, rp, fd, fp = [], [], [], []
            cpu_noop = cpu_fetch = 0.0
            for _ in range(2):
                rd += noop_rtts(direct, args.noops // 2)
                c0 = path.host.call(time.thread_time)
                rp += noop_rtts(via, args.noops // 2)
                c1 = path.host.call(time.thread_time)
                fd.append(fetch_rate(direct, user, size))
                fp.append(fetch_rate(via, user, size))
                c2 = path.host.call(time.thread_time)
                cpu_noop += c1 - c0
                cpu_fetch += c2 - c1
        finally:
            path.stop()
        bare = BareRelay(direct)
        rb = noop_rtts(bare.address, args.noops // 2)
        fb = fetch_rate(bare.address, user, size)
        starts = []
        for _ in range(args.starts):
            t0 = time.perf_counter()
            p = NetworkPath(parse_scenario("kill"), target, Transcript()).start()
            starts.append(time.perf_counter() - t0)
            p.stop()
    finally:
        prov.stop()
    md, mp = statistics.median(rd), statistics.median(rp)
    td, tp = max(fd), max(fp)
    print(f"scenario {parse_scenario(args.scenario)} against {target.version}, {len(rd)} NOOPs each way")
    print(f"NOOP round trip, median: direct {md * 1e3:.3f} ms, path {mp * 1e3:.3f} ms, ratio {mp / md:.2f} (aim <= 1.5)")
    print(f"FETCH {size / 1e6:g} MB, best of 2: direct {td / 1e6:.1f} MB/s, path {tp / 1e6:.1f} MB/s, "
          f"path/direct {tp / td:.0%} (aim >= 50%)")
    print(f"path start (NetworkPath.start, one mitmproxy master, 3 listeners), median of {len(starts)}: "
          f"{statistics.median(starts) * 1e3:.0f} ms, max {max(starts) * 1e3:.0f} ms")
    print(f"for scale, a bare asyncio relay in a thread of this process (no mitmproxy, no recording): NOOP "
          f"{statistics.median(rb) * 1e3:.3f} ms (ratio {statistics.median(rb) / md:.2f}), FETCH {fb / 1e6:.1f} MB/s "
          f"({fb / td:.0%} of direct)")
    print(f"proxy thread CPU: {cpu_noop / len(rp) * 1e3:.3f} ms per NOOP round trip (two relayed messages), "
          f"{cpu_fetch / (2 * size / 1e6) * 1e3:.1f} ms per MB fetched")
    print(f"transcript entries recorded on the path: {len(transcript.entries)} (+{transcript.dropped} over the cap)")
    print(f"load average while measuring: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
