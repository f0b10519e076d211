"""RFC 8291 message encryption (conformance/protocols/webpush.py) against the RFC's own worked example."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from conformance.protocols.webpush import Subscriber, WebPushError, b64url, encrypt, unb64url

# RFC 8291 section 5 and appendix A
PLAINTEXT = b"When I grow up, I want to be a watermelon"
UA_PRIVATE = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
UA_PUBLIC = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
AUTH = "BTBZMqHH6r4Tts7J_aSIgg"
BODY = ("DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_"
        "yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN")


def rfc_subscriber() -> Subscriber:
    key = ec.derive_private_key(int.from_bytes(unb64url(UA_PRIVATE), "big"), ec.SECP256R1())
    return Subscriber(private=key, auth=unb64url(AUTH))


def test_decrypts_the_rfc_8291_example():
    sub = rfc_subscriber()
    assert b64url(sub.public) == UA_PUBLIC
    out = sub.decrypt(unb64url(BODY))
    assert out.plaintext == PLAINTEXT and out.record_size == 4096 and out.records == 1


def test_round_trip_and_tampering_named():
    sub = Subscriber()
    keys = sub.keys()
    body = encrypt(b'{"@type":"StateChange"}', keys["p256dh"], keys["auth"])
    assert sub.decrypt(body).plaintext == b'{"@type":"StateChange"}'
    with pytest.raises(WebPushError, match="does not authenticate"):
        Subscriber().decrypt(body)  # another subscriber's keys
    with pytest.raises(WebPushError, match="shorter than the aes128gcm header"):
        sub.decrypt(b"{}")
    with pytest.raises(WebPushError, match="keyid"):
        sub.decrypt(body[:20] + b"\x00" + body[21 + 65:])
