"""Evidence of one case: timestamped wire lines of every leg, intermediary actions, with secrets redacted.

Sans-IO: clients and intermediaries call :meth:`Transcript.record` with bytes they saw; nothing here
touches a socket. All legs of a case share one clock, so the report can draw them on one time axis.
"""

from __future__ import annotations

import base64
import functools
import re
import threading
import time
from dataclasses import asdict, dataclass, field

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

    def as_dict(self) -> dict:
        return asdict(self)


def printable(data: bytes, limit: int = 2000) -> str:
    """Bytes as text for a transcript: CRLF kept visible as line breaks, control bytes escaped.

    TLS records (seen by an intermediary on a leg it does not decrypt) are summarised, not dumped.
    """
    if len(data) >= 5 and 0x14 <= data[0] <= 0x17 and data[1] == 0x03:
        return f"[TLS records, {len(data)} octets]"
    text = data[:limit].decode("utf-8", errors="backslashreplace")
    text = "".join(ch if ch in "\r\n\t" or ch >= " " else f"\\x{ord(ch):02x}" for ch in text)
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
    """The password itself and the base64 forms it takes in SASL PLAIN/LOGIN and HTTP Basic (computed once per
    secret: an intermediary scrubs every relayed message)."""
    raw = secret.encode()
    forms = {secret, base64.b64encode(raw).decode()}
    return tuple(sorted((f for f in forms if len(f) >= 3), key=len, reverse=True))


@dataclass
class Transcript:
    """All evidence lines of one case, on one clock. Thread-safe: intermediaries record from their loop."""

    t0: float = field(default_factory=time.monotonic)
    entries: list[Entry] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)
    max_entries: int = 5000
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    dropped: int = 0

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 4)

    def add(self, leg: str, direction: str, text: str, nbytes: int = 0, conn: str = "") -> Entry:
        entry = Entry(self.now(), leg, direction, text, nbytes, conn)
        with self._lock:
            if len(self.entries) < self.max_entries:
                self.entries.append(entry)
            else:
                self.dropped += 1
        return entry

    def redactor(self) -> Redactor:
        return Redactor(self.secrets)

    def note(self, text: str) -> Entry:
        """A harness note (what the check did, e.g. 'second connection expunged UID 7')."""
        return self.add("harness", "N", text)

    def action(self, who: str, text: str, conn: str = "") -> Entry:
        """An intermediary's own action, e.g. 'nat-idle: 30.0 s without traffic, mapping dropped'."""
        return self.add(who, "I", f"{who}: {text}", conn=conn)

    def as_list(self) -> list[dict]:
        with self._lock:
            return [e.as_dict() for e in self.entries]

    def text(self) -> str:
        """Plain rendering, used in failure messages and JUnit."""
        lines = []
        for e in list(self.entries):
            for i, part in enumerate(e.text.splitlines() or [""]):
                prefix = f"t={e.t:8.3f} {e.conn or e.leg:>12} {e.direction}:" if i == 0 else " " * 26
                lines.append(f"{prefix} {part}")
        return "\n".join(lines)
