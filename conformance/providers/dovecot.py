"""The `local` provider for the embedded default target: Dovecot 2.3 as a private process.

Renders servers/dovecot/dovecot.conf.j2 into a temporary directory, generates a self-signed
certificate, starts the SMTP sink that receives submission relays, starts ``dovecot -F`` and waits on
protocol probes (IMAP greeting, SMTP 220). Stop ends exactly the processes it started and removes the
directory (logs are copied to ``keep_logs`` first when given).
"""

from __future__ import annotations

import datetime
import getpass
import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import jinja2

from ..data import data_dir
from ..errors import HarnessError
from ..targets import Account, Endpoint, Target, TlsPolicy
from .smtpsink import SmtpSink
from .workdir import keep_logs_and_remove, log_tail, stop_process_group

SERVERS_DIR = data_dir("servers")
ACCOUNTS = (("alice", "alice-Lemonade-pw1"), ("bob", "bob-Lemonade-pw2"), ("carol", "carol-Lemonade-pw3"))


def free_port() -> int:
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


def make_certificate(directory: Path, names=("localhost",)) -> None:
    """A self-signed EC certificate for localhost and 127.0.0.1 (fast: no RSA key generation)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
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
    (directory / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def load_settings(depth: str) -> dict[str, Any]:
    data = tomllib.loads((SERVERS_DIR / "dovecot" / "settings.toml").read_text())
    if depth not in data:
        raise HarnessError(f"servers/dovecot/settings.toml has no [{depth}] table")
    return dict(data[depth])


def dovecot_version() -> str:
    try:
        return subprocess.run(["dovecot", "--version"], capture_output=True, text=True, timeout=5).stdout.split()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return ""


class DovecotProvider:
    """Starts and stops one private Dovecot. ``settings`` override servers/dovecot/settings.toml keys."""

    name = "dovecot"

    def __init__(self, depth: str = "quick", settings: dict[str, Any] | None = None,
                 keep_logs: Path | None = None, name: str = "dovecot") -> None:
        self.depth = depth
        self.settings = load_settings(depth)
        unknown = set(settings or {}) - set(self.settings)
        if unknown:
            raise HarnessError(f"unknown Dovecot setting(s): {', '.join(sorted(unknown))}")
        self.settings.update(settings or {})
        self.keep_logs = keep_logs
        self.target_name = name
        self.dir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.sink: SmtpSink | None = None
        self.target: Target | None = None
        self.ready_seconds: float | None = None

    def _users(self) -> dict[str, str]:
        if os.geteuid() == 0:
            # Debian's dovecot-core creates these system users; mail files belong to 'dovecot'
            try:
                pwd.getpwnam("dovenull")
                mail_user = pwd.getpwnam("dovecot")
                return {"internal_user": "dovecot", "internal_group": grp.getgrgid(mail_user.pw_gid).gr_name,
                        "login_user": "dovenull", "mail_user": "dovecot",
                        "mail_group": grp.getgrgid(mail_user.pw_gid).gr_name}
            except KeyError:
                raise HarnessError("running as root needs the 'dovecot' and 'dovenull' users from dovecot-core") from None
        me = getpass.getuser()
        group = grp.getgrgid(os.getegid()).gr_name
        return {"internal_user": me, "internal_group": group, "login_user": me, "mail_user": me, "mail_group": group}

    def start(self, attempts: int = 3) -> Target:
        if shutil.which("dovecot") is None:
            raise HarnessError("dovecot is not installed: run the README set-up command (apt-get install "
                               "dovecot-core dovecot-imapd dovecot-submissiond)")
        t0 = time.monotonic()
        last_error = ""
        for _ in range(attempts):
            try:
                target = self._start_once()
                self.ready_seconds = time.monotonic() - t0
                return target
            except HarnessError as e:  # most likely a port taken between choosing and binding: retry
                last_error = str(e)
                self.stop()
        raise HarnessError(f"embedded Dovecot did not become ready after {attempts} attempts: {last_error}")

    def _start_once(self) -> Target:
        self.dir = Path(tempfile.mkdtemp(prefix="lemonade-dovecot-"))
        d = self.dir
        for sub in ("run", "log", "home", "state"):
            (d / sub).mkdir()
        users = self._users()
        make_certificate(d)
        (d / "passwd").write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in ACCOUNTS))
        self.sink = SmtpSink(spool=d / "sink").start()
        ports = {"imap": free_port(), "imaps": free_port(), "submission": free_port()}
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(SERVERS_DIR / "dovecot"), undefined=jinja2.StrictUndefined,
                                 keep_trailing_newline=True)
        conf = env.get_template("dovecot.conf.j2").render(
            instance=f"{os.getpid()}-{ports['imap']}", dir=str(d), ports=ports, sink_port=self.sink.port,
            settings=self.settings, **users)
        (d / "dovecot.conf").write_text(conf)
        if os.geteuid() == 0:
            uid = pwd.getpwnam(users["mail_user"]).pw_uid
            gid = grp.getgrnam(users["mail_group"]).gr_gid
            os.chmod(d, 0o755)
            for sub in ("home",):
                os.chown(d / sub, uid, gid)
            os.chmod(d / "key.pem", 0o600)
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", str(d / "dovecot.conf")],
                                     stdout=open(d / "log" / "stdout.log", "wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 10
        try:
            probe("127.0.0.1", ports["imap"], b"* OK", deadline)
            probe("127.0.0.1", ports["submission"], b"220", deadline)
        except HarnessError as e:
            if self.proc.poll() is not None:
                raise HarnessError(f"dovecot exited with {self.proc.returncode}: {self._log_tail()}") from e
            raise HarnessError(f"{e}; log: {self._log_tail()}") from e
        self.target = Target(
            name=self.target_name,
            endpoints={
                "imap": Endpoint("imap", "imap", "127.0.0.1", ports["imap"]),
                "imaps": Endpoint("imaps", "imaps", "127.0.0.1", ports["imaps"]),
                "submission": Endpoint("submission", "smtp", "127.0.0.1", ports["submission"]),
            },
            accounts=[Account(u, p) for u, p in ACCOUNTS],
            tls=TlsPolicy(verify=False, ca_file=None),
            provider="local",
            version=f"Dovecot {dovecot_version()}",
            settings={k: v for k, v in self.settings.items() if k != "extra" or v},
            logs=[d / "log" / "dovecot.log"],
            sink=self.sink,
            workdir=d,
        )
        return self.target

    def _log_tail(self, n: int = 8) -> str:
        return log_tail(self.dir / "log" if self.dir else None, ("dovecot.log", "stdout.log"), n)

    def stop(self) -> None:
        stop_process_group(self.proc)
        self.proc = None
        if self.sink:
            self.sink.stop()
            self.sink = None
        keep_logs_and_remove(self.dir, self.keep_logs, self.target_name)
        self.dir = None

    def __enter__(self) -> Target:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
