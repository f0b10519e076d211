"""Fakes for the reconnect family that misbehave on purpose.

``MisbehavingStoreSession``: an IMAP store that gets every reconnect matter wrong at once: it keeps the
truncated part of an APPEND cut mid-literal, accepts SELECT (QRESYNC ...) without ENABLE and answers it with
resync data even for a stale UIDVALIDITY, and after COMPRESS DEFLATE inflates what it reads but keeps
answering uncompressed. ``BufferingCompressSession``: compresses its replies but flushes the compressor only
for tagged replies, so an IDLE push stays in it. ``StoredBlocksCompressStore``: a store speaking DEFLATE without
compressing (stored blocks), so COMPRESS saves nothing. ``EagerVanishedSession``: sends VANISHED unsolicited, during
FETCH and for UIDs it never announced. ``HalfSentRelay``: a submission server (and its own relay record) that relays a DATA
cut by a dropped connection as if the client had finished it.
"""

from __future__ import annotations

import asyncio
import re
import select
import time
import zlib

from conformance.providers.smtpsink import SmtpSink
from tests.fakes.imap import FakeImapSession
from tests.fakes.lemonade_store import StoreSession


class MisbehavingStoreSession(FakeImapSession):
    def __init__(self, sock, server) -> None:
        super().__init__(sock, server)
        self.inflate = None
        if not hasattr(server, "stored"):
            server.stored = []
        self.stored: list[bytes] = server.stored

    def readline(self) -> bytes | None:
        while b"\r\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return None
            if not chunk:
                return None
            self.buf += self.inflate.decompress(chunk) if self.inflate else chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def cmd_compress(self, tag: str, args: str):
        self.send(f"{tag} OK DEFLATE active")
        self.inflate = zlib.decompressobj(-15)  # the bug: replies stay uncompressed

    def cmd_append(self, tag: str, args: str):
        m = re.search(r"\{(\d+)(\+?)\}$", args)
        if not m:
            self.send(f"{tag} BAD no literal")
            return
        if not m.group(2):
            self.send("+ OK")
        n = int(m.group(1))
        while len(self.buf) < n:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                self.stored.append(bytes(self.buf))  # the bug: keep what arrived of a cut APPEND
                return False
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        self.stored.append(data)
        self.readline()
        self.send(f"{tag} OK [APPENDUID 1 {len(self.stored)}] APPEND completed")

    def cmd_select(self, tag: str, args: str):
        self.send("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)")
        self.send("* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)] Flags permitted")
        self.send(f"* {len(self.stored)} EXISTS")
        self.send("* OK [UIDVALIDITY 1] UIDs valid")
        self.send(f"* OK [UIDNEXT {len(self.stored) + 1}] Predicted next UID")
        self.send("* OK [HIGHESTMODSEQ 9] Highest")
        if "QRESYNC" in args.upper():  # the bug: no ENABLE needed, UIDVALIDITY not compared
            self.send("* VANISHED (EARLIER) 2")
            self.send("* 1 FETCH (UID 1 MODSEQ (9) FLAGS (\\Seen))")
        self.send(f"{tag} OK [READ-WRITE] SELECT completed")

    cmd_examine = cmd_select

    def cmd_uid_search(self, tag: str, args: str):
        marker = args.rsplit(" ", 1)[-1].strip('"').encode()
        uids = [str(i + 1) for i, d in enumerate(self.stored) if marker in d]
        self.send("* SEARCH" + "".join(" " + u for u in uids))
        self.send(f"{tag} OK SEARCH completed")

    def cmd_uid_fetch(self, tag: str, args: str):
        which = args.split(" ", 1)[0]
        if "BODY" not in args.upper():
            for i in range(1, len(self.stored) + 1):
                self.send(f"* {i} FETCH (UID {i} FLAGS ())")
        else:
            for u in which.split(","):
                data = self.stored[int(u) - 1]
                self.send(f"* {u} FETCH (UID {u} BODY[] {{{len(data)}}}\r\n".encode() + data + b")")
        self.send(f"{tag} OK FETCH completed")

    def cmd_fetch(self, tag: str, args: str):
        self.send(f"{tag} OK FETCH completed")

    def cmd_unselect(self, tag: str, args: str):
        self.send(f"{tag} OK UNSELECT completed")


class HalfSentRelay(SmtpSink):
    async def _read_data(self, reader: asyncio.StreamReader) -> tuple[bytes, bool]:
        buf = bytearray()
        while True:
            try:
                line = await asyncio.wait_for(reader.readline(), self.IDLE_TIMEOUT)
            except (ConnectionError, asyncio.TimeoutError):
                line = b""
            if not line or line in (b".\r\n", b".\n"):
                return bytes(buf), True  # the bug: end of connection treated as end of data
            buf += line[1:] if line.startswith(b".") else line


