"""The two relays of real-nat: sockets in the namespaces on one side, loopback on the other, copied 1:1.

The **exit** relay listens in the server namespace and forwards each connection to the target on loopback: its
namespace socket is the server's end of the path, so what arrives there through the NAT (data, FIN, RST, or
nothing) is what the server sees, and it is recorded on the ``proxy-server`` leg. The **entry** relay listens on
loopback for clients that connect to an address (the suite's IMAP and HTTP clients) and opens a socket in the
client namespace for each; ``path.open()`` skips it and returns a client-namespace socket directly. A FIN is
passed on as a FIN and an RST as an RST (SO_LINGER 0), so each side sees what the other side's end saw. TCP
keepalives of a client stop at the entry relay; they reach the NAT only from a ``path.open()`` socket.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable

from ...transcript import Transcript
from ..addons.record import text_of

LEG = "proxy-server"


@dataclass
class Pair:
    label: str
    outer: socket.socket  # the namespace side (client namespace for entry, server namespace for exit)
    inner: socket.socket  # the loopback side (the suite's client, or the target)
    kind: str  # entry | exit
    endpoint: str
    tasks: list[asyncio.Task] = field(default_factory=list)
    octets: list[int] = field(default_factory=lambda: [0, 0])  # [outer -> inner, inner -> outer]


def _linger0(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


class Relays:
    """One asyncio loop in a thread for every relay of a case."""

    def __init__(self, transcript: Transcript, who: str = "real-nat") -> None:
        self.transcript = transcript
        self.redactor = transcript.redactor()
        self.who = who
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="real-nat-relay", daemon=True)
        self.pairs: dict[str, Pair] = {}
        self.servers: list[_TaskServer] = []
        self.count = 0
        self.client_ports: set[int] = set()  # local ports of every client-namespace socket (for blackhole rules)

    def start(self) -> "Relays":
        self.thread.start()
        return self

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        async def run():
            r = fn()
            return await r if asyncio.iscoroutine(r) else r

        fut: Future = asyncio.run_coroutine_threadsafe(run(), self.loop)
        return fut.result(timeout)

    def stop(self) -> None:
        if not self.thread.is_alive():
            return

        async def close_all():
            for s in self.servers:
                s.close()
            for p in list(self.pairs.values()):
                for t in p.tasks:
                    t.cancel()
                for s in (p.outer, p.inner):
                    s.close()
            self.pairs.clear()

        try:
            self.call(close_all)
        except Exception:  # noqa: BLE001 - stopping goes on
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    # -- listeners --------------------------------------------------------------------------------
    def add_exit(self, listener: socket.socket, upstream: tuple[str, int], endpoint: str) -> None:
        """``listener`` (bound in the server namespace) forwards to ``upstream`` on loopback."""

        async def accepted(outer: socket.socket) -> None:
            inner = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            inner.setblocking(False)
            try:
                await self.loop.sock_connect(inner, upstream)
            except OSError as e:
                self.transcript.add(LEG, "N", f"{self.who}: the target refused {endpoint} at {upstream}: {e}")
                _linger0(outer)
                outer.close()
                inner.close()
                return
            peer = outer.getpeername()
            pair = self._pair(outer, inner, "exit", endpoint)
            self.transcript.add(LEG, "N", f"{self.who}: server side accepted {endpoint} from {peer[0]}:{peer[1]} "
                                          f"(the NAT's outside address) and opened the target {upstream[0]}:"
                                          f"{upstream[1]}", conn=pair.label)
            self._run(pair)

        self.call(lambda: self._serve(listener, accepted))

    def add_entry(self, listener: socket.socket, connect: Callable[[], socket.socket], dest: tuple[str, int],
                  endpoint: str) -> None:
        """``listener`` (on loopback) opens a client-namespace socket from ``connect()`` to ``dest``."""

        async def accepted(inner: socket.socket) -> None:
            outer = await self.loop.run_in_executor(None, connect)
            outer.setblocking(False)
            try:
                await self.loop.sock_connect(outer, dest)
            except OSError as e:
                self.transcript.add("client-proxy", "N", f"{self.who}: client namespace could not reach "
                                                         f"{dest[0]}:{dest[1]} through the NAT: {e}")
                _linger0(inner)
                inner.close()
                outer.close()
                return
            self.client_ports.add(outer.getsockname()[1])
            pair = self._pair(outer, inner, "entry", endpoint)
            self._run(pair)

        self.call(lambda: self._serve(listener, accepted))

    async def _serve(self, listener: socket.socket, accepted) -> None:
        listener.setblocking(False)

        async def loop_accept():
            while True:
                try:
                    conn, _ = await self.loop.sock_accept(listener)
                except (OSError, asyncio.CancelledError):
                    return
                conn.setblocking(False)
                self.loop.create_task(accepted(conn))

        task = self.loop.create_task(loop_accept())
        self.servers.append(_TaskServer(task, listener))

    def _pair(self, outer: socket.socket, inner: socket.socket, kind: str, endpoint: str) -> Pair:
        self.count += 1
        port = outer.getsockname()[1] if kind == "entry" else outer.getpeername()[1]
        label = f"nat#{self.count}:{port}->{endpoint}"
        pair = Pair(label, outer, inner, kind, endpoint)
        self.pairs[label] = pair
        return pair

    def _run(self, pair: Pair) -> None:
        pair.tasks = [self.loop.create_task(self._copy(pair, pair.outer, pair.inner, 0)),
                      self.loop.create_task(self._copy(pair, pair.inner, pair.outer, 1))]

    async def _copy(self, pair: Pair, src: socket.socket, dst: socket.socket, direction: int) -> None:
        """Copy src to dst until FIN (passed on as shutdown) or RST (passed on as RST, the other copy ends)."""
        from_nat = src is pair.outer
        while True:
            try:
                data = await self.loop.sock_recv(src, 65536)
            except (ConnectionResetError, OSError) as e:
                self._event(pair, from_nat, f"RST ({e.strerror or e})")
                _linger0(dst)
                self._close(pair)
                return
            except asyncio.CancelledError:
                return
            if not data:
                self._event(pair, from_nat, "FIN")
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                if all(t.done() for t in pair.tasks if t is not asyncio.current_task()):
                    self._close(pair)  # both directions ended
                return
            pair.octets[direction] += len(data)
            if pair.kind == "exit":
                text = text_of(data)
                if from_nat:
                    self.transcript.add(LEG, "C", self.redactor.client(text), len(data), conn=pair.label)
                else:
                    self.transcript.add(LEG, "S", self.redactor.server(text), len(data), conn=pair.label)
            try:
                await self.loop.sock_sendall(dst, data)
            except OSError as e:
                self._event(pair, not from_nat, f"send failed ({e.strerror or e})")
                _linger0(src)
                self._close(pair)
                return

    def _event(self, pair: Pair, from_nat: bool, what: str) -> None:
        """Record what one end received: the namespace side of an exit relay is what the server sees."""
        if pair.kind == "exit":
            where = "server side" if from_nat else "target"
            text = (f"{self.who}: {what} arrived at the {where} through the NAT" if from_nat
                    else f"{self.who}: the target sent {what}; passed on through the NAT")
            self.transcript.add(LEG, "N", text, conn=pair.label)
        else:
            text = (f"{self.who}: {what} arrived at the client side from the NAT" if from_nat
                    else f"{self.who}: the suite's client sent {what}; passed on into the NAT")
            self.transcript.add("client-proxy", "N", text, conn=pair.label)

    def _close(self, pair: Pair) -> None:
        for t in pair.tasks:
            if t is not asyncio.current_task():
                t.cancel()
        for s in (pair.outer, pair.inner):
            try:
                s.close()
            except OSError:
                pass
        self.pairs.pop(pair.label, None)

    def kill(self, how: str, endpoint: str | None) -> int:
        """Cut relayed connections now: RST (SO_LINGER 0) or FIN on both ends."""

        def run() -> int:
            n = 0
            for pair in list(self.pairs.values()):
                if endpoint is not None and pair.endpoint != endpoint:
                    continue
                for s in (pair.outer, pair.inner):
                    if how == "rst":
                        _linger0(s)
                self.transcript.action(self.who, f"connection cut on demand with {how.upper()} by the relay "
                                                 f"({pair.kind} side)", pair.label)
                self._close(pair)
                n += pair.kind == "exit"  # one per connection (an entry pair has its exit pair)
            return n

        return self.call(run)


@dataclass
class _TaskServer:
    task: asyncio.Task
    listener: socket.socket

    def close(self) -> None:
        self.task.cancel()
        self.listener.close()
