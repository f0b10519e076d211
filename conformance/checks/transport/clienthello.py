"""A TLS 1.2 ClientHello made by hand, and the reader of the server's first answer (sans-IO: bytes in, facts out).

Python's ssl module cannot offer TLS-level compression (OpenSSL 3 is built without it), so the check that asks
whether a server would pick DEFLATE (RFC 3749, method 1) writes the ClientHello itself and reads only the ServerHello
(or the alert) that comes back; it never completes the handshake.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

# TLS 1.2 suites offered: ECDHE with AES-GCM and ChaCha20 for RSA and ECDSA certificates, then plain RSA
SUITES = (0xC02F, 0xC02B, 0xC030, 0xC02C, 0xCCA8, 0xCCA9, 0x009C, 0x009D, 0x002F, 0x0035)
GROUPS = (0x001D, 0x0017, 0x0018)  # x25519, secp256r1, secp384r1
SIGNATURES = (0x0403, 0x0503, 0x0603, 0x0804, 0x0805, 0x0806, 0x0401, 0x0501, 0x0601)
COMPRESSION_NAMES = {0: "null", 1: "DEFLATE", 64: "LZS"}


def _ext(kind: int, body: bytes) -> bytes:
    return struct.pack("!HH", kind, len(body)) + body


def client_hello(*, compression: tuple[int, ...] = (1, 0), server_name: str = "localhost") -> bytes:
    """One TLS record holding a TLS 1.2 ClientHello that offers ``compression`` methods (1 = DEFLATE, 0 = null)."""
    host = server_name.encode()
    extensions = b"".join([
        _ext(0x0000, struct.pack("!HBH", len(host) + 3, 0, len(host)) + host),  # server_name
        _ext(0x000A, struct.pack("!H", 2 * len(GROUPS)) + b"".join(struct.pack("!H", g) for g in GROUPS)),
        _ext(0x000B, b"\x01\x00"),  # ec_point_formats: uncompressed
        _ext(0x000D, struct.pack("!H", 2 * len(SIGNATURES)) + b"".join(struct.pack("!H", s) for s in SIGNATURES)),
        _ext(0x0017, b""),  # extended_master_secret
        _ext(0xFF01, b"\x00"),  # renegotiation_info
    ])
    body = (b"\x03\x03" + os.urandom(32) + b"\x00"
            + struct.pack("!H", 2 * len(SUITES)) + b"".join(struct.pack("!H", s) for s in SUITES)
            + bytes([len(compression), *compression])
            + struct.pack("!H", len(extensions)) + extensions)
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


@dataclass
class ServerAnswer:
    """The server's first TLS message: a ServerHello (version, suite, compression method) or an alert."""

    kind: str  # "server-hello" or "alert"
    version: int = 0
    cipher_suite: int = 0
    compression: int = 0
    alert: tuple[int, int] = (0, 0)

    def describe(self) -> str:
        if self.kind == "alert":
            return f"alert level {self.alert[0]} description {self.alert[1]}"
        method = COMPRESSION_NAMES.get(self.compression, str(self.compression))
        return (f"ServerHello version 0x{self.version:04x}, suite 0x{self.cipher_suite:04x}, compression method "
                f"{self.compression} ({method})")


class ServerHelloReader:
    """Feed the octets the server sends after the ClientHello; ``answer`` is set once its first message is complete."""

    MAX = 1 << 16

    def __init__(self) -> None:
        self.buf = b""
        self.answer: ServerAnswer | None = None
        self.error = ""

    def feed(self, data: bytes) -> ServerAnswer | None:
        self.buf += data
        if len(self.buf) > self.MAX:
            self.error = f"{len(self.buf)} octets without a complete ServerHello"
            return None
        if len(self.buf) < 5:
            return None
        kind, _, length = struct.unpack("!BHH", self.buf[:5])
        if len(self.buf) < 5 + length:
            return None
        body = self.buf[5:5 + length]
        if kind == 0x15 and len(body) >= 2:
            self.answer = ServerAnswer("alert", alert=(body[0], body[1]))
        elif kind == 0x16 and body[:1] == b"\x02" and len(body) >= 4 + 2 + 32 + 1:
            pos = 4
            version = struct.unpack("!H", body[pos:pos + 2])[0]
            pos += 2 + 32
            sid = body[pos]
            pos += 1 + sid
            if len(body) < pos + 3:
                self.error = "ServerHello too short"
                return None
            suite = struct.unpack("!H", body[pos:pos + 2])[0]
            self.answer = ServerAnswer("server-hello", version, suite, body[pos + 2])
        else:
            self.error = f"the first record is not a ServerHello or an alert (type {kind}, {body[:8].hex()})"
        return self.answer
