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
import threading
from pathlib import Path

from ..errors import HarnessError
from ..targets import Account, Endpoint, Target, TlsPolicy
from .base import ACCOUNTS, SERVERS_DIR, Provider, Service, free_port, make_certificate, probe, probe_http, render

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


class LogListener(Service):
    """A unix datagram socket standing in for /dev/log: syslog lines go to a file."""

    def __init__(self, sock_path: Path, out: Path) -> None:
        self.sock_path, self.out_path = sock_path, out
        self.stopping = threading.Event()

    def start(self) -> "LogListener":
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.sock_path))
        os.chmod(self.sock_path, 0o666)
        self.sock.settimeout(0.2)
        self.out = open(self.out_path, "ab", buffering=0)
        self.thread = threading.Thread(target=self._run, name="cyrus-syslog", daemon=True)
        self.thread.start()
        return self

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


class CyrusProvider(Provider):
    """Starts and stops one private Cyrus (``variant`` stock or push)."""

    log_files = ("master.out", "syslog.log")

    def __init__(self, variant: str = "stock", depth: str = "quick", keep_logs: Path | None = None,
                 pushpoll: str = "1s") -> None:
        if variant not in VARIANTS:
            raise HarnessError(f"unknown Cyrus variant {variant}")
        super().__init__(VARIANTS[variant], depth, keep_logs)
        self.variant = variant
        self.pushpoll = pushpoll
        self.log_mode = "none"

    def prepare(self) -> Path:
        if os.geteuid() != 0:
            raise HarnessError("the Cyrus targets need root (master switches to the cyrus user)")
        return find_build(self.variant)

    def start_once(self, build: Path) -> Target:
        import grp
        import pwd

        root = build / "root"
        bindir = root / "usr/lib/cyrus/bin"
        d = self.make_dir("conf", "spool", "sieve", "tmp")
        os.chmod(d, 0o755)
        admin_pw = secrets.token_hex(12)
        self.admin = ("admin", admin_pw)
        ports = {"imap": free_port(), "imaps": free_port(), "https": free_port()}
        ctx = {"dir": str(d), "bin": str(bindir), "ports": ports, "admin": "admin", "variant": self.target_name,
               "pushpoll": self.pushpoll}
        for name in ("imapd.conf", "cyrus.conf"):
            (d / name).write_text(render(CYRUS_DIR, f"{name}.j2", **ctx))
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
            self.add_service(LogListener(d / "log/log.sock", d / "log/syslog.log"))
            master = [str(CYRUS_DIR / "private-log.sh"), str(d / "log/log.sock"), *master]
            self.log_mode = "private /dev/log"
        self.spawn(master, d / "log/master.out", env=env_vars)
        self.wait_ready(15, lambda deadline: probe("127.0.0.1", ports["imap"], b"* OK", deadline),
                        lambda deadline: probe_http("127.0.0.1", ports["https"], deadline, tls=True))
        self._create_mailboxes(ports["imap"])
        return Target(
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

    def _create_mailboxes(self, port: int) -> None:
        from ..protocols.imap import ImapConnection
        from ..transcript import Transcript

        conn = ImapConnection("127.0.0.1", port, transcript=Transcript(secrets={self.admin[1]}), tls="none",
                              ssl_context=None, timeout=10, label="provision")
        try:
            conn.read_greeting()
            if not conn.login(*self.admin).ok:
                raise HarnessError(f"admin login failed on {self.target_name}: {self.log_tail()}")
            for user, _ in ACCOUNTS:
                for box in ("", "/Drafts", "/Sent", "/Trash"):
                    use = f" (USE (\\{box[1:]}))" if box else ""
                    res = conn.command(f"CREATE user/{user}{box}{use}")
                    if not res.ok and "exists" not in res.tagged.first_line.lower():
                        raise HarnessError(f"CREATE user/{user}{box} failed: {res.tagged.first_line}")
            conn.command("LOGOUT")
        finally:
            conn.close()
