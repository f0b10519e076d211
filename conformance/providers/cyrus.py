"""The `local` providers for the Cyrus reference targets: `cyrus` (Debian's binaries) and `cyrus-push`.

Both run Cyrus IMAP 3.6 from binaries that servers/cyrus/build.sh extracted (and, for cyrus-push, rebuilt
with WebSockets) into a cache outside the git tree. Start renders servers/cyrus/*.j2 into a temporary
directory, creates the configuration tree (Debian's makedirs), the SASL accounts, a self-signed
certificate, starts ``master`` (as root it switches to the ``cyrus`` user) and waits on protocol probes (IMAP
greeting, an HTTP answer); then creates the users' mailboxes as the admin. Cyrus logs only through syslog:
master runs in a private mount namespace whose /dev/log is this instance's own socket (private-log.sh), read
by a small listener thread into log/syslog.log. Stop ends exactly the process group it started.
"""

from __future__ import annotations

import functools
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import jinja2

from ..data import data_dir
from ..errors import HarnessError
from ..targets import Account, Endpoint, Target, TlsPolicy
from .dovecot import ACCOUNTS, free_port, make_certificate, probe
from .workdir import keep_logs_and_remove, log_tail, stop_process_group

SERVERS_DIR = data_dir("servers")
CYRUS_DIR = SERVERS_DIR / "cyrus"
VARIANTS = {"stock": "cyrus", "push": "cyrus-push"}


def cache_root() -> Path:
    if os.environ.get("LEMONADE_CACHE"):
        return Path(os.environ["LEMONADE_CACHE"])
    if os.geteuid() == 0:
        return Path("/var/cache/lemonade")
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lemonade"


def find_build(variant: str) -> Path:
    """The cached, complete tree for a variant (the most recently built when several versions are cached;
    servers/cyrus/build.sh decides which version to build, from apt)."""
    name = VARIANTS[variant]
    root = cache_root()
    found = sorted((p.parent for p in root.glob(f"{name}-[0-9]*/.complete")),
                   key=lambda p: (p / ".complete").stat().st_mtime)
    if found:
        return found[-1]
    raise HarnessError(f"no {name} build in {root}: run `bash servers/cyrus/build.sh {variant}` "
                       "(as root; scripts/setup.sh does it)")


class LogListener:
    """A unix datagram socket standing in for /dev/log: syslog lines go to a file."""

    def __init__(self, sock_path: Path, out: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(sock_path))
        os.chmod(sock_path, 0o666)
        self.sock.settimeout(0.2)
        self.out = open(out, "ab", buffering=0)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="cyrus-syslog", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            self.out.write(data.rstrip(b"\0\n") + b"\n")

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(2)
        self.sock.close()
        self.out.close()


