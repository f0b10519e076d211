"""What the scripted submission fakes share: a loopback listener, one thread per session, and a line reader.

Subclass ``FakeSmtp`` and implement ``session(sock, lines)``; ``lines`` reads one CRLF-terminated line (None at EOF)
from the session's socket, which ``lines.sock`` may replace after STARTTLS (``lines.wrap(context)``).
"""

from __future__ import annotations

import socket
import ssl
import threading


class Lines:
    """Reads CRLF-terminated lines from a socket (the socket may be wrapped in TLS midway)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, b""

    def __call__(self) -> bytes | None:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def wrap(self, context: ssl.SSLContext) -> None:
        """Start TLS as the server; what was read before is dropped (RFC 3207 4.2)."""
        self.sock, self.buf = context.wrap_socket(self.sock, server_side=True), b""


class FakeSmtp:
    """A submission fake on 127.0.0.1 (``port``); a context manager that stops its threads on exit."""

    def __init__(self, tls_context: ssl.SSLContext) -> None:
        self.tls_context = tls_context
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join(2)
        self.listener.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            sock.settimeout(10)
            threading.Thread(target=self._serve, args=(Lines(sock),), daemon=True).start()

    def _serve(self, lines: Lines) -> None:
        try:
            self.session(lines)
        except (OSError, ssl.SSLError):
            return
        finally:
            try:
                lines.sock.close()
            except OSError:
                pass

    def session(self, lines: Lines) -> None:
        raise NotImplementedError
