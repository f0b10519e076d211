"""Scripted fakes for the transport checks: IMAP and SMTP servers whose STARTTLS is injectable on purpose.

The classic bug (CVE-2011-0411 and the 2021 EAST findings): the server reads ``STARTTLS\\r\\nINJECTED\\r\\n`` in
one read, starts TLS, and then runs what is left in its cleartext input buffer as if it had arrived inside
TLS. The vulnerable fakes also keep advertising STARTTLS after TLS, accept LOGIN while advertising
LOGINDISABLED, do not reset state after STARTTLS and answer a second STARTTLS with NO. ``vulnerable=False``
behaves correctly, so the same fakes prove the checks also pass when they should. ``vulnerable="cleartext"`` is
the other classic: the server runs what followed STARTTLS at once, in cleartext, and answers it in a segment of its
own after the OK (so the client's TLS handshake then fails on the answer); otherwise it behaves correctly.
``vulnerable="leaky"`` behaves correctly except that its cleartext denials tell a valid password from a wrong one.
"""

from __future__ import annotations

import base64
import socket
import ssl
import tempfile
import threading
import time
from pathlib import Path

from tests.fakes.imap import ACCOUNTS, FakeImapServer, FakeImapSession


def server_context(directory: Path, names: tuple[str, ...] = ("localhost",)) -> ssl.SSLContext:
    from conformance.providers.base import make_certificate

    make_certificate(directory, names)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return ctx


class InjectableImapSession(FakeImapSession):
    """IMAP with STARTTLS and LOGINDISABLED; keeps (vulnerable) or drops the bytes read after STARTTLS."""

    greeting_caps = "IMAP4rev1 STARTTLS LOGINDISABLED"
    capabilities = "IMAP4rev1 IDLE AUTH=PLAIN"
    vulnerable = True

    def __init__(self, sock, server) -> None:
        super().__init__(sock, server)
        self.tls = False

    def cmd_capability(self, tag: str, args: str):
        caps = self.capabilities if self.tls else self.greeting_caps
        if self.tls and self.vulnerable is True:
            caps += " STARTTLS"
        self.send(f"* CAPABILITY {caps}")
        self.send(f"{tag} OK CAPABILITY completed")

    def cmd_starttls(self, tag: str, args: str):
        if self.tls:
            self.send(f"{tag} {'NO' if self.vulnerable is True else 'BAD'} TLS already active")
            return
        self.send(f"{tag} OK Begin TLS negotiation now")
        if self.vulnerable == "cleartext":
            time.sleep(0.1)  # a later segment: the client has read the OK and started its handshake
            while b"\r\n" in self.buf:
                line, _, self.buf = self.buf.partition(b"\r\n")
                self.send(f"{line.split(b' ', 1)[0].decode()} OK NOOP completed (in cleartext)")
        if not self.vulnerable:
            self.buf = b""
        self.sock = self.server.tls_context.wrap_socket(self.sock, server_side=True)
        self.tls = True

    def cmd_login(self, tag: str, args: str):
        if not self.tls and self.vulnerable == "leaky" and not any(f'"{p}"' in args for _, p in ACCOUNTS):
            self.send(f"{tag} NO [AUTHENTICATIONFAILED] wrong password")
            return
        if not self.tls and self.vulnerable is not True:
            self.send(f"{tag} NO [PRIVACYREQUIRED] LOGINDISABLED")
            return
        super().cmd_login(tag, args)

    def cmd_select(self, tag: str, args: str):
        if not self.authenticated and self.vulnerable is not True:
            self.send(f"{tag} NO not authenticated")
            return
        super().cmd_select(tag, args)


class InjectableSmtpServer:
    """A submission fake: EHLO with STARTTLS, STARTTLS that keeps (vulnerable) or drops the pending input."""

    def __init__(self, tls_context: ssl.SSLContext, vulnerable: bool | str = True) -> None:
        self.tls_context = tls_context
        self.vulnerable = vulnerable
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> "InjectableSmtpServer":
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self.threads.append(t)
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(2)
        self.listener.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            sock.settimeout(5)
            t = threading.Thread(target=self._session, args=(sock,), daemon=True)
            t.start()
            self.threads.append(t)

    def _session(self, sock: socket.socket) -> None:
        buf, tls, greeted = b"", False, False
        try:
            sock.sendall(b"220 fake.test ESMTP injectable\r\n")
            while not self.stopping.is_set():
                while b"\r\n" not in buf:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                line, _, buf = buf.partition(b"\r\n")
                verb = line.split(b" ", 1)[0].upper()
                if verb == b"EHLO":
                    offer = not tls or self.vulnerable is True
                    sock.sendall(b"250-fake.test\r\n" + (b"250-STARTTLS\r\n" if offer else b"") + b"250 PIPELINING\r\n")
                    greeted = True
                elif verb == b"STARTTLS" and tls:
                    sock.sendall(b"503 5.5.1 TLS already active\r\n")
                elif verb == b"STARTTLS":
                    sock.sendall(b"220 2.0.0 go ahead\r\n")
                    if self.vulnerable == "cleartext":
                        time.sleep(0.1)  # a segment of its own, after the client has read the 220
                        while b"\r\n" in buf:
                            _, _, buf = buf.partition(b"\r\n")
                            sock.sendall(b"250 2.0.0 OK (in cleartext)\r\n")
                    if self.vulnerable is not True:
                        buf, greeted = b"", False
                    sock = self.tls_context.wrap_socket(sock, server_side=True)
                    tls = True
                elif verb == b"AUTH" and not tls:
                    good = any(base64.b64encode(f"\0{u}\0{p}".encode()) in line for u, p in ACCOUNTS)
                    leaky = self.vulnerable == "leaky" and not good
                    sock.sendall(b"535 5.7.8 wrong password\r\n" if leaky else b"530 5.7.0 TLS required\r\n")
                elif verb == b"MAIL":
                    sock.sendall(b"250 2.1.0 OK\r\n" if greeted else b"503 5.5.1 EHLO first\r\n")
                elif verb == b"NOOP":
                    sock.sendall(b"250 2.0.0 OK\r\n")
                elif verb == b"QUIT":
                    sock.sendall(b"221 bye\r\n")
                    return
                else:
                    sock.sendall(b"502 5.5.1 not here\r\n")
        except (OSError, ssl.SSLError):
            pass
        finally:
            try:
                sock.close()
            except OSError:
                pass


