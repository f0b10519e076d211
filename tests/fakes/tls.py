"""Fakes that get TLS wrong on purpose: COMPRESS layered outside TLS, a missing mandatory suite, TLS compression, and a
ManageSieve greeting, for the transport and compress checks' failure tests.

- ``MisLayeredCompress``: IMAP with STARTTLS over an ``ssl.SSLObject`` on memory BIOs, so that after COMPRESS
  DEFLATE it can deflate the TLS records themselves (compression below TLS) instead of the IMAP octets inside them.
- ``ImapsServer``: implicit-TLS IMAP with a chosen certificate (RSA or EC) and cipher list.
- ``CompressingHello``: answers a ClientHello with a ServerHello that picks compression method 1 (DEFLATE).
- ``FakeManageSieve``: a ManageSieve greeting with a chosen SIEVE capability.
"""

from __future__ import annotations

import socket
import ssl
import struct
import tempfile
import zlib
from pathlib import Path

from .imap import FakeImapServer, FakeImapSession
from .listener import Listener


def certificate(directory: Path, rsa: bool) -> tuple[Path, Path]:
    """A self-signed certificate with an RSA (2048) or EC key: (cert, key)."""
    from conformance.providers.base import make_certificate

    make_certificate(directory, rsa_bits=2048 if rsa else 0, prefix="rsa-" if rsa else "ec-")
    prefix = "rsa-" if rsa else "ec-"
    return directory / f"{prefix}cert.pem", directory / f"{prefix}key.pem"


def server_context(rsa: bool = True, ciphers: str | None = None) -> ssl.SSLContext:
    """A TLS server context with its own certificate; ``ciphers`` limits TLS 1.2 suites."""
    d = Path(tempfile.mkdtemp(prefix="lemonade-fake-tls-"))
    cert, key = certificate(d, rsa)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if ciphers:
        ctx.set_ciphers(ciphers)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class MisLayeredCompress(FakeImapSession):
    """STARTTLS, then COMPRESS=DEFLATE applied in the wrong place (``below_tls``: the TLS records are deflated) or
    not at all (``below_tls = False``: the IMAP octets stay uncompressed inside TLS after the OK)."""

    greeting_caps = "IMAP4rev1 STARTTLS LOGINDISABLED"
    capabilities = "IMAP4rev1 COMPRESS=DEFLATE AUTH=PLAIN"
    below_tls = True

    def __init__(self, sock, server) -> None:
        super().__init__(sock, server)
        self.tls: ssl.SSLObject | None = None
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.deflate = None
        self.inflate = None

    def _flush(self) -> None:
        data = self.outgoing.read()
        if data and self.deflate is not None and self.below_tls:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        if data:
            self.sock.sendall(data)

    def send(self, line: str | bytes) -> None:
        data = line if isinstance(line, bytes) else line.encode()
        data += b"" if data.endswith(b"\r\n") else b"\r\n"
        if self.tls is None:
            self.sock.sendall(data)
            return
        self.tls.write(data)
        self._flush()

    def readline(self) -> bytes | None:
        while b"\r\n" not in self.buf:
            if self.tls is None:
                chunk = self._recv()
            else:
                try:
                    chunk = self.tls.read(65536)
                except ssl.SSLWantReadError:
                    raw = self._recv()
                    if raw is None:
                        return None
                    self.incoming.write(raw)
                    continue
                if self.inflate is not None:
                    chunk = self.inflate.decompress(chunk)
            if chunk is None:
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _recv(self) -> bytes | None:
        try:
            data = self.sock.recv(65536)
        except OSError:
            return None
        return data or None

    def cmd_starttls(self, tag: str, args: str):
        self.send(f"{tag} OK Begin TLS negotiation now")
        self.tls = self.server.tls_context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._flush()
                raw = self._recv()
                if raw is None:
                    return False
                self.incoming.write(raw)
        self._flush()

    def cmd_compress(self, tag: str, args: str):
        self.send(f"{tag} OK DEFLATE active")
        self.deflate = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
        self.inflate = zlib.decompressobj(-15)

    def cmd_list(self, tag: str, args: str):
        self.send('* LIST () "/" INBOX')
        self.send(f"{tag} OK LIST completed")


class TlsImapServer(FakeImapServer):
    """A FakeImapServer whose sessions start with implicit TLS under ``tls_context``."""

    def __init__(self, tls_context: ssl.SSLContext, session_cls: type[FakeImapSession] = FakeImapSession) -> None:
        implicit = type("Implicit", (session_cls,), {"run": _implicit_run(session_cls)})
        super().__init__(implicit)
        self.tls_context = tls_context

    def target_file(self, directory: Path, name: str = "fake-imaps", extra_endpoints=None) -> Path:
        path = Path(directory) / f"{name}.toml"
        path.write_text(f'name = "{name}"\n[endpoints]\nimaps = "imaps://127.0.0.1:{self.port}"\n[tls]\nverify = false\n'
                        '[[accounts]]\nusername = "alice"\npassword = "alice-fake-pw"\n')
        return path


def _implicit_run(session_cls):
    def run(self) -> None:
        self.sock = self.server.tls_context.wrap_socket(self.sock, server_side=True)
        session_cls.run(self)
    return run


class CompressingHello(Listener):
    """A TLS listener that answers any ClientHello with a ServerHello picking DEFLATE (method 1), then closes."""

    def __init__(self) -> None:
        super().__init__(self._answer, timeout=3)

    @staticmethod
    def _answer(sock: socket.socket) -> None:
        sock.recv(65536)
        body = b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\xc0\x2f" + b"\x01" + b"\x00\x00"
        hello = b"\x02" + len(body).to_bytes(3, "big") + body
        sock.sendall(b"\x16\x03\x03" + struct.pack("!H", len(hello)) + hello)

    def target_file(self, directory: Path, name: str = "compressing-hello") -> Path:
        path = Path(directory) / f"{name}.toml"
        path.write_text(f'name = "{name}"\n[endpoints]\nimaps = "imaps://127.0.0.1:{self.port}"\n[tls]\nverify = false\n'
                        '[[accounts]]\nusername = "alice"\npassword = "alice-fake-pw"\n')
        return path


class FakeManageSieve(Listener):
    """A ManageSieve server that greets with ``sieve`` as its SIEVE capability and closes."""

    def __init__(self, sieve: str) -> None:
        super().__init__(self._greet)
        self.sieve = sieve

    def _greet(self, sock: socket.socket) -> None:
        sock.sendall(f'"IMPLEMENTATION" "fake"\r\n"SIEVE" "{self.sieve}"\r\n"STARTTLS"\r\n'
                     f'"VERSION" "1.0"\r\nOK "ready"\r\n'.encode())
