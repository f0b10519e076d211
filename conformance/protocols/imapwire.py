"""IMAP response reader, sans-IO: feed bytes, get complete responses (a line with its literals joined).

Also small parsers for what checks need: status codes, CAPABILITY lists, FETCH items, VANISHED sets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import ProtocolViolation

_literal_tail = re.compile(rb"~?\{(\d+)\+?\}\r\n$")
MAX_LINE = 1 << 20  # a response line without CRLF longer than this is garbage
MAX_LITERAL = 256 << 20


@dataclass
class Response:
    """One server response: the raw octets (literals included) and its parsed head."""

    raw: bytes
    literals: list[bytes] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8", errors="replace")

    @property
    def first_line(self) -> str:
        return self.raw.split(b"\r\n", 1)[0].decode("utf-8", errors="replace")

    @property
    def tag(self) -> str:
        return self.first_line.split(" ", 1)[0]

    @property
    def is_untagged(self) -> bool:
        return self.raw.startswith(b"* ")

    @property
    def is_continuation(self) -> bool:
        return self.raw.startswith(b"+")

    @property
    def status(self) -> str | None:
        """OK/NO/BAD/BYE/PREAUTH for status responses, else None."""
        parts = self.first_line.split(" ", 2)
        if len(parts) >= 2 and parts[1].upper() in ("OK", "NO", "BAD", "BYE", "PREAUTH"):
            return parts[1].upper()
        return None

    @property
    def code(self) -> str | None:
        """The bracketed response code of a status response, e.g. 'CAPABILITY IMAP4rev1 ...'."""
        m = re.match(r"^\S+ +\S+ +\[([^\]]*)\]", self.first_line)
        return m.group(1) if m else None

    def __str__(self) -> str:  # pragma: no cover - debugging aid
        return self.text


class ResponseReader:
    """Sans-IO reader. ``feed(data)`` returns the responses completed by ``data``."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._parts: list[bytes] = []  # completed lines+literals of the response in progress
        self._literals: list[bytes] = []
        self._need: int | None = None  # octets of literal still expected

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Response]:
        self._buf += data
        out: list[Response] = []
        while True:
            if self._need is not None:
                if len(self._buf) < self._need:
                    break
                lit = bytes(self._buf[: self._need])
                del self._buf[: self._need]
                self._parts.append(lit)
                self._literals.append(lit)
                self._need = None
                continue
            idx = self._buf.find(b"\r\n")
            if idx < 0:
                if len(self._buf) > MAX_LINE:
                    raise ProtocolViolation(f"server sent {len(self._buf)} octets without CRLF")
                break
            line = bytes(self._buf[: idx + 2])
            del self._buf[: idx + 2]
            self._parts.append(line)
            m = _literal_tail.search(line)
            if m:
                size = int(m.group(1))
                if size > MAX_LITERAL:
                    raise ProtocolViolation(f"server announced a literal of {size} octets")
                self._need = size
                continue
            out.append(Response(b"".join(self._parts), self._literals))
            self._parts, self._literals = [], []
        return out


def parse_capabilities(text: str) -> list[str]:
    """Capabilities from '* CAPABILITY a b c' or a '[CAPABILITY a b c]' code, upper-cased."""
    m = re.search(r"\[CAPABILITY ([^\]]*)\]", text, re.I)
    if m:
        body = m.group(1)
    else:
        m = re.search(r"^\* CAPABILITY (.*)$", text, re.I | re.M)
        if not m:
            return []
        body = m.group(1)
    return [c.upper() for c in body.strip().split()]


def parse_uid_set(text: str) -> set[int]:
    """'1:3,7,9:10' -> {1,2,3,7,9,10} (bounded: a set larger than 1,000,000 UIDs is a protocol error)."""
    out: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        if ":" in part:
            a, b = (int(x) for x in part.split(":", 1))
            lo, hi = min(a, b), max(a, b)
            if hi - lo > 1_000_000:
                raise ProtocolViolation(f"implausible UID range {part}")
            out.update(range(lo, hi + 1))
        else:
            out.add(int(part))
    return out


def format_uid_set(uids) -> str:
    """{1,2,3,7} -> '1:3,7'."""
    nums = sorted(set(uids))
    if not nums:
        return ""
    ranges, start, prev = [], nums[0], nums[0]
    for n in nums[1:]:
        if n == prev + 1:
            prev = n
            continue
        ranges.append(f"{start}:{prev}" if start != prev else str(start))
        start = prev = n
    ranges.append(f"{start}:{prev}" if start != prev else str(start))
    return ",".join(ranges)


_fetch_re = re.compile(r"^\* (\d+) FETCH \((.*)\)\s*$", re.S)