class InjectableServers:
    """IMAP + submission fakes with one target file: ``with InjectableServers(vulnerable=True) as s: s.target_file(d)``."""

    def __init__(self, vulnerable: bool | str = True) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="lemonade-fake-tls-"))
        self.ctx = server_context(self.dir)
        session = type("Session", (InjectableImapSession,), {"vulnerable": vulnerable})
        self.imap = FakeImapServer(session)
        self.imap.tls_context = self.ctx  # type: ignore[attr-defined]
        self.smtp = InjectableSmtpServer(self.ctx, vulnerable)

    def __enter__(self) -> "InjectableServers":
        self.imap.__enter__()
        self.smtp.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.imap.__exit__(*exc)
        self.smtp.__exit__(*exc)
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)

    def target_file(self, directory: Path) -> Path:
        return self.imap.target_file(directory, name="fake-starttls",
                                     extra_endpoints={"submission": f"smtp://127.0.0.1:{self.smtp.port}"})


class PreauthImapsSession(InjectableImapSession):
    """Implicit TLS that misbehaves twice: a PREAUTH greeting, and OK to STARTTLS inside TLS."""

    def run(self) -> None:
        self.sock = self.server.tls_context.wrap_socket(self.sock, server_side=True)
        self.tls = True
        self._greeting = True
        super().run()

    def send(self, line) -> None:
        if getattr(self, "_greeting", False):
            self._greeting = False
            line = line.replace("* OK", "* PREAUTH", 1)
        super().send(line)

    def cmd_starttls(self, tag: str, args: str):
        self.send(f"{tag} OK Begin TLS negotiation now")


class ImapsSession(InjectableImapSession):
    """Implicit TLS that behaves: an OK greeting inside TLS, BAD to STARTTLS."""

    vulnerable = False

    def run(self) -> None:
        self.sock = self.server.tls_context.wrap_socket(self.sock, server_side=True)
        self.tls = True
        super().run()


class PreauthImapsServer:
    """An implicit-TLS IMAP fake (PreauthImapsSession by default) with its target file; ``names`` are the DNS names
    its self-signed certificate carries (plus 127.0.0.1), ``host`` the name the target file connects to."""

    def __init__(self, session: type = PreauthImapsSession, names: tuple[str, ...] = ("localhost",),
                 host: str = "127.0.0.1") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="lemonade-fake-imaps-"))
        self.imap = FakeImapServer(session)
        self.imap.tls_context = server_context(self.dir, names)  # type: ignore[attr-defined]
        self.host = host

    def __enter__(self) -> "PreauthImapsServer":
        self.imap.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.imap.__exit__(*exc)
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)

    def target_file(self, directory: Path, *, name: str = "fake-imaps", trust_own_certificate: bool = False) -> Path:
        """A target file for the fake; with ``trust_own_certificate`` its certificate is the trust anchor."""
        tls = f'ca_file = "{self.dir / "cert.pem"}"\n' if trust_own_certificate else "verify = false\n"
        path = Path(directory) / f"{name}.toml"
        path.write_text(f'name = "{name}"\n[endpoints]\nimaps = "imaps://{self.host}:{self.imap.port}"\n'
                        f'[tls]\n{tls}[[accounts]]\nusername = "alice"\npassword = "alice-fake-pw"\n')
        return path


class PreauthPlainSession(FakeImapSession):
    """Cleartext IMAP whose greeting is PREAUTH: an attacker on the path gets an authenticated session."""

    def send(self, line) -> None:
        if not getattr(self, "_greeted", False):
            self._greeted = True
            line = line.replace("* OK", "* PREAUTH", 1)
        super().send(line)
