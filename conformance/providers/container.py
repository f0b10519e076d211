"""The `container` provider: reference servers of other versions in locally built container images.

``--target dovecot-2.3`` (Debian 12 packages), ``--target dovecot-2.4`` (Debian 13, IMAP4rev2) and
``--target cyrus-3.10`` (Debian 13's source rebuilt with WebSockets, so JMAP push works); the images come
from ``images.py`` (built once, locally, without a registry).

Containers run with host networking and listen on 127.0.0.1 ports chosen at start (nothing is published
on other addresses and the engine needs no bridge or iptables: see scripts/dockerd-up). The provider
renders the server configuration into a host directory mounted at /lemonade, starts the container with
testcontainers, waits on protocol probes, and relays submission to the same SMTP sink as the embedded
target. testcontainers' registry-needing defaults are switched off (Ryuk reaper disabled, connection mode
docker_host: /.dockerenv misleads its Docker-in-Docker detection). Podman works through DOCKER_HOST.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import HarnessError
from ..targets import Account, Endpoint, Target, TlsPolicy
from .base import ACCOUNTS, SERVERS_DIR, Provider, free_port, make_certificate, probe, probe_http, render
from .dovecot import load_settings, write_passwd
from .images import IMAGES, base_tag, ensure_image
from .smtpsink import SmtpSink

# testcontainers reads these when first imported; set them before that happens
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")

MOUNT = "/lemonade"


class ContainerProvider(Provider):
    """Starts one server container (host networking, 127.0.0.1, free ports) and stops it."""

    keep_pattern = "*"

    def __init__(self, name: str, depth: str = "quick", keep_logs: Path | None = None,
                 settings: dict[str, Any] | None = None) -> None:
        if name not in IMAGES:
            raise HarnessError(f"no container image named {name}")
        super().__init__(name, depth, keep_logs)
        self.spec = IMAGES[name]
        self.settings = load_settings(depth) if self.spec.kind == "dovecot" else {}
        self.settings.update(settings or {})
        self.container = None
        self.sink: SmtpSink | None = None

    def prepare(self) -> str:
        return ensure_image(self.spec.name)

    def start_once(self, tag: str) -> Target:
        from testcontainers.core.config import testcontainers_config
        from testcontainers.core.container import DockerContainer

        testcontainers_config.ryuk_disabled = True
        d = self.make_dir()
        os.chmod(d, 0o755)
        os.chmod(d / "log", 0o777)
        make_certificate(d)
        write_passwd(d)
        self.sink = self.add_service(SmtpSink(spool=d / "sink"))
        if self.spec.kind == "dovecot":
            ports = {"imap": free_port(), "imaps": free_port(), "submission": free_port()}
            template_dir = self.spec.directory if (self.spec.directory / "dovecot.conf.j2").exists() \
                else SERVERS_DIR / "dovecot"
            conf = render(template_dir, "dovecot.conf.j2", instance=f"{self.spec.name}-{ports['imap']}",
                          dir=MOUNT, ports=ports, sink_port=self.sink.port, settings=self.settings,
                          internal_user="dovecot", internal_group="dovecot", login_user="dovenull",
                          mail_user="dovecot", mail_group="dovecot")
            (d / "dovecot.conf").write_text(conf)
            tmpfs = {f"{MOUNT}/home": "", f"{MOUNT}/run": "", f"{MOUNT}/state": ""}
        else:
            ports = {"imap": free_port(), "imaps": free_port(), "http": free_port()}  # Cyrus has no submission
            for tname in ("imapd.conf.j2", "cyrus.conf.j2"):
                (d / tname.removesuffix(".j2")).write_text(render(
                    self.spec.directory, tname, dir=MOUNT, ports=ports, sink_port=self.sink.port))
            tmpfs = {f"{MOUNT}/spool": "", f"{MOUNT}/conf": "", f"{MOUNT}/run": ""}
        self.ports = ports
        c = DockerContainer(tag)
        c.with_volume_mapping(str(d), MOUNT, "rw")
        c.tmpfs.update(tmpfs)
        c.with_kwargs(network_mode="host", labels={"org.lemonade.target": self.spec.name},
                      init=False, stop_signal="SIGTERM")
        self.container = c
        try:
            c.start()
        except Exception as e:  # noqa: BLE001 - docker errors become one line
            raise HarnessError(f"starting {tag} failed: {str(e).splitlines()[0][:200]}") from None
        probes = [lambda deadline: probe("127.0.0.1", ports["imap"], b"* OK", deadline)]
        if "submission" in ports:
            probes.append(lambda deadline: probe("127.0.0.1", ports["submission"], b"220", deadline))
        if "http" in ports:
            probes.append(lambda deadline: probe_http("127.0.0.1", ports["http"], deadline,
                                                      path="/.well-known/jmap", below=500))
        if self.spec.kind == "cyrus":
            probes.append(lambda deadline: self._autocreate(ports["imap"]))
        self.wait_ready(20 if self.spec.kind == "dovecot" else 40, *probes)
        endpoints = {
            "imap": Endpoint("imap", "imap", "127.0.0.1", ports["imap"]),
            "imaps": Endpoint("imaps", "imaps", "127.0.0.1", ports["imaps"]),
        }
        if "submission" in ports:
            endpoints["submission"] = Endpoint("submission", "smtp", "127.0.0.1", ports["submission"])
        if "http" in ports:
            endpoints["jmap"] = Endpoint("jmap", "http", "127.0.0.1", ports["http"], "/.well-known/jmap")
        return Target(
            name=self.spec.name, endpoints=endpoints, accounts=[Account(u, p) for u, p in ACCOUNTS],
            tls=TlsPolicy(verify=False, ca_file=None), provider="container", version=self._version(),
            settings={"image": tag, "base": base_tag(self.spec.suite),
                      **{k: v for k, v in self.settings.items() if k != "extra" or v}},
            logs=[d / "log" / ("dovecot.log" if self.spec.kind == "dovecot" else "syslog")],
            sink=self.sink, workdir=d,
        )

    def _autocreate(self, port: int) -> None:
        """Cyrus creates each account's INBOX and special-use folders at its first login (autocreate_*)."""
        import imaplib

        for user, password in ACCOUNTS:
            try:
                m = imaplib.IMAP4("127.0.0.1", port, timeout=10)
                m.starttls(ssl_context=TlsPolicy(verify=False).client_context())  # allowplaintext: no
                m.login(user, password)
                m.logout()
            except (OSError, imaplib.IMAP4.error) as e:
                raise HarnessError(f"first login of {user} (creates the mailboxes) failed: {e}") from None

    def _exec(self, cmd: list[str]) -> str:
        try:
            res = self.container.get_wrapped_container().exec_run(cmd)
            return res.output.decode(errors="replace").strip() if res.exit_code == 0 else ""
        except Exception:  # noqa: BLE001
            return ""

    def _version(self) -> str:
        if self.spec.kind == "dovecot":
            v = self._exec(["dovecot", "--version"])
            return f"Dovecot {v.split()[0]}" if v else "Dovecot"
        v = self._exec(["sh", "-c", "dpkg-query -W -f '${Version}' cyrus-common"])
        return f"Cyrus IMAP {v}" if v else "Cyrus IMAP"

    def log_tail(self, n: int = 8) -> str:
        """Every file the server wrote under log/ and the container's own output."""
        text = ""
        if self.dir:
            for p in sorted((self.dir / "log").glob("*")):
                text += p.read_text(errors="replace")
        if self.container is not None:
            try:
                out, err = self.container.get_logs()
                text += (out or b"").decode(errors="replace") + (err or b"").decode(errors="replace")
            except Exception:  # noqa: BLE001
                pass
        return " | ".join(text.strip().splitlines()[-n:]) or "(empty)"

    def stop_server(self) -> None:
        if self.container is None:
            return
        try:
            # files the server wrote into the mount belong to container users: hand them back
            # (-xdev: not the tmpfs mounts below it, whose owners the server still needs while it stops)
            self._exec(["find", MOUNT, "-xdev", "-exec", "chown", f"{os.getuid()}:{os.getgid()}", "{}", "+"])
            wrapped = self.container.get_wrapped_container()
            wrapped.stop(timeout=5)
            wrapped.remove(force=True, v=True)
        except Exception:  # noqa: BLE001
            try:
                self.container.stop(force=True, delete_volume=True)
            except Exception:  # noqa: BLE001
                pass
        self.container = None
