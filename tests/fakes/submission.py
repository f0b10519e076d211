"""A fake submission server (RFC 6409) with BURL (RFC 4468) resolved against the fake URLAUTH store, for failure tests.

``FakeSubmission`` speaks STARTTLS, AUTH PLAIN, SIZE, 8BITMIME, CHUNKING (BDAT) and BURL, and keeps what it would
relay in ``messages`` with the SMTP sink's ``wait_for``, so a test can hand it to a ``Target`` as its ``sink``. It is
correct by default; each class attribute breaks one rule. Every session runs in its own thread with socket timeouts.
"""

from __future__ import annotations

import base64
import re
import socket
import ssl
import threading
import time

from conformance.providers.smtpsink import SinkMessage

from .listener import Listener
from .urlauth import UrlauthStore


def resolver(imap_server, session_cls: type[UrlauthStore] = UrlauthStore):
    """The BURL resolver of a fake URLAUTH store: ``resolve(url, user)`` -> data or None."""
    s = session_cls.__new__(session_cls)
    s.server = imap_server
    return s.resolve


class FakeSubmission:
    advertise_burl = True
    size_limit = 4096
    # misbehaviours (all off: a correct MSA)
    burl_without_rcpt = False   # resolves BURL with no valid recipient
    ignore_submit_user = False  # accepts a submit+<other user> URL
    keep_partial = False        # a BURL that fails after a good chunk still relays the chunks so far
    size_declared_only = False  # judges only the SIZE= the client declared
    no_8bitmime = False         # offers BURL without 8BITMIME
    eight_bit_as_7bit = False   # relays 8-bit content without BODY=8BITMIME and unconverted
    bdat_drops_burl = False     # after a BDAT chunk, a BURL chunk is left out of the message
    adds_field = False          # adds 'X-Scanned: yes' to what it relays
    fetch_mode = ""             # 'cleartext' or 'starttls': contact the IMAP server a URL names, this way first

    def __init__(self, tls_context: ssl.SSLContext, resolve=None) -> None:
        self.tls_context = tls_context
        self.resolve = resolve or (lambda url, user: None)
        self.messages: list[SinkMessage] = []
        self.aborted: list[str] = []
        self._changed = threading.Condition()
        self.listener = Listener(self._serve)
        self.port = self.listener.port
        self.stopping = self.listener.stopping

    # -- the sink's API ------------------------------------------------------------------------------------
    def wait_for(self, predicate, timeout: float) -> SinkMessage | None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = next((m for m in self.messages if predicate(m)), None)
                left = deadline - time.monotonic()
                if found is not None or left <= 0:
                    return found
                self._changed.wait(left)

    def _relay(self, mail_from: str, rcpts: list[str], data: bytes) -> None:
        head = b"Received: from client.test by fake-submission; Thu, 01 Jan 2026 12:00:00 +0000\r\n"
        if self.adds_field:
            head += b"X-Scanned: yes\r\n"
        with self._changed:
            self.messages.append(SinkMessage(mail_from, list(rcpts), head + data))
            self._changed.notify_all()

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def __enter__(self) -> "FakeSubmission":
        self.listener.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.listener.__exit__(*exc)

    def _serve(self, sock: socket.socket) -> None:
        try:
            Session(self, sock).run()
        except (ssl.SSLError, ValueError):
            pass

    def ehlo_lines(self, tls: bool) -> list[str]:
        lines = ["fake-submission"]
        if not tls:
            lines.append("STARTTLS")
        lines += ["AUTH PLAIN", "PIPELINING", f"SIZE {self.size_limit}", "CHUNKING", "ENHANCEDSTATUSCODES"]
        if not self.no_8bitmime:
            lines.append("8BITMIME")
        if self.advertise_burl:
            lines.append("BURL imap")
        return lines


