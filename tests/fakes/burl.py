"""A fake Lemonade pair for the BURL check: a message store with URLAUTH, and a submission server with BURL whose relay
is observable, each able to misbehave on purpose.

``BurlStore`` (a ``StoreSession``) answers GENURLAUTH with the URL plus an access token and keeps a registry of the
URLs it authorised; ``keywords_lost`` makes it drop $Submitted from a STORE (a store that cannot keep the Lemonade
keyword). ``BurlSubmission`` speaks EHLO/STARTTLS/AUTH/MAIL/RCPT/BURL ... LAST, fetches the message a BURL names from
the store and relays it into ``Relay`` (what ``case.target.sink`` offers a check) with a Received field prepended;
``alter`` names a header it prepends as well (an MSA that changes a signed message in transit); ``alter_body`` makes
it turn the message's CRLF line ends into LF (a gateway that "normalises" them).
"""

from __future__ import annotations

import re
import ssl
import threading
import time
from dataclasses import dataclass

from .imap import DEFAULT_CAPS, FakeImapServer
from .lemonade_store import StoreSession
from .smtp import FakeSmtp, Lines


@dataclass
class Relayed:
    mail_from: str
    rcpt_to: list[str]
    data: bytes


class Relay:
    """What the submission server relayed: ``wait_for(predicate, timeout)`` as the embedded target's SMTP sink."""

    def __init__(self) -> None:
        self.messages: list[Relayed] = []
        self.aborted: list[str] = []
        self.changed = threading.Condition()

    def keep(self, msg: Relayed) -> None:
        with self.changed:
            self.messages.append(msg)
            self.changed.notify_all()

    def wait_for(self, predicate, timeout: float) -> Relayed | None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                found = next((m for m in self.messages if predicate(m)), None)
                left = deadline - time.monotonic()
                if found is not None or left <= 0:
                    return found
                self.changed.wait(left)


class BurlStore(StoreSession):
    capabilities = DEFAULT_CAPS  # with URLAUTH
    keywords_lost = False

    def apply_flags(self, msg, op: str, flags: list[str]) -> None:
        if self.keywords_lost:
            flags = [f for f in flags if f.upper() != "$SUBMITTED"]
        StoreSession.apply_flags(msg, op, flags)

    def cmd_uid_store(self, tag, args):
        m = re.match(r"(\d+) FLAGS\.SILENT \(([^)]*)\)", args, re.I)  # the check's replacing STORE
        msg = self.by_uid(int(m.group(1))) if m else None
        if msg is not None:
            self.apply_flags(msg, "", m.group(2).split())
            self.send(f"{tag} OK STORE completed")
            return
        super().cmd_uid_store(tag, args)

    def cmd_genurlauth(self, tag, args):
        m = re.match(r'"([^"]+)" INTERNAL', args, re.I)
        if not m:
            self.send(f"{tag} BAD GENURLAUTH \"url\" INTERNAL expected")
            return
        url = f"{m.group(1)}:internal:0123456789abcdef0123456789abcdef"
        self.server.__dict__.setdefault("authorised", {})[url] = m.group(1)
        self.send(f'* GENURLAUTH "{url}"')
        self.send(f"{tag} OK GENURLAUTH completed")


class BurlSubmission(FakeSmtp):
    """Submission with STARTTLS, AUTH PLAIN and BURL imap that relays into ``relay`` what the store holds."""

    def __init__(self, store: FakeImapServer, relay: Relay, tls_context: ssl.SSLContext, alter: str = "",
                 alter_body: bool = False) -> None:
        super().__init__(tls_context)
        self.store, self.relay, self.alter, self.alter_body = store, relay, alter, alter_body

    def _resolve(self, url: str) -> bytes | None:
        rump = self.store.__dict__.get("authorised", {}).get(url)
        m = re.search(r"/([^/;]+);UIDVALIDITY=\d+/;UID=(\d+)", rump or "")
        box = self.store.__dict__.get("boxes", {}).get(m.group(1)) if m else None
        msg = next((x for x in box.msgs if x.uid == int(m.group(2))), None) if box else None
        return msg.data if msg else None

    def session(self, lines: Lines) -> None:
        tls, mail_from, rcpt = False, "", []
        lines.send(b"220 fake.test ESMTP burl\r\n")
        while not self.stopping.is_set():
            cmd = lines()
            if cmd is None:
                return
            verb, _, arg = cmd.decode(errors="replace").partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                extra = b"250-AUTH PLAIN\r\n250-BURL imap\r\n" if tls else b"250-STARTTLS\r\n"
                lines.send(b"250-fake.test\r\n" + extra + b"250 8BITMIME\r\n")
            elif verb == "STARTTLS":
                lines.send(b"220 2.0.0 go ahead\r\n")
                lines.wrap(self.tls_context)
                tls = True
            elif verb == "AUTH":
                lines.send(b"235 2.7.0 authenticated\r\n")
            elif verb == "MAIL":
                mail_from, rcpt = arg, []
                lines.send(b"250 2.1.0 OK\r\n")
            elif verb == "RCPT":
                rcpt.append(arg.split(":", 1)[-1].strip("<>"))
                lines.send(b"250 2.1.5 OK\r\n")
            elif verb == "BURL":
                data = self._resolve(arg.rsplit(" ", 1)[0])
                if data is None:
                    lines.send(b"554 5.7.0 BURL URL cannot be resolved\r\n")
                    continue
                head = b"Received: from client.test by fake.test with ESMTPSA; Thu, 1 Jan 2026 00:00:00 +0000\r\n"
                if self.alter:
                    head += self.alter.encode() + b"\r\n"
                if self.alter_body:
                    data = data.replace(b"\r\n", b"\n")
                self.relay.keep(Relayed(mail_from, list(rcpt), head + data))
                lines.send(b"250 2.0.0 relayed\r\n")
            elif verb == "QUIT":
                lines.send(b"221 bye\r\n")
                return
            else:
                lines.send(b"250 2.0.0 OK\r\n")
