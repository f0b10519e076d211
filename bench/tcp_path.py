"""Benchmark (not a test): the TCP path against a direct connection and a bare relay, in one run.

Measures the median round trip of IMAP NOOPs and the throughput of a 20 MB FETCH to the embedded Dovecot:
direct; through a bare asyncio relay in a thread of this process (the floor of any Python relay); through the
path (scenario ``nat-idle`` with a window far beyond the run, so it never fires), recording every message as
checks do; and through the same path with recording off (``path.record_messages(False)``, as ``lemonade load``
runs it). Variants are interleaved in rounds; prints the ratios, the relay thread's CPU per round trip and per
MB (with the CPU of rendering what the path recorded, done when the transcript is read), and the start time of a path.

    .venv/bin/python bench/tcp_path.py [--noops 1000] [--size-mb 20] [--rounds 3] [--scenario nat-idle:timeout=100000]
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
            try:
                await self.server.serve_forever()
            except asyncio.CancelledError:  # stop(): closing the server ends serve_forever this way
                pass

        self.thread = threading.Thread(target=lambda: self.loop.run_until_complete(main()), daemon=True)
        self.thread.start()
        ready.wait(10)

    def thread_cpu(self) -> float:
        """CPU seconds of the relay's thread so far."""
        import asyncio

        return asyncio.run_coroutine_threadsafe(self._cpu(), self.loop).result(5)

    async def _cpu(self) -> float:
        return time.thread_time()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)


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


def rendered(transcript) -> float:
    """CPU seconds this thread spends making the text of the wire messages the path recorded but has not
    rendered yet (the path renders when the transcript is read, or in batches): part of the path's cost."""
    c = time.thread_time()
    if hasattr(transcript, "flush"):
        transcript.flush()
    return time.thread_time() - c


