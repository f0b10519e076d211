"""The driver: one client under test in one case, played through the case's path against the partner server.

``ClientSession`` prepares the client's folders (output, state, a password file only the client user can
read), builds the adapter's environment (the QUIC-interop-runner way: environment in, exit code and files
out, 127 = not supported), plays cases (``fetch-once`` and ``sync`` run to their end, ``push`` runs until
stopped), and reads what the client delivered. ``Mailbox`` is the ground truth on the partner server, made
through the suite's own IMAP client on a direct connection (never through the path under test).
"""

from __future__ import annotations

import os
import shutil
import sysconfig
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import HarnessError, NotApplicable
from ..protocols.imapwire import quote
from .adapters import Adapter
from .output import Delivery, OutputFolder
from .sandbox import NOT_SUPPORTED, Limits, SandboxedProcess, make_dirs, play_root, write_secret

PLAY_TIMEOUT = 60.0  # fetch-once and sync plays of a well-behaved client end within seconds


def partner_ca_file(target) -> str | None:
    """The CA file a client must trust to reach the partner server directly (target file's ca_file, or the
    embedded servers' self-signed certificate)."""
    if target.tls.ca_file:
        return target.tls.ca_file
    if target.workdir is not None and (Path(target.workdir) / "cert.pem").is_file():
        return str(Path(target.workdir) / "cert.pem")
    return None


@dataclass
class Play:
    """One run of the adapter: which case, when, how it ended, its own log."""

    case: str
    process: SandboxedProcess
    started_at: float  # case clock
    ended_at: float | None = None
    exit_code: int | None = None

    @property
    def not_supported(self) -> bool:
        return self.exit_code == NOT_SUPPORTED

    def summary(self) -> dict[str, Any]:
        p = self.process
        return {"case": self.case, "started": self.started_at, "ended": self.ended_at, "exit": self.exit_code,
                "stopped_by": p.stopped_by, "stray_files": p.stray_files}


