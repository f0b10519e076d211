"""The intermediary's own CA: a fresh EC P-256 key and certificate in the case's private confdir.

mitmproxy would create an RSA-2048 CA on start (0.05-0.5 s of key generation); an EC key takes milliseconds,
so every case gets its own CA and no key is shared between cases. Only the suite's clients trust it (through
``NetworkPath.ca_file``); nothing is installed system-wide.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from mitmproxy.certs import DEFAULT_DHPARAM

BASENAME = "mitmproxy"  # mitmproxy's file names in its confdir


def write_ca(confdir: Path, cn: str = "lemonade intermediary CA") -> Path:
    """Write ``mitmproxy-ca.pem`` (key + cert), ``mitmproxy-ca-cert.pem`` and dhparam; return the cert path."""
    confdir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lemonade conformance suite")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().serial_number(x509.random_serial_number())
            .subject_name(name).issuer_name(name)
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .public_key(key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    ca = confdir / f"{BASENAME}-ca.pem"
    fd = os.open(ca, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem + cert_pem)
    cert_file = confdir / f"{BASENAME}-ca-cert.pem"
    cert_file.write_bytes(cert_pem)
    (confdir / f"{BASENAME}-dhparam.pem").write_bytes(DEFAULT_DHPARAM)
    return cert_file