class Session:
    """One SMTP session of ``FakeSubmission``."""

    def __init__(self, server: FakeSubmission, sock: socket.socket) -> None:
        self.s, self.sock, self.buf = server, sock, b""
        self.tls, self.user = False, None
        self.reset()

    def reset(self) -> None:
        self.mail_from, self.rcpts, self.chunks, self.failed, self.had_bdat = "", [], [], False, False

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def readline(self) -> bytes | None:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def read_exact(self, n: int) -> bytes | None:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def run(self) -> None:
        self.send("220 fake-submission ESMTP")
        while not self.s.stopping.is_set():
            raw = self.readline()
            if raw is None:
                return
            line = raw.decode("utf-8", "replace")
            verb, _, arg = line.partition(" ")
            handler = getattr(self, f"cmd_{verb.lower()}", None)
            if handler is None:
                self.send("502 5.5.1 not implemented")
            elif handler(arg) is False:
                return

    def cmd_ehlo(self, arg):
        lines = self.s.ehlo_lines(self.tls)
        for i, text in enumerate(lines):
            self.send(f"250{'-' if i < len(lines) - 1 else ' '}{text}")

    def cmd_starttls(self, arg):
        self.send("220 2.0.0 go ahead")
        self.sock = self.s.tls_context.wrap_socket(self.sock, server_side=True)
        self.buf, self.tls = b"", True

    def cmd_auth(self, arg):
        mech, _, initial = arg.partition(" ")
        if not initial:
            self.send("334 ")
            initial = (self.readline() or b"").decode()
        parts = base64.b64decode(initial).split(b"\0")
        self.user = parts[1].decode() if len(parts) > 1 else ""
        self.send("235 2.7.0 authenticated")

    def cmd_mail(self, arg):
        self.reset()
        self.mail_from = arg[5:].strip()
        m = re.search(r"\bSIZE=(\d+)", arg, re.I)
        if self.s.size_declared_only and m and int(m.group(1)) > self.s.size_limit:
            self.send("552 5.3.4 declared size too big")
            return
        self.send("250 2.1.0 OK")

    def cmd_rcpt(self, arg):
        m = re.match(r"TO:<([^<>\s]+@[^<>\s]+)>", arg, re.I)
        if not m:
            self.send("501 5.1.3 bad recipient address")
            return
        self.rcpts.append(f"<{m.group(1)}>")
        self.send("250 2.1.5 OK")

    def cmd_rset(self, arg):
        self.reset()
        self.send("250 2.0.0 OK")

    def cmd_noop(self, arg):
        self.send("250 2.0.0 OK")

    def cmd_quit(self, arg):
        self.send("221 2.0.0 bye")
        return False

    def cmd_data(self, arg):
        if not self.rcpts:
            self.send("503 5.5.1 no recipients")
            return
        self.send("354 go ahead")
        data = b""
        while True:
            line = self.readline()
            if line is None:
                return False
            if line == b".":
                break
            data += (line[1:] if line.startswith(b".") else line) + b"\r\n"
        self.finish(data)

    def cmd_bdat(self, arg):
        parts = arg.split()
        chunk = self.read_exact(int(parts[0]))
        if chunk is None:
            return False
        self.chunks.append(chunk)
        self.had_bdat = True
        if len(parts) > 1 and parts[1].upper() == "LAST":
            self.finish(b"".join(self.chunks))
        else:
            self.send(f"250 2.0.0 {len(chunk)} octets")

    def cmd_burl(self, arg):
        url, _, last = arg.partition(" ")
        if not self.rcpts and not self.s.burl_without_rcpt:
            self.send("503 5.5.0 No valid recipients")
            return
        if self.s.fetch_mode:
            self.contact(url)
            self.send("554 5.6.6 IMAP URL resolution failed")
            return
        data = self.s.resolve(url, None if self.s.ignore_submit_user else self.user)
        if data is None:
            if self.s.keep_partial and self.chunks:
                self.s._relay(self.mail_from, self.rcpts, b"".join(self.chunks))
            self.failed = True
            self.send("554 5.6.6 IMAP URL resolution failed")
            return
        if not (self.s.bdat_drops_burl and self.had_bdat):
            self.chunks.append(data)
        if last.upper() == "LAST":
            if self.failed:
                self.send("503 5.5.1 an earlier chunk failed")
                return
            self.finish(b"".join(self.chunks))
        else:
            self.send(f"250 2.0.0 {len(data)} octets added")

    def finish(self, data: bytes) -> None:
        if len(data) > self.s.size_limit and not self.s.size_declared_only:
            self.send("552 5.3.4 message too big")
            self.reset()
            return
        mail_from = self.mail_from
        if self.s.eight_bit_as_7bit:
            mail_from = re.sub(r"\s*BODY=8BITMIME", "", mail_from, flags=re.I)
        self.s._relay(mail_from, self.rcpts, data)
        self.send("250 2.0.0 queued")
        self.reset()

    def contact(self, url: str) -> None:
        """Open an IMAP session to the server the URL names and speak first the way ``fetch_mode`` says."""
        m = re.match(r"imap://(?:[^@/]*@)?([^:/]+):(\d+)/", url, re.I)
        if not m:
            return
        try:
            with socket.create_connection((m.group(1), int(m.group(2))), timeout=3) as imap:
                imap.settimeout(3)
                imap.recv(1024)
                first = b"a1 STARTTLS\r\n" if self.s.fetch_mode == "starttls" else b"a1 LOGIN submit secret\r\n"
                imap.sendall(first)
                imap.recv(1024)
        except OSError:
            pass