class ClientSession:
    """A client under test inside one check (``case``): its plays and its deliveries."""

    def __init__(self, case, adapter: Adapter, *, account: int = 0, mailbox: str = "INBOX",
                 endpoint: str | None = None, limits: Limits | None = None, ca_file: list[str] | None = None) -> None:
        self.case = case
        self.adapter = adapter
        self.account = case.account(account)
        self.mailbox = mailbox
        self.endpoint = endpoint or self._choose_endpoint()
        self.limits = limits or Limits()
        self.root = play_root(f"{adapter.name}-{os.getpid()}")
        dirs = make_dirs(self.root, ("output", "state"))
        self.output_dir, self.state_dir = dirs["output"], dirs["state"]
        self.password_file = write_secret(self.root / "password", self.account.password)
        # a copy the client user can read (the path's CA sits in the case's private directory)
        ca_copy = self.root / "ca.pem"
        ca_copy.write_bytes(b"".join(Path(f).read_bytes().rstrip(b"\n") + b"\n" for f in ca_file or self._ca_files()))
        os.chmod(ca_copy, 0o644)
        self.ca_file = str(ca_copy)
        offset = time.time() - case.transcript.now()
        self.output = OutputFolder(self.output_dir, offset)
        self.plays: list[Play] = []
        case.on_cleanup(self.close)

    # -- environment ---------------------------------------------------------------------------
    def _choose_endpoint(self) -> str:
        target = self.case.target
        if "jmap" in self.adapter.protocols and target.endpoint("jmap") is not None:
            return "jmap"
        if "imap" in self.adapter.protocols:
            # STARTTLS on the cleartext port when the client can do it, else implicit TLS
            order = ("imap", "imaps") if "starttls" in self.adapter.supports else ("imaps",)
            if self.case.path.forward_proxy is not None and "imaps" in self.adapter.supports:
                order = ("imaps", "imap")  # behind an HTTP proxy a user picks the port a firewall lets through
            for name in order:
                if target.endpoint(name) is not None and self.case.scenario.supports(name):
                    return name
        raise NotApplicable(f"client {self.adapter.name} speaks {'/'.join(self.adapter.protocols)}; target "
                            f"{target.name} has no such endpoint under {self.case.scenario}")

    def _ca_files(self) -> list[str]:
        """The CAs a client is given: the partner's, plus the operator's reverse proxy's when the path terminates
        TLS in front of the server (a server may redirect to its own address). Never the interceptor's."""
        ca = partner_ca_file(self.case.target)
        if ca is None:
            raise NotApplicable(f"client checks need the CA of target {self.case.target.name}: give [tls] ca_file "
                                "in the target file")
        path = self.case.path
        if path.intercepts_tls and not any(e.name == "inspecting" for e in self.case.scenario.elements):
            return [path.ca_file, ca]
        return [ca]

    def server_url(self) -> tuple[str, str]:
        """(URL the client connects to, explicit HTTP proxy or '')."""
        path = self.case.path
        proxy = path.proxy_url or ""
        own = self.case.target.endpoint(self.endpoint)
        if own is None:
            raise NotApplicable(f"target {self.case.target.name} has no {self.endpoint} endpoint")
        ep = own if proxy else path.endpoint(self.endpoint)
        host = "localhost" if ep.host in ("127.0.0.1", "::1") else ep.host  # the certificates name localhost
        return f"{ep.scheme}://{host}:{ep.port}{ep.path}", proxy

    def environment(self, case_name: str) -> dict[str, str]:
        url, proxy = self.server_url()
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(self.state_dir),
            "TMPDIR": str(self.state_dir), "LEMONADE_CASE": case_name, "LEMONADE_SERVER_URL": url,
            "LEMONADE_USER": self.account.username, "LEMONADE_PASSWORD_FILE": str(self.password_file),
            "LEMONADE_CA_FILE": self.ca_file, "LEMONADE_MAILBOX": self.mailbox,
            "LEMONADE_OUTPUT": str(self.output_dir), "LEMONADE_STATE": str(self.state_dir),
            "LEMONADE_PROXY": proxy, "LEMONADE_PYTHONPATH": sysconfig.get_paths()["purelib"],
        }
        env.update(self.adapter.extra_env)
        return env

    # -- plays ---------------------------------------------------------------------------------
    def start(self, case_name: str, wall_s: float | None = None) -> Play:
        limits = self.limits if wall_s is None else Limits(**{**self.limits.__dict__, "wall_s": wall_s})
        env = self.environment(case_name)
        proc = SandboxedProcess(self.adapter.argv(), env, self.root, limits, self.output_dir,
                                scrub=self.case.transcript.redactor().scrub)
        proc.start()
        play = Play(case_name, proc, self.case.transcript.now())
        self.plays.append(play)
        self.case.note(f"client {self.adapter.name}: play '{case_name}' started (pid {proc.proc.pid}) with "
                       f"LEMONADE_SERVER_URL={env['LEMONADE_SERVER_URL']}"
                       + (f" LEMONADE_PROXY={env['LEMONADE_PROXY']}" if env["LEMONADE_PROXY"] else ""))
        return play

    def finish(self, play: Play, timeout: float | None = None) -> Play:
        """Wait for a play to end by itself (bounded by its deadline), then record how it ended."""
        play.exit_code = play.process.wait(timeout)
        if play.exit_code is None:
            return play
        self._ended(play)
        return play

    def stop(self, play: Play) -> Play:
        if play.ended_at is None:
            play.exit_code = play.process.stop("suite")
            self._ended(play)
        return play

    def _ended(self, play: Play) -> None:
        play.ended_at = self.case.transcript.now()
        p = play.process
        how = f"stopped by the suite ({p.stopped_by})" if p.stopped_by else f"exited with {play.exit_code}"
        self.case.note(f"client {self.adapter.name}: play '{play.case}' {how} after "
                       f"{play.ended_at - play.started_at:.2f} s")
        if p.stray_files:
            self.case.note(f"client {self.adapter.name} wrote outside its folders: {', '.join(p.stray_files[:5])}")
        self.scan()
        self.case.attach("client_log", self.logs())
        self.case.attach("client_plays", [pl.summary() for pl in self.plays])
        if play.not_supported:
            raise NotApplicable(f"client {self.adapter.name} does not support case '{play.case}' "
                                f"(adapter exited 127): {p.log().strip().splitlines()[-1:] or ''}")

    def play(self, case_name: str, timeout: float = PLAY_TIMEOUT) -> Play:
        """A play that must end by itself (fetch-once, sync)."""
        play = self.start(case_name, wall_s=timeout)
        return self.finish(play)

    def logs(self) -> str:
        parts = []
        for pl in self.plays:
            parts.append(f"--- play '{pl.case}' at t={pl.started_at:.3f} (exit {pl.exit_code}) ---\n{pl.process.log()}")
        text = "\n".join(parts)
        return text[-60000:]

    # -- deliveries -----------------------------------------------------------------------------
    def scan(self) -> list[Delivery]:
        return self.output.scan()

    def wait_for(self, mids: set[str], timeout: float, play: Play | None = None) -> dict[str, Delivery]:
        """Deliveries of the given Message-IDs, waiting at most ``timeout`` (returns early when all arrived or
        the play ended)."""
        deadline = time.monotonic() + timeout
        while True:
            self.scan()
            got = {m: d for m in mids if (d := self.output.first(m)) is not None}
            if len(got) == len(mids) or time.monotonic() >= deadline:
                return got
            if play is not None and not play.process.running():
                self.scan()
                return {m: d for m in mids if (d := self.output.first(m)) is not None}
            time.sleep(0.1)

    def close(self) -> None:
        for pl in self.plays:
            if pl.ended_at is None:
                try:
                    pl.exit_code = pl.process.stop("suite")
                except Exception:  # noqa: BLE001 - cleanup goes on
                    pass
        shutil.rmtree(self.root, ignore_errors=True)


