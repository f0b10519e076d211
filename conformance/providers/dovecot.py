"""The `local` provider for the embedded default target: Dovecot 2.3 as a private process.

Renders servers/dovecot/dovecot.conf.j2 into a temporary directory, generates a self-signed
certificate, starts the SMTP sink that receives submission relays, starts ``dovecot -F`` and waits on
protocol probes (IMAP greeting, SMTP 220). Stop ends exactly the processes it started and removes the
directory (logs are copied to ``keep_logs`` first when given).
"""

from __future__ import annotations

import getpass
import grp
import os
import pwd
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

from ..errors import HarnessError
from ..targets import Account, Endpoint, Target, TlsPolicy
from .base import ACCOUNTS, SERVERS_DIR, Provider, free_port, make_certificate, probe, render
from .smtpsink import SmtpSink


def load_settings(depth: str) -> dict[str, Any]:
    data = tomllib.loads((SERVERS_DIR / "dovecot" / "settings.toml").read_text())
    if depth not in data:
        raise HarnessError(f"servers/dovecot/settings.toml has no [{depth}] table")
    return dict(data[depth])


def write_passwd(directory: Path) -> None:
    """Dovecot's passwd-file with the test accounts (``ACCOUNTS``)."""
    (directory / "passwd").write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in ACCOUNTS))


def dovecot_version() -> str:
    try:
        return subprocess.run(["dovecot", "--version"], capture_output=True, text=True, timeout=5).stdout.split()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return ""


class DovecotProvider(Provider):
    """Starts and stops one private Dovecot. ``settings`` override servers/dovecot/settings.toml keys."""

    log_files = ("dovecot.log", "stdout.log")

    def __init__(self, depth: str = "quick", settings: dict[str, Any] | None = None,
                 keep_logs: Path | None = None, name: str = "dovecot") -> None:
        super().__init__(name, depth, keep_logs)
        self.settings = load_settings(depth)
        unknown = set(settings or {}) - set(self.settings)
        if unknown:
            raise HarnessError(f"unknown Dovecot setting(s): {', '.join(sorted(unknown))}")
        self.settings.update(settings or {})
        self.sink: SmtpSink | None = None

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

    def prepare(self) -> None:
        if shutil.which("dovecot") is None:
            raise HarnessError("dovecot is not installed: run the README set-up command (apt-get install "
                               "dovecot-core dovecot-imapd dovecot-submissiond)")

    def start_once(self, prepared: None) -> Target:
        d = self.make_dir("run", "home", "state")
        users = self._users()
        make_certificate(d)
        write_passwd(d)
        self.sink = self.add_service(SmtpSink(spool=d / "sink"))
        ports = {"imap": free_port(), "imaps": free_port(), "submission": free_port()}
        conf = render(SERVERS_DIR / "dovecot", "dovecot.conf.j2",
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
        self.spawn(["dovecot", "-F", "-c", str(d / "dovecot.conf")], d / "log" / "stdout.log")
        self.wait_ready(10, lambda deadline: probe("127.0.0.1", ports["imap"], b"* OK", deadline),
                        lambda deadline: probe("127.0.0.1", ports["submission"], b"220", deadline))
        return Target(
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

    def stop(self) -> None:
        super().stop()
        self.sink = None
