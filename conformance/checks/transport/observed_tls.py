"""A TLS handshake whose every server octet is kept: what the STARTTLS injection checks read when a handshake fails.

After ``STARTTLS`` plus an injected command in one segment, a handshake can fail for two opposite reasons: the server
fed the injected bytes to its TLS stack (the rule kept: its reply is a TLS alert or nothing), or it ran the injected
command in cleartext and its answer reached the client's TLS stack as garbage (the rule broken). ``handshake`` runs
the handshake over memory BIOs, so the raw octets the server sent are there to tell the two apart; after a success,
``BioTlsSocket`` carries the session on with the few socket methods the suite's connections use.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
from dataclasses import dataclass

TLS_RECORD = re.compile(rb"^[\x14-\x17]\x03[\x00-\x04]")  # content type 20..23, version 3.x


class BioTlsSocket:
    """A TLS session over a plain socket and an ``ssl.SSLObject``: recv/sendall/settimeout/close/version/cipher."""

    def __init__(self, sock: socket.socket, tls: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO):
        self.sock, self.tls, self.incoming, self.outgoing = sock, tls, incoming, outgoing

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.sock.sendall(data)

    def settimeout(self, value: float | None) -> None:
        self.sock.settimeout(value)

    def recv(self, n: int) -> bytes:
        """Up to ``n`` decrypted octets; b"" when the peer closed (socket.timeout propagates as for a socket)."""
        while True:
            try:
                data = self.tls.read(n)
                self._flush()
                return data
            except ssl.SSLWantReadError:
                self._flush()
                raw = self.sock.recv(65536)
                if not raw:
                    self.incoming.write_eof()
                    try:
                        return self.tls.read(n)
                    except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                        return b""
                self.incoming.write(raw)
            except ssl.SSLZeroReturnError:
                return b""

    def sendall(self, data: bytes) -> None:
        self.tls.write(data)
        self._flush()

    def version(self) -> str | None:
        return self.tls.version()

    def cipher(self):
        return self.tls.cipher()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


@dataclass
class Handshake:
    """How one observed handshake ended: ``tls`` after a success, else ``error``; ``raw`` holds what the server sent."""

    raw: bytes
    tls: BioTlsSocket | None = None
    error: str = ""

    def cleartext(self) -> bytes:
        """The server's octets that are not TLS records (from the first one that is not), empty when all were TLS."""
        data = self.raw
        while data:
            if not TLS_RECORD.match(data) or len(data) < 5:
                return data
            data = data[5 + int.from_bytes(data[3:5], "big"):]
        return b""


def handshake(sock: socket.socket, context: ssl.SSLContext, timeout: float,
              server_hostname: str = "localhost") -> Handshake:
    """A client handshake on ``sock`` within ``timeout`` seconds, keeping every octet the server sent."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    raw = bytearray()
    deadline = time.monotonic() + timeout
    while True:
        try:
            tls.do_handshake()
            data = outgoing.read()
            if data:
                sock.sendall(data)
            return Handshake(bytes(raw), BioTlsSocket(sock, tls, incoming, outgoing))
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as e:
            data = outgoing.read()
            if data:  # the alert we send back
                try:
                    sock.sendall(data)
                except OSError:
                    pass
            return Handshake(bytes(raw), error=f"{type(e).__name__}: {e.reason or e}")
        try:
            data = outgoing.read()
            if data:
                sock.sendall(data)
            left = deadline - time.monotonic()
            if left <= 0:
                return Handshake(bytes(raw), error=f"handshake not complete within {timeout:g} s")
            sock.settimeout(left)
            chunk = sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return Handshake(bytes(raw), error=f"handshake not complete within {timeout:g} s")
        except OSError as e:
            return Handshake(bytes(raw), error=f"connection failed during the handshake: {e}")
        if not chunk:
            return Handshake(bytes(raw), error="the server closed the connection during the handshake")
        raw += chunk
        incoming.write(chunk)
