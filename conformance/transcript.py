"""Evidence of one case: timestamped wire lines of every leg, intermediary actions, with secrets redacted.

Sans-IO: clients and intermediaries call :meth:`Transcript.add` (text) or :meth:`Transcript.add_wire` (bytes they
relayed, rendered when read) with what they saw; nothing here touches a socket. All legs of a case share one
clock, so the report can draw them on one time axis.
"""

from __future__ import annotations

import base64
import functools
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

REDACTED = "<redacted>"

# direction markers used in evidence: C client->server, S server->client, I intermediary action, N harness note
DIRECTIONS = ("C", "S", "I", "N")


@dataclass
class Entry:
    t: float  # seconds since the case started
    leg: str  # "direct", "client-proxy", "proxy-server", "http", or a connection label
    direction: str  # one of DIRECTIONS
    text: str  # printable, redacted form of the bytes (or the action)
    nbytes: int = 0  # octets on the wire for C/S entries
    conn: str = ""  # connection label, e.g. "imap#1"
    seq: float = field(default=0, compare=False, repr=False)  # order of recording (not part of the evidence)

    def as_dict(self) -> dict:
        return {"t": self.t, "leg": self.leg, "direction": self.direction, "text": self.text,
                "nbytes": self.nbytes, "conn": self.conn}


_controls = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def printable(data: bytes, limit: int = 2000) -> str:
    """Bytes as text for a transcript: CRLF kept visible as line breaks, control bytes escaped.

    TLS records (seen by an intermediary on a leg it does not decrypt) are summarised, not dumped.
    """
    if len(data) >= 5 and 0x14 <= data[0] <= 0x17 and data[1] == 0x03:
        return f"[TLS records, {len(data)} octets]"
    text = _controls.sub(lambda m: f"\\x{ord(m.group()):02x}", data[:limit].decode("utf-8", errors="backslashreplace"))
    if len(data) > limit:
        text += f"... [{len(data) - limit} more octets]"
    return text


class Redactor:
    """Removes credentials from client->server text, protocol-aware and by known secret strings.

    Stateful per connection: after an AUTHENTICATE/AUTH command, the next client lines are SASL
    responses and are redacted until the server answers with a final status.
    """

    _imap_login = re.compile(r"^(\S+ +(?:UID +)?LOGIN +)(.*)$", re.I)
    _imap_auth = re.compile(r"^(\S+ +AUTHENTICATE +\S+)( +\S+)?\s*$", re.I)
    _smtp_auth = re.compile(r"^(AUTH +\S+)( +\S+)?\s*$", re.I)
    _basic = re.compile(r"(?im)^((?:proxy-)?authorization: *\S+ +)\S+")
    _urlauth = re.compile(r"(:internal:)[0-9a-f]{16,}", re.I)

    def __init__(self, secrets: set[str] | None = None) -> None:
        self.in_sasl = False
        self.rest_of_line = False  # a LOGIN/AUTH line was cut by a segment boundary: its tail is a credential too
        self.secrets = {s for s in (secrets or set()) if s}

    def client(self, text: str) -> str:
        out = []
        for line in text.splitlines(keepends=True):
            body = line.rstrip("\r\n")
            end = line[len(body):]
            if self.rest_of_line:
                out.append((REDACTED if body else "") + end)
                self.rest_of_line = not end
                continue
            if not end and (self._imap_login.match(body) or self._imap_auth.match(body) or self._smtp_auth.match(body)):
                self.rest_of_line = True  # the command continues in the next segment
            if self.in_sasl:
                out.append((REDACTED if body not in ("", "*") else body) + end)
                if body == "*":
                    self.in_sasl = False
                continue
            if m := self._imap_login.match(body):
                user = m.group(2).split(" ", 1)[0]
                out.append(f"{m.group(1)}{user} {REDACTED}{end}")
                continue
            if m := self._imap_auth.match(body) or self._smtp_auth.match(body):
                ir = f" {REDACTED}" if m.group(2) and m.group(2).strip() not in ("=",) else (m.group(2) or "")
                out.append(f"{m.group(1)}{ir}{end}")
                self.in_sasl = True
                continue
            out.append(line)
        return self.scrub("".join(out))

    def quote(self, text: str) -> str:
        """A command as an error message may quote it: credentials redacted, the SASL state left as it was."""
        saved = (self.in_sasl, self.rest_of_line)
        self.in_sasl = self.rest_of_line = False
        try:
            return self.client(text)
        finally:
            self.in_sasl, self.rest_of_line = saved

    def server(self, text: str) -> str:
        # a tagged/numeric final reply ends a SASL exchange; continuations keep it going
        for line in text.splitlines():
            if self.in_sasl and not line.startswith("+") and not line.startswith("334"):
                self.in_sasl = False
        return self.scrub(text)

    def scrub(self, text: str) -> str:
        text = self._basic.sub(lambda m: m.group(1) + REDACTED, text)
        for secret in self.secrets:
            for form in secret_forms(secret):
                if form in text:
                    text = text.replace(form, REDACTED)
        return text


