"""Certificates for a real reverse proxy that terminates TLS: a per-case CA (trusted only by the suite's clients,
through ``path.ca_file``) and a server certificate for 127.0.0.1/localhost signed by it."""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..ca import BASENAME, write_ca


@dataclass(frozen=True)
class ServerCert:
    ca: Path  # the CA certificate clients trust
    cert: Path  # server certificate (PEM)
    key: Path  # its key (PEM, 0600)
    bundle: Path  # certificate then key in one file (haproxy's `crt`)


def server_cert(directory: Path, names: tuple[str, ...] = ("localhost", "127.0.0.1")) -> ServerCert:
    ca_cert = write_ca(directory, cn="lemonade real intermediary CA")
    pem = (directory / f"{BASENAME}-ca.pem").read_bytes()
    ca_key = serialization.load_pem_private_key(pem, password=None)
    ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    sans = [x509.IPAddress(ipaddress.ip_address(n)) if n.replace(".", "").isdigit() else x509.DNSName(n)
            for n in names]
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().serial_number(x509.random_serial_number())
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca.subject)
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
            .public_key(key.public_key())
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    out = ServerCert(ca_cert, directory / "server.crt", directory / "server.key", directory / "server.pem")
    out.cert.write_bytes(cert_pem)
    for path, data in ((out.key, key_pem), (out.bundle, cert_pem + key_pem)):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    return out
