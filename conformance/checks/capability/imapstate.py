"""Small helpers the capability checks share: select a mailbox, append a message, read ESEARCH and FETCH data."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from conformance.errors import HarnessError
from conformance.protocols.imap import CommandResult, ImapConnection
from conformance.protocols.imapwire import Response, parse_fetch, quote

SAMPLE = (b"From: Lemonade Conformance <alice@example.test>\r\n"
          b"To: bob@example.test\r\n"
          b"Subject: lemonade sample\r\n"
          b"MIME-Version: 1.0\r\n"
          b"Content-Type: multipart/mixed; boundary=\"lemon-boundary\"\r\n"
          b"\r\n"
          b"--lemon-boundary\r\n"
          b"Content-Type: text/plain; charset=us-ascii\r\n"
          b"\r\n"
          b"Hello partial world 0123456789\r\n"
          b"--lemon-boundary--\r\n")
SAMPLE_PART1 = b"Hello partial world 0123456789"


@dataclass
class Selected:
    name: str
    uidvalidity: int
    exists: int
    result: CommandResult = field(repr=False)


def select(imap: ImapConnection, mailbox: str, verb: str = "SELECT") -> Selected:
    res = imap.command(f"{verb} {quote(mailbox)}")
    if not res.ok:
        raise HarnessError(f"{verb} {mailbox} failed: {res.tagged.first_line}")
    uidvalidity, exists = 0, 0
    for r in res.untagged:
        if m := re.search(r"\[UIDVALIDITY (\d+)\]", r.first_line, re.I):
            uidvalidity = int(m.group(1))
        if m := re.match(r"^\* (\d+) EXISTS", r.first_line, re.I):
            exists = int(m.group(1))
    return Selected(mailbox, uidvalidity, exists, res)


def append(imap: ImapConnection, mailbox: str, message: bytes = SAMPLE, flags: str = "") -> CommandResult:
    flag_part = f" ({flags})" if flags else ""
    res = imap.command(f"APPEND {quote(mailbox)}{flag_part} {{{len(message)}}}", literal=message)
    if not res.ok:
        raise HarnessError(f"APPEND of a plain {len(message)}-octet message to {mailbox} failed: "
                           f"{res.tagged.first_line}")
    return res


def uids(imap: ImapConnection) -> list[int]:
    """UIDs of the selected mailbox, in order (NOOP first, so messages this session appended are announced)."""
    imap.command("NOOP")
    res = imap.command("UID SEARCH ALL")
    if not res.ok:
        raise HarnessError(f"UID SEARCH ALL failed: {res.tagged.first_line}")
    out: list[int] = []
    for r in res.find("SEARCH"):
        out += [int(x) for x in r.first_line.split()[2:] if x.isdigit()]
    return sorted(out)


def fetch_uid(imap: ImapConnection, uid: int, items: str) -> dict[str, object]:
    res = imap.command(f"UID FETCH {uid} ({items})")
    if not res.ok:
        raise HarnessError(f"UID FETCH {uid} ({items}) failed: {res.tagged.first_line}")
    merged: dict[str, object] = {}
    for r in res.untagged:
        parsed = parse_fetch(r)
        if parsed and parsed[1].get("UID", uid) == uid:
            merged.update(parsed[1])
    return merged


@dataclass
class Esearch:
    tag: str | None
    uid: bool
    data: dict[str, str]
    line: str


def parse_esearch(resp: Response) -> Esearch | None:
    """'* ESEARCH (TAG "a1") UID COUNT 0 MIN 3' -> Esearch('a1', True, {'COUNT': '0', 'MIN': '3'})."""
    line = resp.first_line
    m = re.match(r'^\* ESEARCH(?: \(TAG "([^"]*)"\))?( UID)?(.*)$', line, re.I)
    if not m:
        return None
    rest = m.group(3).strip()
    data: dict[str, str] = {}
    for mm in re.finditer(r"([A-Za-z][A-Za-z0-9.-]*) (\([^)]*\)|\S+)", rest):
        data[mm.group(1).upper()] = mm.group(2)
    return Esearch(m.group(1), bool(m.group(2)), data, line)