@functools.lru_cache(maxsize=256)
def secret_forms(secret: str) -> tuple[str, ...]:
    """The password itself and the base64 forms it takes inside SASL PLAIN/LOGIN and HTTP Basic (computed once
    per secret: an intermediary scrubs every relayed message).

    Base64 of data that contains the password (``\\0alice\\0pw``, ``alice:pw``) contains, whatever comes before
    it, one of three strings: the characters that encode only the password's own bits at each of the three
    alignments. Those, and the plain base64 of the password, are the forms scrubbed.
    """
    raw = secret.encode()
    forms = {secret, base64.b64encode(raw).decode()}
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + raw).decode()
        core = enc[(8 * k + 5) // 6: (8 * (k + len(raw))) // 6]
        if len(core) >= 4:
            forms.add(core)
    return tuple(sorted((f for f in forms if len(f) >= 3), key=len, reverse=True))


# -- bounds ----------------------------------------------------------------------------------------
# Memory of a case's evidence is bounded in octets: each entry is charged its text plus ENTRY_OVERHEAD (the
# object itself). Per connection (or per leg for entries without one) the first CONN_HEAD_BYTES are kept whole
# (greeting, capabilities, login: how the connection began), then a ring of the last CONN_TAIL_BYTES (how it
# ended); what falls out of the ring is counted and shown as one note where it was left out. All connections of
# a case together keep at most CASE_BYTES: past it the ring holding the most gives up its oldest entries.
ENTRY_TEXT_MAX = 8 << 10  # octets of text one entry keeps (the rest is summarised)
ENTRY_OVERHEAD = 200  # octets charged per entry for the object itself
CONN_HEAD_BYTES = 32 << 10
CONN_TAIL_BYTES = 96 << 10
CASE_BYTES = 512 << 10


def _cost(entry: Entry) -> int:
    return len(entry.text) + ENTRY_OVERHEAD


@dataclass
class _Ring:
    """The retained entries of one connection: a head kept whole, then a ring of the latest.

    Left-out entries always form one contiguous gap between head and tail (the tail gives up its oldest entry;
    a ring without a tail gives up the last entry of its head).
    """

    head: list[Entry] = field(default_factory=list)
    head_bytes: int = 0
    tail: deque[Entry] = field(default_factory=deque)
    tail_bytes: int = 0
    dropped: int = 0  # entries left out between head and tail
    dropped_octets: int = 0  # wire octets (nbytes) of the entries left out
    gap_t: float = 0.0  # transcript time of the latest entry left out
    octets: dict[str, int] = field(default_factory=dict)  # direction -> wire octets of every entry, kept or not

    @property
    def retained(self) -> int:
        return self.head_bytes + self.tail_bytes

    @property
    def gap_seq(self) -> float:
        if self.head:
            return self.head[-1].seq + 0.5
        return self.tail[0].seq - 0.5 if self.tail else 0.0

    def add(self, entry: Entry) -> int:
        """Keep ``entry``; returns the change in retained octets (negative when the ring gave up more)."""
        before = self.retained
        self.octets[entry.direction] = self.octets.get(entry.direction, 0) + entry.nbytes
        cost = _cost(entry)
        if not self.tail and not self.dropped and self.head_bytes + cost <= CONN_HEAD_BYTES:
            self.head.append(entry)
            self.head_bytes += cost
        else:
            self.tail.append(entry)
            self.tail_bytes += cost
            while self.tail_bytes > CONN_TAIL_BYTES and len(self.tail) > 1:
                self.drop_one()
        return self.retained - before

    def drop_one(self) -> int:
        """Leave out one entry next to the gap; the octets freed (0 when nothing is left)."""
        if self.tail:
            old = self.tail.popleft()
            self.tail_bytes -= _cost(old)
        elif self.head:
            old = self.head.pop()
            self.head_bytes -= _cost(old)
        else:
            return 0
        self.dropped += 1
        self.dropped_octets += old.nbytes
        self.gap_t = max(self.gap_t, old.t)
        return _cost(old)


# Wire messages an intermediary relays are recorded lazily: the relay keeps the octets (at most the part a text
# would show) and how to render them, and the text is made when the transcript is read, or in one batch once
# PENDING_MAX messages or PENDING_BYTES octets wait. Rendering and redacting is the relay's largest cost per
# message; done when read it is off the path a message travels. The evidence is the same either way: entries are
# rendered in the order they were recorded, so a connection's redactor sees its messages in order.
PENDING_MAX = 1024
PENDING_BYTES = 256 << 10


@dataclass
class Transcript:
    """All evidence lines of one case, on one clock, bounded in memory (see the bounds above).

    Thread-safe: intermediaries record from their own loop.
    """

    t0: float = field(default_factory=time.monotonic)
    secrets: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _rings: dict[str, _Ring] = field(default_factory=dict, repr=False)
    _seq: int = 0
    _bytes: int = 0
    _dropped: int = 0
    _pending: list[tuple] = field(default_factory=list, repr=False)
    _pending_bytes: int = 0

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 4)

    def add(self, leg: str, direction: str, text: str, nbytes: int = 0, conn: str = "") -> Entry:
        with self._lock:
            self._render_pending()
            self._seq += 1
            entry = Entry(self.now(), leg, direction, text, nbytes, conn, seq=self._seq)
            self._keep(entry)
        return entry

    def add_wire(self, leg: str, direction: str, data: bytes, nbytes: int, render: Callable[[bytes, int], str],
                 conn: str = "") -> None:
        """Record a chunk of ``nbytes`` octets seen on the wire, of which ``data`` holds at least what its text
        shows; ``render(data, nbytes)`` makes the text when the transcript is read."""
        with self._lock:
            self._seq += 1
            self._pending.append((time.monotonic(), self._seq, leg, direction, data, nbytes, conn, render))
            self._pending_bytes += len(data)
            if len(self._pending) >= PENDING_MAX or self._pending_bytes >= PENDING_BYTES:
                self._render_pending()

    def _render_pending(self) -> None:
        """Turn the waiting wire messages into entries, in the order they were recorded (lock held)."""
        if not self._pending:
            return
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        for t, seq, leg, direction, data, n, conn, render in pending:
            t = round(t - self.t0, 4)
            try:
                text = render(data, n)
            except Exception as e:  # noqa: BLE001 - the evidence says so; the rest of the transcript stays
                text = f"[{n} octets the transcript could not render: {type(e).__name__}: {e}]"
            self._keep(Entry(t, leg, direction, text, n, conn, seq=seq))

    def _keep(self, entry: Entry) -> None:
        """Put ``entry`` in its connection's ring and keep the case within its bound (lock held)."""
        if len(entry.text) > ENTRY_TEXT_MAX:
            entry.text = entry.text[:ENTRY_TEXT_MAX] + f"... [{len(entry.text) - ENTRY_TEXT_MAX} more characters left out]"
        ring = self._rings.setdefault(entry.conn or entry.leg, _Ring())
        dropped = ring.dropped
        self._bytes += ring.add(entry)
        self._dropped += ring.dropped - dropped
        while self._bytes > CASE_BYTES:  # the case is over its bound: the largest ring gives up its oldest
            largest = max(self._rings.values(), key=lambda r: r.retained)
            freed = largest.drop_one()
            if not freed:
                break
            self._bytes -= freed
            self._dropped += 1

    def flush(self) -> None:
        """Render what waits (every reader below does it first)."""
        with self._lock:
            self._render_pending()

    @property
    def dropped(self) -> int:
        """Entries left out over the whole case."""
        self.flush()
        return self._dropped

    @property
    def retained_bytes(self) -> int:
        """Octets the retained evidence is charged (never more than CASE_BYTES plus one entry)."""
        self.flush()
        return self._bytes

    @property
    def entries(self) -> list[Entry]:
        """The retained entries in the order they were recorded (a copy)."""
        with self._lock:
            self._render_pending()
            out = [e for r in self._rings.values() for e in (*r.head, *r.tail)]
        return sorted(out, key=lambda e: e.seq)

    def octets(self, conn: str) -> dict[str, int]:
        """Wire octets recorded for connection ``conn`` (or a leg without one) by direction, entries left out
        included: sums over ``entries`` undercount once a connection outgrew its ring."""
        with self._lock:
            self._render_pending()
            ring = self._rings.get(conn)
            return dict(ring.octets) if ring else {}

    def mark(self) -> int:
        """A position in the transcript: ``since(mark)`` returns what was recorded after it."""
        with self._lock:
            return self._seq

    def since(self, mark: int) -> list[Entry]:
        return [e for e in self.entries if e.seq > mark]

    def redactor(self) -> Redactor:
        return Redactor(self.secrets)

    def note(self, text: str) -> Entry:
        """A harness note (what the check did, e.g. 'second connection expunged UID 7')."""
        return self.add("harness", "N", text)

    def action(self, who: str, text: str, conn: str = "") -> Entry:
        """An intermediary's own action, e.g. 'nat-idle: 30.0 s without traffic, mapping dropped'."""
        return self.add(who, "I", f"{who}: {text}", conn=conn)

    def _with_gaps(self) -> list[Entry]:
        """Retained entries plus one note per connection standing where its left-out entries were."""
        with self._lock:
            self._render_pending()
            out = [e for r in self._rings.values() for e in (*r.head, *r.tail)]
            for key, r in self._rings.items():
                if r.dropped:
                    sample = (r.head or list(r.tail) or [None])[0]
                    leg = sample.leg if sample else key
                    conn = sample.conn if sample else ""
                    out.append(Entry(r.gap_t, leg, "N", f"[transcript: {r.dropped} entries ({r.dropped_octets} "
                                     f"octets on the wire) of {conn or leg} left out here; the transcript keeps the "
                                     f"first {CONN_HEAD_BYTES >> 10} KiB and the last {CONN_TAIL_BYTES >> 10} KiB "
                                     f"of a connection, {CASE_BYTES >> 10} KiB per case]", 0, conn, seq=r.gap_seq))
        return sorted(out, key=lambda e: e.seq)

    def as_list(self) -> list[dict]:
        return [e.as_dict() for e in self._with_gaps()]

    def text(self) -> str:
        """Plain rendering, used in failure messages and JUnit."""
        lines = []
        for e in self._with_gaps():
            for i, part in enumerate(e.text.splitlines() or [""]):
                prefix = f"t={e.t:8.3f} {e.conn or e.leg:>12} {e.direction}:" if i == 0 else " " * 26
                lines.append(f"{prefix} {part}")
        return "\n".join(lines)