@functools.lru_cache(maxsize=1)
def can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    try:  # the whole sequence (unshare, tmpfs over /dev, bind mounts), not just unshare: containers differ
        return subprocess.run([str(CYRUS_DIR / "private-log.sh"), "/nonexistent", "true"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


class CyrusProvider:
    """Starts and stops one private Cyrus (``variant`` stock or push)."""

    def __init__(self, variant: str = "stock", depth: str = "quick", keep_logs: Path | None = None,
                 pushpoll: str = "1s") -> None:
        if variant not in VARIANTS:
            raise HarnessError(f"unknown Cyrus variant {variant}")
        self.variant = variant
        self.target_name = VARIANTS[variant]
        self.depth = depth
        self.keep_logs = keep_logs
        self.pushpoll = pushpoll
        self.dir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.logger: LogListener | None = None
        self.target: Target | None = None
        self.ready_seconds: float | None = None

    def start(self, attempts: int = 3) -> Target:
        if os.geteuid() != 0:
            raise HarnessError("the Cyrus targets need root (master switches to the cyrus user)")
        build = find_build(self.variant)
        t0 = time.monotonic()
        last = ""
        for _ in range(attempts):
            try:
                target = self._start_once(build)
                self.ready_seconds = time.monotonic() - t0
                return target
            except HarnessError as e:  # most likely a port taken between choosing and binding
                last = str(e)
                self.stop()
        raise HarnessError(f"{self.target_name} did not become ready after {attempts} attempts: {last}")

    def _start_once(self, build: Path) -> Target:
        import grp
        import pwd

        root = build / "root"
        bindir = root / "usr/lib/cyrus/bin"
        self.dir = d = Path(tempfile.mkdtemp(prefix=f"lemonade-{self.target_name}-"))
        os.chmod(d, 0o755)
        for sub in ("conf", "spool", "sieve", "tmp", "log"):
            (d / sub).mkdir()
        admin_pw = secrets.token_hex(12)
        self.admin = ("admin", admin_pw)
        ports = {"imap": free_port(), "imaps": free_port(), "https": free_port()}
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(CYRUS_DIR), undefined=jinja2.StrictUndefined,
                                 keep_trailing_newline=True)
        ctx = {"dir": str(d), "bin": str(bindir), "ports": ports, "admin": "admin", "variant": self.target_name,
               "pushpoll": self.pushpoll}
        (d / "imapd.conf").write_text(env.get_template("imapd.conf.j2").render(**ctx))
        (d / "cyrus.conf").write_text(env.get_template("cyrus.conf.j2").render(**ctx))
        make_certificate(d)
        # Debian's makedirs reads /etc/imapd.conf: a private copy that reads ours
        text = (bindir / "makedirs").read_text()
        text = text.replace("CONF=/etc/imapd.conf", f"CONF={d}/imapd.conf").replace(
            "[ -r /etc/default/cyrus-imapd ] && . /etc/default/cyrus-imapd", "")
        (d / "makedirs").write_text(text)
        run = subprocess.run(["sh", str(d / "makedirs")], capture_output=True, text=True, timeout=30)
        if run.returncode:
            raise HarnessError(f"makedirs failed: {run.stderr.strip()[-300:]}")
        for user, pw in [self.admin, *ACCOUNTS]:
            r = subprocess.run(["saslpasswd2", "-p", "-f", str(d / "conf/sasldb2"), "-u", "localhost", "-c", user],
                               input=pw, capture_output=True, text=True, timeout=10)
            if r.returncode:
                raise HarnessError(f"saslpasswd2 failed for {user}: {r.stderr.strip()}")
        uid, gid = pwd.getpwnam("cyrus").pw_uid, grp.getgrnam("mail").gr_gid
        for p in [d / "tmp", d / "conf/sasldb2", d / "key.pem", d / "cert.pem", d / "spool", d / "sieve"]:
            os.chown(p, uid, gid)
        os.chmod(d / "key.pem", 0o600)
        env_vars = dict(os.environ, LD_LIBRARY_PATH=str(root / "usr/lib/x86_64-linux-gnu"))
        master = [str(bindir / "master"), "-C", str(d / "imapd.conf"), "-M", str(d / "cyrus.conf"), "-D",
                  "-p", str(d / "master.pid")]
        self.log_mode = "none"
        if can_unshare():
            self.logger = LogListener(d / "log/log.sock", d / "log/syslog.log")
            master = [str(CYRUS_DIR / "private-log.sh"), str(d / "log/log.sock"), *master]
            self.log_mode = "private /dev/log"
        self.proc = subprocess.Popen(master, stdout=open(d / "log/master.out", "wb"), stderr=subprocess.STDOUT,
                                     env=env_vars, start_new_session=True)
        deadline = time.monotonic() + 15
        try:
            probe("127.0.0.1", ports["imap"], b"* OK", deadline)
            self._probe_https(ports["https"], deadline)
        except HarnessError as e:
            if self.proc.poll() is not None:
                raise HarnessError(f"master exited with {self.proc.returncode}: {self._log_tail()}") from e
            raise HarnessError(f"{e}; log: {self._log_tail()}") from e
        self._create_mailboxes(ports["imap"])
        self.target = Target(
            name=self.target_name,
            endpoints={
                "imap": Endpoint("imap", "imap", "127.0.0.1", ports["imap"]),
                "imaps": Endpoint("imaps", "imaps", "127.0.0.1", ports["imaps"]),
                "jmap": Endpoint("jmap", "https", "127.0.0.1", ports["https"]),
            },
            accounts=[Account(u, p) for u, p in ACCOUNTS],
            tls=TlsPolicy(verify=False, ca_file=None),
            provider="local",
            version=f"Cyrus IMAP {build.name.removeprefix(self.target_name + '-')}"
                    + (" rebuilt with wslay (JMAP push)" if self.variant == "push" else " (Debian binaries)"),
            settings={"jmap_pushpoll": self.pushpoll, "build": str(build), "logs": self.log_mode},
            logs=[d / "log" / "syslog.log"],
            workdir=d,
        )
        return self.target

    def _probe_https(self, port: int, deadline: float) -> None:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        last = "no attempt"
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as raw:
                    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                        s.settimeout(2)
                        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                        if s.recv(64).startswith(b"HTTP/"):
                            return
            except OSError as e:
                last = str(e)
            time.sleep(0.05)
        raise HarnessError(f"no HTTPS answer on 127.0.0.1:{port} before the deadline ({last})")

    def _create_mailboxes(self, port: int) -> None:
        from ..protocols.imap import ImapConnection
        from ..transcript import Transcript

        conn = ImapConnection("127.0.0.1", port, transcript=Transcript(secrets={self.admin[1]}), tls="none",
                              ssl_context=None, timeout=10, label="provision")
        try:
            conn.read_greeting()
            if not conn.login(*self.admin).ok:
                raise HarnessError(f"admin login failed on {self.target_name}: {self._log_tail()}")
            for user, _ in ACCOUNTS:
                for box in ("", "/Drafts", "/Sent", "/Trash"):
                    use = f" (USE (\\{box[1:]}))" if box else ""
                    res = conn.command(f"CREATE user/{user}{box}{use}")
                    if not res.ok and "exists" not in res.tagged.first_line.lower():
                        raise HarnessError(f"CREATE user/{user}{box} failed: {res.tagged.first_line}")
            conn.command("LOGOUT")
        finally:
            conn.close()

    def _log_tail(self, n: int = 8) -> str:
        return log_tail(self.dir / "log" if self.dir else None, ("master.out", "syslog.log"), n)

    def stop(self) -> None:
        stop_process_group(self.proc)
        self.proc = None
        if self.logger:
            self.logger.stop()
            self.logger = None
        keep_logs_and_remove(self.dir, self.keep_logs, self.target_name)
        self.dir = None

    def __enter__(self) -> Target:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
