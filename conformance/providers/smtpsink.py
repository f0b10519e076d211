"""SMTP sink: the relay behind a target's submission service. Keeps every received message byte for byte.

Runs in its own thread with its own asyncio loop on a free loopback port. Only transactions completed
with a final '.' (DATA) or BDAT LAST are kept as messages; an interrupted one is logged as aborted, so
checks can prove that nothing half-sent was relayed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HarnessError
from .base import Service


@dataclass
class SinkMessage:
    mail_from: str
    rcpt_to: list[str]
    data: bytes  # the message as received, dot-unstuffed, CRLF line ends as sent
    received_at: float = field(default_factory=time.time)


class SmtpSink(Service):
    MAX_MESSAGE = 64 << 20
    IDLE_TIMEOUT = 120.0

    def __init__(self, spool: Path | None = None) -> None:
        self.messages: list[SinkMessage] = []
        self.aborted: list[str] = []  # descriptions of transactions that did not complete
        self.spool = spool
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "SmtpSink":
        self._thread = threading.Thread(target=self._run, name="smtp-sink", daemon=True)
        self._thread.start()
        if not self._ready.wait(5):
            raise HarnessError("SMTP sink did not start within 5 s")
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._session, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            self._loop.run_until_complete(self._server.wait_closed())
            self._loop.close()

    def stop(self) -> None:
        if self._loop and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(5)

    # -- access for checks -----------------------------------------------------------------------
    def wait_for(self, predicate, timeout: float) -> SinkMessage | None:
        """The first kept message matching ``predicate`` within ``timeout`` seconds, else None."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for m in self.messages:
                    if predicate(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)

    def _keep(self, msg: SinkMessage) -> None:
        with self._changed:
            self.messages.append(msg)
            n = len(self.messages)
            self._changed.notify_all()
        if self.spool:
            self.spool.mkdir(parents=True, exist_ok=True)
            (self.spool / f"{n:05d}.eml").write_bytes(msg.data)

    # -- protocol ------------------------------------------------------------------------------
    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def reply(line: str) -> None:
            writer.write(line.encode() + b"\r\n")
            await writer.drain()

        async def readline() -> bytes:
            return await asyncio.wait_for(reader.readline(), self.IDLE_TIMEOUT)

        mail_from, rcpts, chunks = "", [], []
        try:
            await reply("220 sink.lemonade.test ESMTP sink")
            while True:
                line = await readline()
                if not line:
                    if mail_from or chunks:
                        self._abort(f"connection closed mid-transaction from={mail_from}")
                    return
                cmd = line.decode("utf-8", "replace").strip()
                verb = cmd.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO", "LHLO"):
                    await reply("250-sink.lemonade.test\r\n250-8BITMIME\r\n250-BINARYMIME\r\n250-CHUNKING\r\n"
                                "250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n250 SIZE 67108864")
                elif verb == "MAIL":
                    mail_from, rcpts, chunks = cmd[10:].strip(), [], []
                    await reply("250 2.1.0 OK")
                elif verb == "RCPT":
                    rcpts.append(cmd[8:].strip())
                    await reply("250 2.1.5 OK")
                elif verb == "DATA":
                    await reply("354 go ahead")
                    data, complete = await self._read_data(reader)
                    if not complete:
                        self._abort(f"DATA interrupted after {len(data)} octets from={mail_from}")
                        return
                    self._keep(SinkMessage(mail_from, rcpts, data))
                    mail_from, rcpts, chunks = "", [], []
                    await reply("250 2.0.0 kept")
                elif verb == "BDAT":
                    parts = cmd.split()
                    size = int(parts[1])
                    try:
                        chunks.append(await asyncio.wait_for(reader.readexactly(size), self.IDLE_TIMEOUT))
                    except (asyncio.IncompleteReadError, asyncio.TimeoutError):
                        self._abort(f"BDAT interrupted from={mail_from}")
                        return
                    if len(parts) > 2 and parts[2].upper() == "LAST":
                        self._keep(SinkMessage(mail_from, rcpts, b"".join(chunks)))
                        mail_from, rcpts, chunks = "", [], []
                        await reply("250 2.0.0 kept")
                    else:
                        await reply(f"250 2.0.0 {size} octets")
                elif verb == "RSET":
                    mail_from, rcpts, chunks = "", [], []
                    await reply("250 2.0.0 OK")
                elif verb == "NOOP":
                    await reply("250 2.0.0 OK")
                elif verb == "QUIT":
                    await reply("221 2.0.0 bye")
                    return
                else:
                    await reply("502 5.5.1 not implemented")
        except (asyncio.TimeoutError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            if mail_from:
                self._abort(f"session broke mid-transaction from={mail_from}")
        finally:
            writer.close()

    async def _read_data(self, reader: asyncio.StreamReader) -> tuple[bytes, bool]:
        buf = bytearray()
        while len(buf) < self.MAX_MESSAGE:
            line = await asyncio.wait_for(reader.readline(), self.IDLE_TIMEOUT)
            if not line:
                return bytes(buf), False
            if line in (b".\r\n", b".\n"):
                return bytes(buf), True
            if line.startswith(b"."):
                line = line[1:]
            buf += line
        return bytes(buf), False

    def _abort(self, what: str) -> None:
        with self._changed:
            self.aborted.append(what)
            self._changed.notify_all()