def parse_fetch(resp: Response) -> tuple[int, dict[str, object]] | None:
    """'* 3 FETCH (UID 7 MODSEQ (12) FLAGS (\\Seen))' -> (3, {'UID': 7, 'MODSEQ': 12, 'FLAGS': [...]}).

    Literal values (BODY[] etc.) are returned as bytes. Enough for the items checks use:
    UID, MODSEQ, FLAGS, RFC822.SIZE, BODY[...]/BINARY[...] literals, BINARY.SIZE[...].
    """
    first = resp.first_line
    m = re.match(r"^\* (\d+) FETCH \(", first)
    if not m:
        return None
    seq = int(m.group(1))
    # rebuild the item list with literal placeholders
    text = resp.raw.decode("utf-8", errors="replace")
    items: dict[str, object] = {}
    lit_iter = iter(resp.literals)
    for key in re.findall(r"((?:BODY|BINARY|RFC822)(?:\.PEEK)?\[[^\]]*\](?:<\d+>)?) ~?\{\d+\}", text):
        items[key.upper()] = next(lit_iter, b"")
    if mm := re.search(r"\bUID (\d+)", first):
        items["UID"] = int(mm.group(1))
    if mm := re.search(r"\bMODSEQ \((\d+)\)", first):
        items["MODSEQ"] = int(mm.group(1))
    if mm := re.search(r"\bFLAGS \(([^)]*)\)", first):
        items["FLAGS"] = mm.group(1).split()
    if mm := re.search(r"\bRFC822\.SIZE (\d+)", first):
        items["RFC822.SIZE"] = int(mm.group(1))
    for mm in re.finditer(r"\b(BINARY\.SIZE\[[^\]]*\]) (\d+)", text):
        items[mm.group(1).upper()] = int(mm.group(2))
    for mm in re.finditer(r"((?:BODY|BINARY)\[[^\]]*\](?:<\d+>)?) \"([^\"]*)\"", first):
        items.setdefault(mm.group(1).upper(), mm.group(2).encode())
    return seq, items


def parse_vanished(resp: Response) -> tuple[bool, set[int]] | None:
    """'* VANISHED (EARLIER) 1:3' -> (True, {1,2,3}); '* VANISHED 5' -> (False, {5})."""
    m = re.match(r"^\* VANISHED( \(EARLIER\))? ([\d:,]+)\s*$", resp.first_line, re.I)
    if not m:
        return None
    return bool(m.group(1)), parse_uid_set(m.group(2))


def quote(s: str) -> str:
    """An IMAP quoted string."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- small parsers the check helpers use (sans-IO, one response in, a value or None out) -----------------

_exists_re = re.compile(r"^\* (\d+) EXISTS\s*$", re.I)
_expunge_re = re.compile(r"^\* (\d+) EXPUNGE\s*$", re.I)
_search_re = re.compile(r"^\* SEARCH\b(.*)$", re.I)


def parse_exists(resp: Response) -> int | None:
    """'* 5 EXISTS' -> 5 (any case); None for every other response."""
    m = _exists_re.match(resp.first_line)
    return int(m.group(1)) if m else None


def parse_expunge(resp: Response) -> int | None:
    """'* 3 EXPUNGE' -> 3 (the message sequence number; any case); None for every other response."""
    m = _expunge_re.match(resp.first_line)
    return int(m.group(1)) if m else None


def parse_search(resp: Response) -> list[int] | None:
    """'* SEARCH 2 5 9' -> [2, 5, 9] (numbers as sent; a MODSEQ suffix is left out); None for other responses."""
    m = _search_re.match(resp.first_line)
    if not m:
        return None
    return [int(x) for x in m.group(1).split() if x.isdigit()]


def response_code(resp: Response, name: str) -> str | None:
    """The argument of the response code ``name`` in a status response: '* OK [UIDNEXT 7] ...' gives '7' for
    UIDNEXT, '' for a code without argument ('[CLOSED]'), None when the response does not carry that code."""
    m = re.search(r"\[" + re.escape(name) + r"(?: ([^\]]*))?\]", resp.first_line, re.I)
    if not m:
        return None
    return m.group(1) or ""


@dataclass
class Esearch:
    """An ESEARCH response (RFC 4731): the tag it correlates with, the UID indicator, and its return data."""

    tag: str | None
    uid: bool
    data: dict[str, str]
    line: str


def parse_esearch(resp: Response) -> Esearch | None:
    """'* ESEARCH (TAG "a1") UID COUNT 0 MIN 3' -> Esearch('a1', True, {'COUNT': '0', 'MIN': '3'}); None otherwise."""
    line = resp.first_line
    m = re.match(r'^\* ESEARCH(?: \(TAG "([^"]*)"\))?( UID)?(.*)$', line, re.I)
    if not m:
        return None
    data: dict[str, str] = {}
    for mm in re.finditer(r"([A-Za-z][A-Za-z0-9.-]*) (\([^)]*\)|\S+)", m.group(3).strip()):
        data[mm.group(1).upper()] = mm.group(2)
    return Esearch(m.group(1), bool(m.group(2)), data, line)
