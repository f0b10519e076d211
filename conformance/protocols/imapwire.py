"""IMAP response reader, sans-IO: feed bytes, get complete responses (a line with its literals joined).

Also small parsers for what checks need, all on plain bytes: a tokenizer for response data with its literals,
FETCH items and FLAGS, STATUS, EXISTS/EXPUNGE, SEARCH/ESEARCH, response codes, CAPABILITY lists, VANISHED sets.

Bounds (a peer that exceeds one gets ``ProtocolViolation``/``Flood``, never unbounded memory): MAX_LINE octets
without CRLF, MAX_LITERAL octets announced for one literal, MAX_RESPONSE octets for one response (lines and
literals together, each part charged PART_OVERHEAD more for its own bookkeeping), MAX_DEPTH nested lists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import Flood, ProtocolViolation

_literal_tail = re.compile(rb"~?\{(\d+)\+?\}\r\n$")
MAX_LINE = 1 << 20  # a response line without CRLF longer than this is garbage
MAX_LITERAL = 64 << 20  # the largest literal the suite accepts (checks move messages of 1 MiB at most)
MAX_RESPONSE = 64 << 20  # octets of one response, lines and literals together
PART_OVERHEAD = 64  # octets charged per line or literal of a response (many tiny parts are a flood too)
MAX_DEPTH = 64  # nested parenthesised lists in one response


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
        self._size = 0  # octets charged to the response in progress

    @property
    def pending(self) -> int:
        """Octets received that are not yet part of a complete response."""
        return len(self._buf) + sum(len(p) for p in self._parts)

    @property
    def in_response(self) -> bool:
        """A response has begun (a line announcing a literal was read) and is not complete yet."""
        return bool(self._parts) or self._need is not None

    def take_unparsed(self) -> bytes:
        """The octets received after the last complete response, removed from the reader.

        For a layer that changes under the protocol (COMPRESS): what followed the tagged OK was already coded
        and must be decoded and fed again. Raises ProtocolViolation when a response is still in progress.
        """
        if self.in_response:
            raise ProtocolViolation("the server started a response in the old layer that continues in the new one")
        data = bytes(self._buf)
        self._buf.clear()
        return data

    def _charge(self, part: bytes) -> None:
        self._size += len(part) + PART_OVERHEAD
        if self._size > MAX_RESPONSE:
            raise Flood(f"flood: one response grew past {MAX_RESPONSE} octets ({len(self._parts)} lines and "
                        f"literals so far)")

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
            if idx > MAX_LINE:
                raise ProtocolViolation(f"server sent a line of {idx} octets (the bound is {MAX_LINE})")
            line = bytes(self._buf[: idx + 2])
            del self._buf[: idx + 2]
            self._charge(line)
            self._parts.append(line)
            m = _literal_tail.search(line)
            if m:
                size = int(m.group(1))
                if size > MAX_LITERAL:
                    raise ProtocolViolation(f"server announced a literal of {size} octets (the bound is {MAX_LITERAL})")
                self._size += size + PART_OVERHEAD
                if self._size > MAX_RESPONSE:
                    raise Flood(f"flood: one response grew past {MAX_RESPONSE} octets with a literal of {size}")
                self._need = size
                continue
            out.append(Response(b"".join(self._parts), self._literals))
            self._parts, self._literals, self._size = [], [], 0
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


# -- response data ---------------------------------------------------------------------------------
class Atom(str):
    """An atom of response data (FLAGS members, item names, numbers): str; quoted strings and literals are bytes."""


_literal_head = re.compile(rb"~?\{(\d{1,20})\+?\}\r\n")
_ATOM_END = frozenset(b' ()"{[]\r\n') | frozenset(range(0, 0x20)) | {0x7F}


def tokenize(data: bytes, pos: int = 0) -> list:
    """Response data from ``pos`` to the final CRLF as nested lists: ``Atom`` for atoms (with a ``[section]``
    and ``<origin>`` kept in the atom, as in ``BODY[HEADER.FIELDS (TO)]<0>``), bytes for quoted strings and
    literals (``{n}``, ``{n+}``, ``~{n}``), None for NIL, lists for parenthesised lists.

    Raises ProtocolViolation for anything that does not parse (an unbalanced list, an unterminated quoted
    string, a literal shorter than announced, nesting deeper than MAX_DEPTH).
    """
    stack: list[list] = [[]]
    n = len(data)
    while pos < n:
        c = data[pos]
        if c == 0x20:  # SP
            pos += 1
        elif c == 0x0D:  # the final CRLF (CRLF inside literals is consumed with them)
            if data[pos:pos + 2] != b"\r\n" or pos + 2 != n:
                raise ProtocolViolation(f"stray CR in response data at octet {pos}")
            break
        elif c == 0x28:  # (
            if len(stack) > MAX_DEPTH:
                raise ProtocolViolation(f"response data nested deeper than {MAX_DEPTH} lists")
            new: list = []
            stack[-1].append(new)
            stack.append(new)
            pos += 1
        elif c == 0x29:  # )
            if len(stack) == 1:
                raise ProtocolViolation(f"unbalanced ')' in response data at octet {pos}")
            stack.pop()
            pos += 1
        elif c == 0x22:  # "
            out = bytearray()
            pos += 1
            while True:
                if pos >= n or data[pos] in (0x0D, 0x0A):
                    raise ProtocolViolation("unterminated quoted string in response data")
                ch = data[pos]
                if ch == 0x5C and pos + 1 < n:  # backslash escapes the next octet
                    out.append(data[pos + 1])
                    pos += 2
                    continue
                if ch == 0x22:
                    pos += 1
                    break
                out.append(ch)
                pos += 1
            stack[-1].append(bytes(out))
        elif c == 0x7B or (c == 0x7E and data[pos + 1:pos + 2] == b"{"):  # {n} or ~{n}
            m = _literal_head.match(data, pos)
            if not m:
                raise ProtocolViolation(f"malformed literal announcement at octet {pos}")
            size = int(m.group(1))
            end = m.end() + size
            if end > n:
                raise ProtocolViolation(f"literal of {size} octets ends past the response")
            stack[-1].append(data[m.end():end])
            pos = end
        else:
            start = pos
            while pos < n and data[pos] not in _ATOM_END:
                pos += 1
            if pos < n and data[pos] == 0x5B:  # [section] belongs to the atom, spaces and lists included
                close = data.find(b"]", pos)
                if close < 0 or data.find(b"\r\n", pos, close) >= 0:
                    raise ProtocolViolation(f"unterminated '[' in response data at octet {pos}")
                pos = close + 1
                if data[pos:pos + 1] == b"<":
                    close = data.find(b">", pos)
                    if close < 0:
                        raise ProtocolViolation(f"unterminated '<' in response data at octet {pos}")
                    pos = close + 1
            if pos == start:
                raise ProtocolViolation(f"unexpected octet {bytes([c])!r} in response data at octet {pos}")
            text = data[start:pos].decode("utf-8", errors="replace")
            stack[-1].append(None if text.upper() == "NIL" else Atom(text))
    if len(stack) != 1:
        raise ProtocolViolation("unbalanced '(' in response data")
    return stack[0]


_BYTES_ITEMS = re.compile(r"^(?:(?:BODY|BINARY)(?:\.PEEK)?\[.*|RFC822(?:\.HEADER|\.TEXT)?)$", re.S)
_INT_ITEMS = re.compile(r"^(?:UID|RFC822\.SIZE|BINARY\.SIZE\[.*\])$", re.S)
_fetch_head = re.compile(rb"^\* (\d{1,10}) FETCH ", re.I)


def _number(value: object, what: str) -> int:
    if isinstance(value, Atom) and re.fullmatch(r"[0-9]{1,20}", value):
        return int(value)
    raise ProtocolViolation(f"{what} is not a number: {value!r}")


def parse_fetch(resp: Response) -> tuple[int, dict[str, object]] | None:
    """'* 3 FETCH (UID 7 MODSEQ (12) FLAGS (\\Seen) BODY[] {5}...)' -> (3, {'UID': 7, 'MODSEQ': 12, ...}); None
    for a response that is not FETCH.

    Every item of the list is returned, under its upper-cased name (``BODY[]<0>``, ``BINARY.SIZE[1]``):
    UID, RFC822.SIZE, BINARY.SIZE[...] and MODSEQ as int, FLAGS as a list of str, BODY/BINARY/RFC822 values as
    bytes (NIL as None), anything else as tokenized (see ``tokenize``). A FETCH that does not parse raises
    ProtocolViolation.
    """
    m = _fetch_head.match(resp.raw)
    if not m:
        return None
    data = tokenize(resp.raw, m.end())
    if len(data) != 1 or not isinstance(data[0], list):
        raise ProtocolViolation(f"FETCH response without one parenthesised item list: {resp.first_line[:200]!r}")
    pairs = data[0]
    if len(pairs) % 2:
        raise ProtocolViolation(f"FETCH item list has a name without a value: {resp.first_line[:200]!r}")
    items: dict[str, object] = {}
    for name, value in zip(pairs[::2], pairs[1::2]):
        if not isinstance(name, Atom):
            raise ProtocolViolation(f"FETCH item name is not an atom: {name!r}")
        key = name.upper()
        if key == "FLAGS":
            if not isinstance(value, list) or not all(isinstance(f, Atom) for f in value):
                raise ProtocolViolation(f"FETCH FLAGS is not a list of flags: {value!r}")
            items[key] = [str(f) for f in value]
        elif key == "MODSEQ":
            if not isinstance(value, list) or len(value) != 1:
                raise ProtocolViolation(f"FETCH MODSEQ is not '(n)': {value!r}")
            items[key] = _number(value[0], "MODSEQ")
        elif _INT_ITEMS.match(key):
            items[key] = _number(value, key)
        elif _BYTES_ITEMS.match(key):
            if value is not None and not isinstance(value, bytes):
                raise ProtocolViolation(f"FETCH {key} is not a string or literal: {value!r}")
            items[key] = value
        else:
            items[key] = value
    return int(m.group(1)), items


def parse_flags(resp: Response) -> tuple[int, list[str]] | None:
    """The FLAGS of a FETCH response, with its sequence number; None when it is not a FETCH with FLAGS."""
    got = parse_fetch(resp)
    if got is None or "FLAGS" not in got[1]:
        return None
    return got[0], list(got[1]["FLAGS"])  # type: ignore[arg-type]


def parse_status(resp: Response) -> tuple[str, dict[str, int]] | None:
    """'* STATUS INBOX (MESSAGES 3 UIDNEXT 9)' -> ('INBOX', {'MESSAGES': 3, 'UIDNEXT': 9}); None otherwise."""
    m = re.match(rb"^\* STATUS ", resp.raw, re.I)
    if not m:
        return None
    data = tokenize(resp.raw, m.end())
    if len(data) != 2 or not isinstance(data[1], list) or len(data[1]) % 2:
        raise ProtocolViolation(f"STATUS response is not 'mailbox (name value ...)': {resp.first_line[:200]!r}")
    box = data[0]
    name = box.decode("utf-8", "replace") if isinstance(box, bytes) else str(box)
    values = {str(k).upper(): _number(v, f"STATUS {k}") for k, v in zip(data[1][::2], data[1][1::2])}
    return name, values


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

_exists_re = re.compile(r"^\* ([0-9]{1,10}) EXISTS\s*$", re.I)
_expunge_re = re.compile(r"^\* ([0-9]{1,10}) EXPUNGE\s*$", re.I)
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
    return [int(x) for x in m.group(1).split() if re.fullmatch(r"[0-9]{1,10}", x)]


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
