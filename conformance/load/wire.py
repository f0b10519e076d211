"""One asyncio IMAP connection of the load client, on the sans-IO ``imapwire.ResponseReader``.

Thousands of these share one thread and one event loop, so nothing here blocks and nothing is recorded per
octet: a connection counts its octets both ways, knows when it last received anything, and every read has a
deadline. The blocking, transcript-recording ``ImapConnection`` of the checks is not used here.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass, field

from ..protocols.imapwire import Response, ResponseReader, quote

READ_SIZE = 65536


class Dropped(Exception):
    """The connection ended (reset, closed, or silent past the liveness deadline); ``how`` says which."""

    def __init__(self, how: str, detail: str = "") -> None:
        self.how, self.detail = how, detail
        super().__init__(f"{how}: {detail}" if detail else how)


class Refused(Exception):
    """The server refused the session (connect refused, BYE greeting, NO to LOGIN or SELECT): ``kind`` names the
    step, the message quotes the server."""

    def __init__(self, kind: str, detail: str) -> None:
        self.kind, self.detail = kind, detail
        super().__init__(f"{kind}: {detail}")


@dataclass
class Octets:
    """Octets moved by one session, both directions, over all its connections."""

    received: int = 0
    sent: int = 0

    @property
    def total(self) -> int:
        return self.received + self.sent


@dataclass
class Tagged:
    tagged: Response
    untagged: list[Response] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.tagged.status or "?"


async def open_stream(address: tuple[str, int], timeout: float, tls: ssl.SSLContext | None = None,
                      server_hostname: str | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection within ``timeout`` (TLS when ``tls``): a refusal is the server's (``Refused``), anything else
    a drop on the way (``Dropped``)."""
    host, port = address
    try:
        async with asyncio.timeout(timeout):
            return await asyncio.open_connection(host, port, ssl=tls, limit=1 << 20,
                                                 server_hostname=(server_hostname or host) if tls else None)
    except ConnectionRefusedError as e:
        raise Refused("connect", f"{host}:{port} refused the connection") from e
    except (OSError, TimeoutError) as e:
        raise Dropped("connect", f"{host}:{port}: {e or 'timed out'}") from e


class Stream:
    """One connection of a session: octets counted, the longest silence tracked, every read bounded."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, octets: Octets) -> None:
        self.reader, self.writer, self.octets = reader, writer, octets
        self.last_rx = time.monotonic()
        self.max_gap = 0.0  # longest silence between two reads since ``mark_idle``, while ``measuring``
        self.measuring = True

    def mark_idle(self) -> None:
        """Start measuring silences from now (the session has just started listening)."""
        self.last_rx, self.max_gap = time.monotonic(), 0.0

    def write(self, data: bytes) -> None:
        self.writer.write(data)
        self.octets.sent += len(data)

    async def read_chunk(self, timeout: float) -> bytes | None:
        """What arrives within ``timeout`` (None: nothing); Dropped when the connection is reset or closed."""
        try:
            async with asyncio.timeout(timeout):
                data = await self.reader.read(READ_SIZE)
        except TimeoutError:
            return None
        except (ConnectionError, OSError) as e:
            raise Dropped("reset", str(e) or type(e).__name__) from e
        if not data:
            raise Dropped("closed", "the peer closed the connection")
        now = time.monotonic()
        if self.measuring:
            self.max_gap = max(self.max_gap, now - self.last_rx)
        self.last_rx = now
        self.octets.received += len(data)
        return data

    def close(self) -> None:
        try:
            self.writer.close()
        except (OSError, RuntimeError):
            pass


class AsyncImap(Stream):
    """An IMAP connection: ``command()`` waits for the tagged answer; ``next_response()`` yields what comes next."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, octets: Octets) -> None:
        super().__init__(reader, writer, octets)
        self.wire = ResponseReader()
        self.queue: list[Response] = []
        self.n = 0

    @classmethod
    async def connect(cls, host: str, port: int, octets: Octets, timeout: float,
                      tls: ssl.SSLContext | None = None, server_hostname: str | None = None) -> "AsyncImap":
        return cls(*await open_stream((host, port), timeout, tls, server_hostname), octets)

    def send(self, data: bytes) -> None:
        self.write(data)

    async def _fill(self, timeout: float) -> None:
        if not await self._read(timeout):
            raise Dropped("silent", f"nothing received for {timeout:.1f} s")

    async def _read(self, timeout: float) -> bool:
        """One read into the response reader; False when nothing came within ``timeout``."""
        data = await self.read_chunk(timeout)
        if data is None:
            return False
        self.queue.extend(self.wire.feed(data))
        return True

    async def poll(self, timeout: float) -> Response | None:
        """The next response if one completes within ``timeout``, else None (the connection is still up)."""
        if not self.queue:
            deadline = time.monotonic() + timeout
            while not self.queue:
                left = deadline - time.monotonic()
                if left <= 0 or not await self._read(left):
                    return None
        return self.queue.pop(0)

    async def next_response(self, timeout: float) -> Response:
        """The next complete response; Dropped when none comes within ``timeout`` or the connection ends."""
        deadline = time.monotonic() + timeout
        while not self.queue:
            await self._fill(max(0.001, deadline - time.monotonic()))
        return self.queue.pop(0)

    async def command(self, text: str, timeout: float) -> Tagged:
        self.n += 1
        tag = f"L{self.n}"
        self.send(f"{tag} {text}\r\n".encode())
        out = Tagged(Response(b""))
        deadline = time.monotonic() + timeout
        while True:
            r = await self.next_response(max(0.001, deadline - time.monotonic()))
            if r.tag == tag:
                out.tagged = r
                return out
            if r.status == "BYE":
                raise Dropped("bye", r.first_line[:200])
            out.untagged.append(r)

    async def login(self, username: str, password: str, timeout: float) -> Tagged:
        return await self.command(f"LOGIN {quote(username)} {quote(password)}", timeout)
