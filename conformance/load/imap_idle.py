"""An IMAP IDLE session of the load client: log in, select with QRESYNC, idle, time every EXISTS, resync after a drop.

A session behaves like a phone's push channel: it idles on one mailbox, takes every ``* n EXISTS`` as a
notification (timed against the moment the change-maker sent the APPEND that made message n), tracks how long
the line stays silent (keepalive gaps), declares the connection dead after ``dead_after`` seconds of silence
(a silent drop noticed), and reconnects at once after a drop (``session.PushSession.run``), resynchronising
with QRESYNC (RFC 7162) from the UIDVALIDITY/HIGHESTMODSEQ of its previous SELECT. The resync must report
every message appended since (UIDs at or above the previous UIDNEXT): one it does not report is a change lost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..protocols.imapwire import parse_capabilities, parse_exists, parse_fetch, quote, response_code
from .session import PushSession, Resync
from .wire import AsyncImap, Dropped, Refused

if TYPE_CHECKING:
    from .engine import Engine


@dataclass(kw_only=True)
class Session(PushSession):
    """One IMAP IDLE session."""

    password: str = field(repr=False)
    uidvalidity: int = 0
    highestmodseq: int = 0
    uidnext: int = 0
    qresync: bool = False

    resync_method = "qresync"

    async def start(self, engine: Engine, resync: Resync | None) -> None:
        self.conn = await AsyncImap.connect(*self.address, self.octets, engine.plan.deadline_s, self.tls,
                                            server_hostname=self.address[0])
        self.connects += 1
        await self._open(self.conn, engine, resync)

    async def listen(self, engine: Engine) -> None:
        await self._idle(self.conn, engine)

    async def _open(self, conn: AsyncImap, engine: Engine, resync: Resync | None) -> None:
        deadline = engine.plan.deadline_s
        greeting = await conn.next_response(deadline)
        if greeting.status == "BYE":
            raise Refused("greeting", greeting.first_line[:200])
        caps = parse_capabilities(greeting.first_line)
        login = await conn.login(self.account, self.password, deadline)
        if login.status != "OK":
            raise Refused("login", login.tagged.first_line[:200].replace(self.password, "***"))
        caps = parse_capabilities(login.tagged.first_line) or caps
        if "IMAP4REV1" not in caps:  # no capability list after LOGIN: ask
            r = await conn.command("CAPABILITY", deadline)
            caps = parse_capabilities("\r\n".join(u.first_line for u in r.untagged))
        self.qresync = "QRESYNC" in caps
        if self.qresync:
            await conn.command("ENABLE QRESYNC", deadline)
        await self._select(conn, engine, resync)
        conn.send(b"L0 IDLE\r\n")
        while True:
            r = await conn.next_response(deadline)
            if r.is_continuation:
                break
            if r.tag == "L0":
                raise Refused("idle", r.first_line[:200])
            self._untagged(r, engine, notify=False)
        conn.mark_idle()
        conn.measuring = not engine.changes_over  # the quiet end of the run is not a keepalive gap

    async def _select(self, conn: AsyncImap, engine: Engine, resync: Resync | None) -> None:
        name = quote(self.mailbox.name)
        known = self.uidvalidity and self.highestmodseq
        if self.qresync and known:
            cmd = f"SELECT {name} (QRESYNC ({self.uidvalidity} {self.highestmodseq}))"
        elif self.qresync:
            cmd = f"SELECT {name} (CONDSTORE)"
        else:
            cmd = f"SELECT {name}"
        previous_uidnext = self.uidnext
        r = await conn.command(cmd, engine.plan.deadline_s)
        if r.status != "OK":
            raise Refused("select", r.tagged.first_line[:200])
        learned: set[int] = set()
        for u in r.untagged:
            self._untagged(u, engine, notify=False)
            fetched = parse_fetch(u)
            if fetched and "UID" in fetched[1]:
                learned.add(int(fetched[1]["UID"]))
        for u in [*r.untagged, r.tagged]:
            for key in ("UIDVALIDITY", "UIDNEXT", "HIGHESTMODSEQ"):
                value = response_code(u, key)
                if value and value.isdigit():
                    setattr(self, key.lower(), int(value))
        if resync is None:
            return
        if not (self.qresync and known):  # a client without QRESYNC asks for the new UIDs itself
            resync.method = "uid fetch"
            if previous_uidnext:
                f = await conn.command(f"UID FETCH {previous_uidnext}:* (UID)", engine.plan.deadline_s)
                for u in f.untagged:
                    fetched = parse_fetch(u)
                    if fetched and "UID" in fetched[1]:
                        learned.add(int(fetched[1]["UID"]))
        expected = {u for u in self.mailbox.uids if u and previous_uidnext <= u < self.uidnext}
        resync.learned = len(learned)
        resync.missing = sorted(expected - learned)[:20]

    def _untagged(self, r, engine: Engine, notify: bool) -> None:
        n = parse_exists(r)
        if n is None:
            return
        if notify:
            now = time.monotonic()
            for k in range(self.seen + 1, min(n, len(self.mailbox.sent_at)) + 1):
                self.timed(engine, k, now)
        self.seen = max(self.seen, n)

    async def _idle(self, conn: AsyncImap, engine: Engine) -> None:
        while not engine.stopping:
            r = await conn.poll(engine.plan.poll_s)
            if r is not None:
                self._untagged(r, engine, notify=True)
                if r.status == "BYE":
                    raise Dropped("bye", r.first_line[:200])
                continue
            silent = time.monotonic() - conn.last_rx
            if silent > engine.plan.dead_after_s:
                raise Dropped("silent", f"nothing received for {silent:.1f} s while idling")
        # stopping: end the IDLE and log out, briefly (the server may be busy with everybody else)
        try:
            conn.send(b"DONE\r\n")
            await conn.command("LOGOUT", 2.0)
        except (Dropped, Refused, OSError):
            pass
