"""A scripted fake IMAP server that misbehaves on purpose, to prove checks can fail.

Subclass ``FakeImapSession`` and override ``cmd_<verb>`` (e.g. ``cmd_idle``) or ``capabilities``; run it with
``FakeImapServer(SessionClass)`` as a context manager, which gives ``.port`` and ``.target_file(dir)``.
Every session runs in its own thread with socket timeouts, and the server stops its threads on exit.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from tests.fakes.listener import Listener

ACCOUNTS = (("alice", "alice-fake-pw"), ("bob", "bob-fake-pw"))
DEFAULT_CAPS = ("IMAP4rev1 SASL-IR ID ENABLE IDLE LITERAL+ NAMESPACE UIDPLUS ESEARCH ESORT SORT CONTEXT=SEARCH "
                "CONTEXT=SORT CONVERT I18NLEVEL=1 CONDSTORE QRESYNC NOTIFY BINARY CATENATE URLAUTH URL-PARTIAL "
                "COMPRESS=DEFLATE AUTH=PLAIN")


class FakeImapSession:
    greeting_caps: str | None = "IMAP4rev1 SASL-IR ID ENABLE IDLE LITERAL+ AUTH=PLAIN"
    capabilities: str = DEFAULT_CAPS
    greeting_text = "fake server ready"

    def __init__(self, sock: socket.socket, server: "FakeImapServer") -> None:
        self.sock = sock
        self.server = server
        self.buf = b""
        self.authenticated = False
        self.selected: str | None = None

    # -- wire helpers ------------------------------------------------------------------------------
    def send(self, line: str | bytes) -> None:
        data = line if isinstance(line, bytes) else line.encode()
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        self.sock.sendall(data)

    def readline(self) -> bytes | None:
        while b"\r\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, OSError):
                return None
            if not chunk:
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def read_literal(self, n: int) -> bytes | None:
        while len(self.buf) < n:
            try:
                chunk = self.sock.recv(65536)
            except (socket.timeout, OSError):
                return None
            if not chunk:
                return None
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    # -- loop ------------------------------------------------------------------------------------
    def run(self) -> None:
        code = f"[CAPABILITY {self.greeting_caps}] " if self.greeting_caps else ""
        self.send(f"* OK {code}{self.greeting_text}")
        while not self.server.stopping.is_set():
            line = self.readline()
            if line is None:
                return
            text = line.decode("utf-8", "replace")
            parts = text.split(" ", 2)
            if len(parts) < 2:
                self.send("* BAD missing command")
                continue
            tag, verb = parts[0], parts[1].upper()
            args = parts[2] if len(parts) > 2 else ""
            if verb == "UID" and args:
                sub, _, rest = args.partition(" ")
                verb, args = f"UID_{sub.upper()}", rest
            handler = getattr(self, f"cmd_{verb.lower()}", None)
            if handler is None:
                self.send(f"{tag} BAD unknown command {verb}")
                continue
            if handler(tag, args) is False:
                return

    # -- default commands ------------------------------------------------------------------------
    def cmd_capability(self, tag: str, args: str):
        self.send(f"* CAPABILITY {self.capabilities if self.authenticated else self.greeting_caps or self.capabilities}")
        self.send(f"{tag} OK CAPABILITY completed")

    def cmd_noop(self, tag: str, args: str):
        self.send(f"{tag} OK NOOP completed")

    def cmd_login(self, tag: str, args: str):
        self.authenticated = True
        self.send(f"{tag} OK [CAPABILITY {self.capabilities}] Logged in")

    def cmd_authenticate(self, tag: str, args: str):
        if " " not in args.strip():
            self.send("+ ")
            if self.readline() is None:
                return False
        self.authenticated = True
        self.send(f"{tag} OK [CAPABILITY {self.capabilities}] Logged in")

    def cmd_logout(self, tag: str, args: str):
        self.send("* BYE logging out")
        self.send(f"{tag} OK LOGOUT completed")
        return False

    def cmd_enable(self, tag: str, args: str):
        self.send(f"* ENABLED {args}")
        self.send(f"{tag} OK ENABLE completed")

    def cmd_create(self, tag: str, args: str):
        self.send(f"{tag} OK CREATE completed")

    def cmd_delete(self, tag: str, args: str):
        self.send(f"{tag} OK DELETE completed")

    def cmd_select(self, tag: str, args: str):
        self.selected = args.split(" ")[0].strip('"')
        self.send("* 0 EXISTS")
        self.send("* OK [UIDVALIDITY 1] UIDs valid")
        self.send("* OK [UIDNEXT 1] Predicted next UID")
        self.send("* OK [HIGHESTMODSEQ 1] Highest")
        self.send(f"{tag} OK [READ-WRITE] SELECT completed")

    cmd_examine = cmd_select

    def cmd_idle(self, tag: str, args: str):
        self.send("+ idling")
        line = self.readline()
        if line is None:
            return False
        self.send(f"{tag} OK IDLE completed")

    def cmd_append(self, tag: str, args: str):
        import re

        m = re.search(r"\{(\d+)(\+?)\}$", args)
        if m:
            if not m.group(2):
                self.send("+ OK")
            if self.read_literal(int(m.group(1))) is None:
                return False
            self.readline()
        self.send(f"{tag} OK [APPENDUID 1 1] APPEND completed")


class FakeImapServer:
    """Serves ``session_cls`` sessions on 127.0.0.1 (``port``), one thread each (``listener.Listener``); a context
    manager that closes every session's socket and stops its threads on exit."""

    def __init__(self, session_cls: type[FakeImapSession] = FakeImapSession, timeout: float = 10.0) -> None:
        self.session_cls = session_cls
        self.timeout = timeout
        self.listener = Listener(self._serve, timeout=timeout)
        self.port = self.listener.port
        self.stopping = self.listener.stopping
        self.sessions: list[FakeImapSession] = []

    def __enter__(self) -> "FakeImapServer":
        self.listener.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        for s in self.sessions:  # a session blocked in a read ends at once instead of at its timeout
            try:
                s.sock.close()
            except OSError:
                pass
        self.listener.__exit__(*exc)

    def _serve(self, sock: socket.socket) -> None:
        session = self.session_cls(sock, self)
        self.sessions.append(session)
        try:
            session.run()
        except ssl.SSLError:
            pass
        finally:
            if session.sock is not sock:  # the TLS socket STARTTLS made (the listener closes the one it gave)
                try:
                    session.sock.close()
                except OSError:
                    pass

    def target_file(self, directory: Path, name: str = "fake", extra_endpoints: dict[str, str] | None = None) -> Path:
        lines = [f'name = "{name}"', "[endpoints]", f'imap = "imap://127.0.0.1:{self.port}"']
        for k, v in (extra_endpoints or {}).items():
            lines.append(f'{k} = "{v}"')
        lines += ["[tls]", "verify = false"]
        for u, p in ACCOUNTS:
            lines += ["[[accounts]]", f'username = "{u}"', f'password = "{p}"']
        path = Path(directory) / f"{name}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path
