"""A loopback TCP listener for the fakes: each connection served in its own thread, every thread stopped on exit."""

from __future__ import annotations

import socket
import threading
from typing import Callable


class Listener:
    """Listens on 127.0.0.1 (a free port: ``port``) and calls ``serve(sock)`` for each connection in its own thread,
    with ``timeout`` on the socket, closing it afterwards. A context manager; ``stopping`` is set on exit."""

    def __init__(self, serve: Callable[[socket.socket], None], timeout: float = 5.0) -> None:
        self.serve = serve
        self.timeout = timeout
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> "Listener":
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(2)
        self.listener.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            sock.settimeout(self.timeout)
            t = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            t.start()
            self.threads.append(t)

    def _serve(self, sock: socket.socket) -> None:
        try:
            self.serve(sock)
        except OSError:
            pass
        finally:
            try:
                sock.close()
            except OSError:
                pass
