"""The change-maker of a load run: APPENDs into each watched mailbox at a chosen rate, on the direct path.

Every APPEND's send time is the clock the sessions' notifications are timed against, so the change-maker's
connection never crosses the intermediary under test. It creates a fresh mailbox per account (the run's and
shard's name in it), and deletes it at the end.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass, field

from ..protocols.imapwire import quote, response_code
from .session import MailboxLog
from .wire import AsyncImap, Dropped, Octets, Refused

MESSAGE = ("From: load@example.org\r\nTo: {account}@example.org\r\nSubject: change {n}\r\n"
           "Message-ID: <load-{mailbox}-{n}@lemonade.invalid>\r\n\r\nchange {n} of a load run\r\n")


@dataclass
class ChangeMaker:
    log: MailboxLog
    password: str = field(repr=False)
    address: tuple[str, int]
    tls: ssl.SSLContext | None = None
    deadline_s: float = 10.0
    octets: Octets = field(default_factory=Octets)
    append_s: list[float] = field(default_factory=list)
    conn: AsyncImap | None = None
    literal_plus: bool = False
    error: str = ""

    async def setup(self) -> None:
        """Log in and create the watched mailbox (empty, so message k is sequence number k)."""
        self.conn = await AsyncImap.connect(*self.address, self.octets, self.deadline_s, self.tls,
                                            server_hostname=self.address[0])
        greeting = await self.conn.next_response(self.deadline_s)
        if greeting.status == "BYE":
            raise Refused("greeting", greeting.first_line[:200])
        r = await self.conn.login(self.log.account, self.password, self.deadline_s)
        if r.status != "OK":
            raise Refused("login", f"change-maker could not log in as {self.log.account}")
        caps = await self.conn.command("CAPABILITY", self.deadline_s)
        self.literal_plus = any("LITERAL+" in u.first_line.upper() for u in caps.untagged)
        created = await self.conn.command(f"CREATE {quote(self.log.name)}", self.deadline_s)
        if created.status != "OK":
            raise Refused("create", created.tagged.first_line[:200])

    async def append(self, n: int) -> None:
        """APPEND message n; its send time and UID go into the log (nothing when the server refuses it)."""
        assert self.conn is not None
        body = MESSAGE.format(account=self.log.account, mailbox=self.log.name, n=n).encode()
        self.conn.n += 1
        tag = f"A{self.conn.n}"
        t0 = time.monotonic()
        self.log.sent_at.append(t0)
        if self.literal_plus:
            self.conn.send(f"{tag} APPEND {quote(self.log.name)} {{{len(body)}+}}\r\n".encode() + body + b"\r\n")
        else:
            self.conn.send(f"{tag} APPEND {quote(self.log.name)} {{{len(body)}}}\r\n".encode())
            while not (await self.conn.next_response(self.deadline_s)).is_continuation:
                pass
            self.conn.send(body + b"\r\n")
        while True:
            r = await self.conn.next_response(self.deadline_s)
            if r.tag == tag:
                break
        if r.status != "OK":
            self.log.sent_at.pop()  # no message, no sequence number: the sessions' clock stays aligned
            self.log.failures += 1
            self.error = r.first_line[:200]
            return
        code = (response_code(r, "APPENDUID") or "").split()
        self.log.uids.append(int(code[1]) if len(code) == 2 and code[1].isdigit() else 0)
        self.log.done_at.append(time.monotonic())
        self.append_s.append(self.log.done_at[-1] - t0)

    async def run(self, rate: float, until: float, stopping) -> None:
        """APPEND at ``rate`` per second until the monotonic time ``until`` (or ``stopping()``)."""
        start = time.monotonic()
        n = 0
        while not stopping():
            at = start + n / rate
            if at >= until:
                break
            if at > time.monotonic():
                await asyncio.sleep(at - time.monotonic())
            n += 1
            try:
                await self.append(n)
            except (Dropped, Refused, OSError) as e:
                self.error = f"change-maker: {e}"
                return

    async def cleanup(self) -> None:
        """Delete the mailbox the run created and log out (best effort, bounded)."""
        if self.conn is None:
            return
        try:
            await self.conn.command(f"DELETE {quote(self.log.name)}", self.deadline_s)
            await self.conn.command("LOGOUT", 2.0)
        except (Dropped, Refused, OSError):
            pass
        finally:
            self.conn.close()