class DeflateSession(FakeImapSession):
    """COMPRESS DEFLATE (RFC 4978) on the wire at compression ``level``; every reply is flushed, untagged ones too
    only when ``flush_untagged``."""

    level = zlib.Z_DEFAULT_COMPRESSION
    flush_untagged = True

    def __init__(self, sock, server) -> None:
        super().__init__(sock, server)
        self.inflate = None
        self.deflate = None

    def send(self, line: str | bytes) -> None:
        data = line if isinstance(line, bytes) else line.encode()
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        if self.deflate is not None:
            out = self.deflate.compress(data)
            if self.flush_untagged or not data.startswith(b"* "):
                out += self.deflate.flush(zlib.Z_SYNC_FLUSH)
            data = out
        if data:
            self.sock.sendall(data)

    def readline(self) -> bytes | None:
        while b"\r\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return None
            if not chunk:
                return None
            self.buf += self.inflate.decompress(chunk) if self.inflate else chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def cmd_compress(self, tag: str, args: str):
        self.send(f"{tag} OK DEFLATE active")
        self.deflate = zlib.compressobj(self.level, zlib.DEFLATED, -15)
        self.inflate = zlib.decompressobj(-15)


class DeflatingStore(DeflateSession, StoreSession):
    """The in-memory store (tests/fakes/lemonade_store.py) with COMPRESS DEFLATE done right."""


class StoredBlocksCompressStore(DeflatingStore):
    """COMPRESS DEFLATE that decodes fine but never compresses: level 0 (stored blocks) and a flush per line, so a
    compressed full synchronisation puts more octets on the wire than a plain one."""

    level = 0


class BufferingCompressSession(DeflateSession):
    """COMPRESS DEFLATE done right on the wire, except that untagged responses are fed to the compressor without
    a flush: they leave only when a tagged reply or a continuation flushes the stream. In IDLE it reports a
    message APPENDed by another session as ``* n EXISTS``, which therefore stays in the compressor until DONE."""

    flush_untagged = False  # the bug: only tagged replies and continuations are flushed

    def __init__(self, sock, server) -> None:
        super().__init__(sock, server)
        if not hasattr(server, "appended"):
            server.appended = 0

    def cmd_append(self, tag: str, args: str):
        if super().cmd_append(tag, args) is False:
            return False
        self.server.appended += 1

    def cmd_select(self, tag: str, args: str):
        self.seen = self.server.appended
        super().cmd_select(tag, args)

    def cmd_idle(self, tag: str, args: str):
        self.send("+ idling")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self.server.stopping.is_set():
            if self.server.appended != self.seen:
                self.seen = self.server.appended
                self.send(f"* {self.seen} EXISTS")
            ready, _, _ = select.select([self.sock], [], [], 0.05)
            if ready:
                break
        line = self.readline()
        if line is None:
            return False
        self.send(f"{tag} OK IDLE completed")


class EagerVanishedSession(FakeImapSession):
    """A QRESYNC store with four messages that sends VANISHED whenever it likes: to every other selected session
    the moment one expunges (no command in progress there), during a plain FETCH, and for a UID it never
    announced on NOOP."""

    def cmd_select(self, tag: str, args: str):
        self.selected = args.split(" ")[0].strip('"')
        self.send("* 4 EXISTS")
        self.send("* OK [UIDVALIDITY 1] UIDs valid")
        self.send("* OK [UIDNEXT 5] Predicted next UID")
        self.send("* OK [HIGHESTMODSEQ 4] Highest")
        self.send(f"{tag} OK [READ-WRITE] SELECT completed")

    def cmd_uid_fetch(self, tag: str, args: str):
        for i in range(1, 5):
            self.send(f"* {i} FETCH (UID {i} MODSEQ ({i}) FLAGS ())")
        self.send(f"{tag} OK FETCH completed")

    def cmd_uid_store(self, tag: str, args: str):
        self.send(f"{tag} OK STORE completed")

    cmd_store = cmd_uid_store

    def cmd_uid_expunge(self, tag: str, args: str):
        for other in list(self.server.sessions):
            if other is not self and other.selected:
                try:
                    other.send("* VANISHED 4")  # the bug: unsolicited, outside any command of that session
                except OSError:
                    pass
        self.send(f"{tag} OK EXPUNGE completed")

    def cmd_fetch(self, tag: str, args: str):
        self.send("* VANISHED 1")  # the bug: during FETCH, where sequence numbers must stay put
        self.send(f"{tag} OK FETCH completed")

    def cmd_search(self, tag: str, args: str):
        self.send("* SEARCH 1 2 3")
        self.send(f"{tag} OK SEARCH completed")

    def cmd_noop(self, tag: str, args: str):
        self.send("* VANISHED 99")  # the bug: a UID no EXISTS ever announced
        self.send(f"{tag} OK NOOP completed")
