"""Message encryption for Web Push (RFC 8291) in the aes128gcm content coding (RFC 8188), sans-IO.

A JMAP PushSubscription with ``keys`` (RFC 8620 7.2) makes the server encrypt every push as an application
server does in RFC 8291. ``Subscriber`` is the receiving side (the user agent): it makes the key pair and the
authentication secret the client hands to the server, and ``decrypt`` turns a push body back into plaintext,
saying exactly what is wrong when it cannot. ``encrypt`` is the application server's side (used by the
scripted peers that prove the checks can fail). Bytes in, bytes out; no sockets.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

CODING = "aes128gcm"
KEY_INFO = b"WebPush: info\x00"
CEK_INFO = b"Content-Encoding: aes128gcm\x00"
NONCE_INFO = b"Content-Encoding: nonce\x00"
TAG = 16
HEADER = 16 + 4 + 1  # salt, record size, keyid length


class WebPushError(ValueError):
    """A push body that is not a valid RFC 8291 message for this subscriber (the reason says which rule)."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand (RFC 5869) for at most one SHA-256 block, which is all RFC 8291 needs."""
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:length]


def _extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def _public_bytes(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


def _content_keys(ecdh_secret: bytes, auth: bytes, ua_public: bytes, as_public: bytes,
                  salt: bytes) -> tuple[bytes, bytes]:
    """(content encryption key, nonce) of RFC 8291 section 3.4 from the shared secret and the two public keys."""
    prk_key = _extract(auth, ecdh_secret)
    ikm = _hkdf_expand(prk_key, KEY_INFO + ua_public + as_public, 32)
    prk = _extract(salt, ikm)
    return _hkdf_expand(prk, CEK_INFO, 16), _hkdf_expand(prk, NONCE_INFO, 12)


@dataclass
class Decrypted:
    plaintext: bytes
    record_size: int
    records: int
    sender_key: bytes = field(repr=False)


@dataclass
class Subscriber:
    """The receiving side of a subscription: a P-256 key pair and a 16-octet authentication secret."""

    private: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()),
                                                repr=False)
    auth: bytes = field(default_factory=lambda: os.urandom(16), repr=False)

    @property
    def public(self) -> bytes:
        return _public_bytes(self.private.public_key())

    def keys(self) -> dict[str, str]:
        """The ``keys`` member of a PushSubscription (RFC 8620 7.2): p256dh and auth, URL-safe base64."""
        return {"p256dh": b64url(self.public), "auth": b64url(self.auth)}

    def decrypt(self, body: bytes) -> Decrypted:
        """The plaintext of an aes128gcm push body (RFC 8188 header, RFC 8291 keys); WebPushError says why not."""
        if len(body) < HEADER:
            raise WebPushError(f"{len(body)} octets is shorter than the aes128gcm header ({HEADER} octets)")
        salt, rs, idlen = body[:16], struct.unpack(">I", body[16:20])[0], body[20]
        keyid = body[HEADER:HEADER + idlen]
        if idlen != 65 or len(keyid) != 65 or keyid[0] != 4:
            raise WebPushError(f"the keyid is not the sender's uncompressed P-256 public key (idlen {idlen}); "
                               "RFC 8291 section 4 requires it there")
        if rs < 18:
            raise WebPushError(f"record size {rs} is below the minimum of 18 (RFC 8188 section 2.1)")
        try:
            sender = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), keyid)
        except ValueError as e:
            raise WebPushError(f"the keyid is not a point on P-256: {e}") from e
        secret = self.private.exchange(ec.ECDH(), sender)
        cek, nonce = _content_keys(secret, self.auth, self.public, keyid, salt)
        data = body[HEADER + idlen:]
        if not data:
            raise WebPushError("no encrypted record after the header")
        records = [data[i:i + rs] for i in range(0, len(data), rs)]
        out = b""
        for i, rec in enumerate(records):
            iv = (int.from_bytes(nonce, "big") ^ i).to_bytes(12, "big")
            try:
                plain = AESGCM(cek).decrypt(iv, rec, None)
            except InvalidTag as e:
                raise WebPushError(f"record {i + 1} does not authenticate with the subscription's keys "
                                   "(wrong key derivation, auth secret or nonce)") from e
            stripped = plain.rstrip(b"\x00")
            last = i == len(records) - 1
            want = b"\x02" if last else b"\x01"
            if not stripped.endswith(want):
                raise WebPushError(f"record {i + 1} lacks its padding delimiter {want!r} (RFC 8188 section 2)")
            out += stripped[:-1]
        return Decrypted(out, rs, len(records), keyid)


def encrypt(plaintext: bytes, p256dh: str, auth: str, *, record_size: int = 4096,
            salt: bytes | None = None) -> bytes:
    """An aes128gcm body for a subscription's keys, as an application server sends it (one record)."""
    ua_public = unb64url(p256dh)
    secret_auth = unb64url(auth)
    local = ec.generate_private_key(ec.SECP256R1())
    as_public = _public_bytes(local.public_key())
    receiver = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), ua_public)
    salt = salt or os.urandom(16)
    cek, nonce = _content_keys(local.exchange(ec.ECDH(), receiver), secret_auth, ua_public, as_public, salt)
    if len(plaintext) + 1 + TAG > record_size:
        raise ValueError("plaintext does not fit one record (RFC 8291 uses a single record)")
    record = AESGCM(cek).encrypt(nonce, plaintext + b"\x02", None)
    return salt + struct.pack(">I", record_size) + bytes([len(as_public)]) + as_public + record
