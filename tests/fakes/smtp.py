"""What the scripted submission fakes share: a loopback listener (``listener.Listener``) and a line reader.

Subclass ``FakeSmtp`` and implement ``session(sock, lines)``; ``lines`` reads one CRLF-terminated line (None at EOF)
from the session's socket, which ``lines.sock`` may replace after STARTTLS (``lines.wrap(context)``).
"""

from __future__ import annotations

import socket
import ssl

from .listener import Listener


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
        self.listener = Listener(self._serve, timeout=10)
        self.port = self.listener.port
        self.stopping = self.listener.stopping

    def __enter__(self):
        self.listener.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.listener.__exit__(*exc)

    def _serve(self, sock: socket.socket) -> None:
        lines = Lines(sock)
        try:
            self.session(lines)
        except ssl.SSLError:
            return
        finally:
            if lines.sock is not sock:  # the TLS socket STARTTLS made (the listener closes the one it gave)
                try:
                    lines.sock.close()
                except OSError:
                    pass

    def session(self, lines: Lines) -> None:
        raise NotImplementedError
