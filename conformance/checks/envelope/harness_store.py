"""A harness IMAP listener a submission server may contact to resolve a BURL URL that names it (RFC 5550 10.2).

It greets with STARTTLS offered and records what the submission server does first: protect the session (STARTTLS, or
a TLS ClientHello for implicit TLS) or send credentials, URLFETCH or any other command in the clear. It never
completes a handshake and never serves data: the check needs only the order. Everything it hears lands in the case
transcript (credentials redacted), under the connection label ``msa->harness-store``.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field

CAPS = "IMAP4rev1 STARTTLS URLAUTH AUTH=PLAIN"
HARMLESS = {"CAPABILITY", "NOOP", "ID"}  # commands a client may send before protecting the session


@dataclass
class Contact:
    """The first connection the submission server made: whether it protected the session first, and how."""

    protected: bool | None = None  # None: it said nothing that decides
    first: str = ""  # what decided: 'STARTTLS', 'TLS ClientHello', or the cleartext command
    lines: list[str] = field(default_factory=list)


@dataclass
class HarnessStore:
    transcript: object
    deadline: float = 5.0
    label: str = "msa->harness-store"
    port: int = 0
    contact: Contact | None = None

    def __post_init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(4)
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._done = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="harness-store", daemon=True)
        self._redactor = self.transcript.redactor()

    def start(self) -> "HarnessStore":
        self._thread.start()
        self.transcript.note(f"harness IMAP store listening on 127.0.0.1:{self.port} for the submission server")
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.deadline + 1)
        self._listener.close()

    def wait(self, timeout: float) -> Contact | None:
        """The first contact, once it decided (or ended), within ``timeout`` s; None if nobody connected."""
        self._done.wait(timeout)
        return self.contact

    # -- the listener's side -----------------------------------------------------------------------------
    def _record(self, direction: str, text: str) -> None:
        redact = self._redactor.client if direction == "C" else self._redactor.server
        self.transcript.add("direct", direction, redact(text), len(text), conn=self.label)

    def _accept(self) -> None:
        while not self._stop.is_set() and self.contact is None:
            try:
                sock, _ = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            self.contact = Contact()
            try:
                self._serve(sock, self.contact)
            except OSError as e:
                self.contact.lines.append(f"connection ended: {e}")
            finally:
                sock.close()
                self._done.set()

    def _serve(self, sock: socket.socket, contact: Contact) -> None:
        end = time.monotonic() + self.deadline

        def send(line: str) -> None:
            self._record("S", line)
            sock.sendall(line.encode() + b"\r\n")

        send(f"* OK [CAPABILITY {CAPS}] lemonade harness store")
        buf = b""
        while time.monotonic() < end and contact.protected is None:
            sock.settimeout(max(0.05, end - time.monotonic()))
            try:
                chunk = sock.recv(4096)
            except (socket.timeout, TimeoutError):
                return
            if not chunk:
                contact.lines.append("closed without deciding")
                return
            if not buf and chunk[:1] == b"\x16":
                self._record("C", f"TLS ClientHello ({len(chunk)} octets)")
                contact.protected, contact.first = True, "TLS ClientHello"
                return
            buf += chunk
            while b"\r\n" in buf and contact.protected is None:
                raw, buf = buf.split(b"\r\n", 1)
                line = raw.decode("utf-8", "replace")
                self._record("C", line)
                contact.lines.append(self._redactor.client(line))
                tag, _, rest = line.partition(" ")
                verb = rest.split(" ", 1)[0].upper()
                if verb == "STARTTLS":
                    contact.protected, contact.first = True, "STARTTLS"
                    send(f"{tag} OK Begin TLS negotiation now")
                elif verb in HARMLESS:
                    if verb == "CAPABILITY":
                        send(f"* CAPABILITY {CAPS}")
                    send(f"{tag} OK {verb} completed")
                else:
                    contact.protected, contact.first = False, f"{verb} (arguments not shown)" if verb else "a blank line"
                    send(f"{tag} NO the harness store serves nothing")
