"""What every provider shares: the test accounts, free loopback ports, readiness probes, a self-signed
certificate, config templates, and the ``Provider`` base: start with retries on port clashes, wait on
protocol probes, stop exactly what was started, keep the logs.

A provider subclasses ``Provider`` and writes ``start_once()`` (make the private directory, render the
configuration, spawn the server, ``wait_ready(...)``, return the Target); ``start()`` retries it when a port
chosen with ``free_port()`` was taken before the server bound it. Helpers started beside the server (the SMTP
sink, a syslog listener) are ``Service``s: ``add_service()`` starts one and ``stop()`` ends it after the server.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from ..data import data_dir
from ..errors import HarnessError
from ..processes import child_env, note_started
from ..targets import Target
from .workdir import keep_logs_and_remove, log_tail, stop_process_group

SERVERS_DIR = data_dir("servers")
# the reference targets' test accounts (user, password): every provider creates the same three
ACCOUNTS = (("alice", "alice-Lemonade-pw1"), ("bob", "bob-Lemonade-pw2"), ("carol", "carol-Lemonade-pw3"))


def free_port() -> int:
    """A loopback TCP port nobody listens on now (another process may take it before it is bound: retry)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def probe(host: str, port: int, expect: bytes, deadline: float) -> bytes:
    """Connect and read until ``expect`` appears at the start of the greeting; retry until ``deadline``."""
    last = "no attempt"
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5) as s:
                s.settimeout(max(0.05, min(1.0, deadline - time.monotonic())))
                data = s.recv(512)
                if data.startswith(expect):
                    return data
                last = f"unexpected greeting {data[:60]!r}"
        except OSError as e:
            last = str(e)
        time.sleep(0.02)
    raise HarnessError(f"no {expect.decode().strip()} greeting on {host}:{port} before the deadline ({last})")


def probe_http(host: str, port: int, deadline: float, *, path: str = "/", tls: bool = False,
               below: int = 600) -> int:
    """GET ``path`` (over TLS without verification when ``tls``) until an HTTP status below ``below`` answers;
    retry until ``deadline``. Returns the status."""
    last = "no attempt"
    ctx = None
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1) as raw:
                s = ctx.wrap_socket(raw, server_hostname="localhost") if ctx else raw
                with s:
                    s.settimeout(2)
                    s.sendall(request)
                    head = s.recv(64)
            parts = head.split(b" ", 2)
            if head.startswith(b"HTTP/") and len(parts) > 1 and parts[1].isdigit():
                if int(parts[1]) < below:
                    return int(parts[1])
                last = f"HTTP {int(parts[1])}"
            else:
                last = f"not an HTTP answer: {head[:40]!r}"
        except OSError as e:
            last = str(e)
        time.sleep(0.05)
    scheme = "HTTPS" if tls else "HTTP"
    raise HarnessError(f"no {scheme} answer on {host}:{port} before the deadline ({last})")


def make_certificate(directory: Path, names=("localhost",), *, rsa_bits: int = 0, prefix: str = "") -> None:
    """<prefix>key.pem and <prefix>cert.pem in ``directory``: a self-signed certificate for ``names`` and 127.0.0.1,
    EC P-256 (fast), or RSA with ``rsa_bits`` (about 0.1 s for 2048 bits)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(65537, rsa_bits) if rsa_bits else ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (directory / f"{prefix}key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (directory / f"{prefix}cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def render(template_dir: Path, name: str, **values: Any) -> str:
    """A server configuration from ``template_dir/name`` (jinja2; a missing value is an error, not a blank)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(template_dir), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True)
    return env.get_template(name).render(**values)