# -- ground truth on the partner server ---------------------------------------------------------
def new_message(tag: str, size: int = 0) -> tuple[str, bytes]:
    """(Message-ID, message) unique per call, with an optional body of ``size`` octets."""
    mid = f"<{tag}-{uuid.uuid4().hex[:16]}@lemonade.test>"
    body = b"A message for the client under test.\r\n"
    if size:
        line = b"x" * 76 + b"\r\n"
        body += line * (size // len(line))
    head = (f"From: suite@lemonade.test\r\nTo: client@lemonade.test\r\nSubject: lemonade client check {tag}\r\n"
            f"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: {mid}\r\n\r\n").encode()
    return mid, head + body


@dataclass
class Mailbox:
    """A scratch mailbox on the partner server that only this case uses, and what the suite put in it."""

    case: Any
    account: int = 0
    name: str = ""
    appended: dict[str, float] = field(default_factory=dict)  # Message-ID -> case clock of the APPEND's OK
    expunged: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.conn = self.case.imap(self.account, via_path=False, label="suite")
        if not self.name:
            self.name = self.case.scratch_mailbox(self.conn, prefix="client")

    def append(self, tag: str, size: int = 0) -> str:
        mid, data = new_message(tag, size)
        res = self.conn.command(f"APPEND {quote(self.name)} {{{len(data)}}}", literal=data)
        if not res.ok:
            raise HarnessError(f"the suite could not APPEND to {self.name}: {res.tagged.first_line}")
        self.appended[mid] = self.case.transcript.now()
        return mid

    def append_many(self, tag: str, n: int, size: int = 0) -> list[str]:
        return [self.append(f"{tag}{i}", size) for i in range(n)]
