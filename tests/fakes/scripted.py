"""A scripted peer on loopback that misbehaves on purpose: stall, reset, close early, garbage, flood, bad TLS.

``ScriptedPeer(script)`` accepts connections and runs ``script(PeerConn)`` for each in a thread; the script
speaks raw octets with the helpers of ``PeerConn``. On exit every connection is closed and every thread joined,
so a test leaves nothing behind. ``tls_server_context(tmp)`` makes a server context from the suite's own test
certificate for scripts that do TLS.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from pathlib import Path
from typing import Callable


def tls_server_context(directory: Path) -> ssl.SSLContext:
    from conformance.providers.dovecot import make_certificate

    make_certificate(directory)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return ctx


def free_port() -> int:
    """A loopback port nothing listens on (bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PeerConn:
    """One accepted connection, seen from the scripted peer."""

    def __init__(self, sock: socket.socket, stopping: threading.Event) -> None:
        self.sock = sock
        self.stopping = stopping
        self.buf = b""
        self.received = bytearray()

    def send(self, data: bytes) -> bool:
        """Send; False once the client is gone (a script ends quietly then)."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def recv_until(self, marker: bytes = b"\r\n", timeout: float = 10.0) -> bytes | None:
        """Octets up to and including ``marker``; None when the client went away or the test ended."""
        self.sock.settimeout(0.1)
        waited = 0.0
        while marker not in self.buf:
            if self.stopping.is_set() or waited > timeout:
                return None
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                waited += 0.1
                continue
            except OSError:
                return None
            if not chunk:
                return None
            self.received += chunk
            self.buf += chunk
        line, _, self.buf = self.buf.partition(marker)
        return line + marker

    def stall(self, seconds: float = 60.0) -> None:
        """Say nothing until the test ends."""
        self.stopping.wait(seconds)

    def reset(self) -> None:
        """Close with RST (SO_LINGER 0)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def flood(self, chunk: bytes) -> None:
        """Send ``chunk`` again and again, as fast as the socket takes it, until the client goes or the test ends."""
        self.sock.settimeout(1.0)
        while not self.stopping.is_set():
            try:
                self.sock.sendall(chunk)
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return

    def trickle(self, data: bytes, every: float) -> None:
        """Send ``data`` one octet every ``every`` seconds, repeatedly, until the client goes or the test ends."""
        i = 0
        while not self.stopping.wait(every):
            if not self.send(data[i % len(data):i % len(data) + 1]):
                return
            i += 1

    def start_tls(self, context: ssl.SSLContext) -> bool:
        try:
            self.sock.settimeout(10)
            self.sock = context.wrap_socket(self.sock, server_side=True)
            return True
        except (ssl.SSLError, OSError):
            return False


class ScriptedPeer:
    def __init__(self, script: Callable[[PeerConn], None]) -> None:
        self.script = script
        self.stopping = threading.Event()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.1)
        self.conns: list[PeerConn] = []
        self.threads: list[threading.Thread] = []
        self.accepted = threading.Event()

    @property
    def port(self) -> int:
        return self.listener.getsockname()[1]

    def __enter__(self) -> "ScriptedPeer":
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.listener.close()
        for c in self.conns:
            try:
                c.sock.close()
            except OSError:
                pass
        for t in self.threads:
            t.join(5)

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            conn = PeerConn(sock, self.stopping)
            self.conns.append(conn)
            self.accepted.set()
            t = threading.Thread(target=self._run, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _run(self, conn: PeerConn) -> None:
        try:
            self.script(conn)
        except OSError:
            pass
        finally:
            try:
                conn.sock.close()
            except OSError:
                pass