class Service:
    """Something started for a target and stopped with it: ``start()`` returns it ready, ``stop()`` ends it
    and may be called twice; usable as a context manager."""

    def start(self) -> Any:
        return self

    def stop(self) -> None:
        pass

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class Provider(Service):
    """Brings one target to life in a private directory and ends it: ``start()`` -> Target, ``stop()``.

    Subclasses set ``log_files`` (names under ``<dir>/log`` quoted when start fails) and write
    ``start_once(prepared)``; ``prepare()`` runs once before the attempts (programs, builds or images present).
    """

    attempts = 3
    log_files: tuple[str, ...] = ()
    keep_pattern = "*.log"  # which files of <dir>/log are kept with the run's output

    def __init__(self, target_name: str, depth: str = "quick", keep_logs: Path | None = None) -> None:
        self.target_name = target_name
        self.depth = depth
        self.keep_logs = keep_logs
        self.dir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.services: list[Service] = []
        self.target: Target | None = None
        self.ready_seconds: float | None = None  # from start() to every probe answering (benchmarked)

    # -- what a subclass writes ----------------------------------------------------------------
    def prepare(self) -> Any:
        return None

    def start_once(self, prepared: Any) -> Target:
        raise NotImplementedError

    def stop_server(self) -> None:
        """End the server itself (default: the process group ``spawn`` started)."""
        stop_process_group(self.proc)
        self.proc = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, attempts: int | None = None) -> Target:
        """The target, ready (every probe answered); up to ``attempts`` tries (default ``self.attempts``)."""
        attempts = attempts or self.attempts
        prepared = self.prepare()
        t0 = time.monotonic()
        last = ""
        for _ in range(attempts):
            try:
                self.target = self.start_once(prepared)
                self.ready_seconds = time.monotonic() - t0
                return self.target
            except HarnessError as e:  # most likely a port taken between choosing and binding: retry
                last = str(e)
                self.stop()
        raise HarnessError(f"{self.target_name} did not become ready after {attempts} attempts: {last}")

    def stop(self) -> None:
        self.stop_server()
        while self.services:
            self.services.pop().stop()
        keep_logs_and_remove(self.dir, self.keep_logs, self.target_name, self.keep_pattern)
        self.dir = None

    # -- helpers for start_once ----------------------------------------------------------------
    def make_dir(self, *subdirs: str) -> Path:
        """A new private directory for this attempt (``self.dir``) with ``log`` and the given subdirectories."""
        self.dir = Path(tempfile.mkdtemp(prefix=f"lemonade-{self.target_name}-"))
        for sub in ("log", *subdirs):
            (self.dir / sub).mkdir(exist_ok=True)
        return self.dir

    def add_service(self, service: Service) -> Any:
        """Start a helper beside the server; ``stop()`` ends it after the server."""
        started = service.start()
        self.services.append(service)
        return started

    def spawn(self, cmd: list[str], output: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start the server in a process group of its own (``stop_server`` ends exactly that group)."""
        with open(output, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=child_env(env),
                                         start_new_session=True)
        note_started(self.proc.pid, f"{self.target_name} server")
        return self.proc

    def wait_ready(self, timeout: float, *probes: Callable[[float], Any]) -> None:
        """Run each probe (given the common deadline) in order; a failure names the server's log tail, or its
        exit status when it died."""
        deadline = time.monotonic() + timeout
        try:
            for check in probes:
                while True:  # in slices: a server that died (e.g. a port taken before it bound it) ends the wait now,
                    try:     # and the start is retried at once instead of after the whole timeout
                        check(min(deadline, time.monotonic() + 0.5))
                        break
                    except HarnessError:
                        if time.monotonic() >= deadline or (self.proc is not None and self.proc.poll() is not None):
                            raise
        except HarnessError as e:
            if self.proc is not None and self.proc.poll() is not None:
                raise HarnessError(f"{self.target_name} exited with {self.proc.returncode}: {self.log_tail()}") from e
            raise HarnessError(f"{e}; log: {self.log_tail()}") from e

    def log_tail(self, n: int = 8) -> str:
        return log_tail(self.dir / "log" if self.dir else None, self.log_files, n)