def measure(addr, user, size: int, noops: int, cpu=None, transcript=None) -> tuple[list[float], float, float, float]:
    """(NOOP round trips, FETCH rate, relay CPU s per round trip, relay CPU s per MB) through ``addr``; the CPU
    includes rendering what the path recorded during each part (``transcript``)."""
    flush = (lambda: rendered(transcript)) if transcript is not None else (lambda: 0.0)
    flush()
    c0 = cpu() if cpu else 0.0
    rtts = noop_rtts(addr, noops)
    c1 = cpu() if cpu else 0.0
    r1 = flush()
    rate = fetch_rate(addr, user, size)
    c2 = cpu() if cpu else 0.0
    r2 = flush()
    return rtts, rate, (c1 - c0 + r1) / noops, (c2 - c1 + r2) / (size / 1e6)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--noops", type=int, default=1000)
    ap.add_argument("--size-mb", type=float, default=20)
    ap.add_argument("--scenario", default="nat-idle:timeout=100000")
    ap.add_argument("--starts", type=int, default=10, help="path starts to time")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every variant")
    args = ap.parse_args()
    size = int(args.size_mb * 1_000_000)
    prov = DovecotProvider()
    target = prov.start()
    variants = ["direct", "bare relay", "path", "path, recording off"]
    if not hasattr(NetworkPath, "record_messages"):  # an older tree (before/after comparisons)
        variants.remove("path, recording off")
    rtts: dict[str, list[float]] = {v: [] for v in variants}
    rounds: list[dict[str, tuple[float, float]]] = []  # per round: variant -> (median NOOP, FETCH rate)
    rates: dict[str, list[float]] = {v: [] for v in variants}
    cpu_rtt: dict[str, list[float]] = {v: [] for v in variants}
    cpu_mb: dict[str, list[float]] = {v: [] for v in variants}
    try:
        user = target.accounts[0]
        direct = (target.endpoint("imap").host, target.endpoint("imap").port)
        append_message(direct, user, size)
        transcript = Transcript()
        transcript.secrets |= target.secrets()
        # recording on formats and adds every message all along; the transcript keeps a bounded head and ring
        path = NetworkPath(parse_scenario(args.scenario), target, transcript).start()
        bare = BareRelay(direct)
        try:
            via = path.address("imap")
            proxy_cpu = path.relay_cpu if hasattr(path, "relay_cpu") else (lambda: path.host.call(time.thread_time))
            bare_cpu = bare.thread_cpu
            # interleave the variants so a changing machine load hits them all alike
            for _ in range(args.rounds):
                rounds.append({})
                for v in variants:
                    if v.startswith("path") and "path, recording off" in variants:
                        path.record_messages(v == "path")
                    addr, cpu = {"direct": (direct, None), "bare relay": (bare.address, bare_cpu),
                                 "path": (via, proxy_cpu), "path, recording off": (via, proxy_cpu)}[v]
                    r, rate, c_rtt, c_mb = measure(addr, user, size, args.noops // args.rounds, cpu,
                                                   transcript if v.startswith("path") else None)
                    rtts[v] += r
                    rates[v].append(rate)
                    rounds[-1][v] = (statistics.median(r), rate)
                    cpu_rtt[v].append(c_rtt)
                    cpu_mb[v].append(c_mb)
        finally:
            path.stop()
            bare.stop()
        starts = []
        for _ in range(args.starts):
            t0 = time.perf_counter()
            p = NetworkPath(parse_scenario("kill"), target, Transcript()).start()
            starts.append(time.perf_counter() - t0)
            p.stop()
    finally:
        prov.stop()
    md = statistics.median(rtts["direct"])
    td = max(rates["direct"])
    mb, tb = statistics.median(rtts["bare relay"]), max(rates["bare relay"])
    print(f"scenario {parse_scenario(args.scenario)} against {target.version}, {len(rtts['direct'])} NOOPs and "
          f"{args.rounds} FETCHes of {size / 1e6:g} MB per variant, interleaved")
    print(f"{'variant':>20} {'NOOP ms':>8} {'/direct':>8} {'/bare':>6} {'FETCH MB/s':>11} {'of direct':>10} "
          f"{'bare/this':>10} {'CPU ms/RTT':>11} {'CPU ms/MB':>10}")
    summary = {}
    for v in variants:
        m, t = statistics.median(rtts[v]), max(rates[v])
        c1 = statistics.median(cpu_rtt[v]) * 1e3 if v != "direct" else 0.0
        c2 = statistics.median(cpu_mb[v]) * 1e3 if v != "direct" else 0.0
        summary[v] = {"noop_ms": round(m * 1e3, 4), "noop_over_direct": round(m / md, 2),
                      "noop_over_bare": round(m / mb, 2), "fetch_mb_s": round(t / 1e6, 1),
                      "fetch_of_direct": round(t / td, 2), "bare_fetch_over_this": round(tb / t, 2),
                      "cpu_ms_per_rtt": round(c1, 3), "cpu_ms_per_mb": round(c2, 2)}
        print(f"{v:>20} {m * 1e3:8.3f} {m / md:8.2f} {m / mb:6.2f} {t / 1e6:11.1f} {t / td:10.0%} {tb / t:10.2f} "
              f"{c1:11.3f} {c2:10.2f}")
    print("aims: the path within 1.25x of the bare relay on both figures (NOOP /bare <= 1.25, bare/this <= 1.25)")
    # the same ratios per round (variants measured one after the other share the machine's load), median of rounds
    for v in variants[2:]:
        noop = statistics.median(r[v][0] / r["bare relay"][0] for r in rounds)
        fetch = statistics.median(r["bare relay"][1] / r[v][1] for r in rounds)
        summary[v]["round_noop_over_bare"], summary[v]["round_bare_fetch_over_this"] = round(noop, 2), round(fetch, 2)
        print(f"{v:>20}: per round, median of {len(rounds)}: NOOP /bare {noop:.2f}, bare/this FETCH {fetch:.2f}")
    print(f"path start (NetworkPath.start, one mitmproxy master, 3 listeners), median of {len(starts)}: "
          f"{statistics.median(starts) * 1e3:.0f} ms, max {max(starts) * 1e3:.0f} ms")
    print(f"transcript entries recorded on the path: {len(transcript.entries)} kept, {transcript.dropped} left out "
          f"by its bounds")
    load = os.getloadavg()
    print(f"load average while measuring: {', '.join(f'{x:.1f}' for x in load)} on {os.cpu_count()} CPUs")
    import json

    print(json.dumps({"variants": summary, "load1": round(load[0], 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
