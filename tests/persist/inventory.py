"""What an account holds, read over IMAP: every mailbox with its messages (Message-ID, flags, size), for comparing a
persistent server before and after runs of the suite; and the user's own data a test puts there first."""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass

from conformance.protocols.imap import ImapConnection
from conformance.protocols.imapwire import parse_fetch, quote
from conformance.targets import Target
from conformance.transcript import Transcript

LIST_RE = re.compile(r'^\* LIST \(([^)]*)\) (?:"[^"]*"|NIL) (.+)$', re.I)


@dataclass(frozen=True)
class Message:
    message_id: str
    flags: tuple[str, ...]
    size: int


def _connect(target: Target, account: int) -> ImapConnection:
    ep = target.endpoint("imap")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    acct = target.accounts[account]
    conn = ImapConnection(ep.host, ep.port, transcript=Transcript(secrets={acct.password}), tls="none",
                          ssl_context=ctx, timeout=20, label="inventory")
    conn.read_greeting()
    if "STARTTLS" in conn.capability():
        conn.starttls(ctx)
    res = conn.login(acct.username, acct.password)
    assert res.ok, f"inventory login as {acct.username} failed: {res.tagged.first_line}"
    return conn


def _unquote(name: str) -> str:
    name = name.strip()
    if name.startswith('"') and name.endswith('"'):
        return re.sub(r'\\(.)', r"\1", name[1:-1])
    return name


def mailboxes(conn: ImapConnection) -> list[str]:
    res = conn.command('LIST "" "*"')
    assert res.ok, res.tagged.first_line
    out = []
    for r in res.untagged:
        m = LIST_RE.match(r.first_line)
        if m and "\\noselect" not in m.group(1).lower() and "\\nonexistent" not in m.group(1).lower():
            out.append(_unquote(m.group(2)))
    return sorted(out)


def messages(conn: ImapConnection, mailbox: str) -> list[Message]:
    res = conn.command(f"EXAMINE {quote(mailbox)}")
    assert res.ok, f"EXAMINE {mailbox}: {res.tagged.first_line}"
    fetched = conn.command("FETCH 1:* (FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    out = []
    for r in fetched.untagged:
        parsed = parse_fetch(r)
        if not parsed:
            continue
        items = parsed[1]
        header = next((v for k, v in items.items() if k.upper().startswith("BODY[HEADER")), b"")
        mid = header.decode(errors="replace").split(":", 1)[-1].strip() if header else ""
        flags = tuple(sorted(f for f in (items.get("FLAGS") or []) if f.lower() != "\\recent"))
        out.append(Message(mid, flags, int(items.get("RFC822.SIZE") or 0)))
    return sorted(out, key=lambda m: (m.message_id, m.flags, m.size))


def inventory(target: Target) -> dict[str, dict[str, list[Message]]]:
    """account -> mailbox -> messages, for every account of ``target``."""
    out: dict[str, dict[str, list[Message]]] = {}
    for i, acct in enumerate(target.accounts):
        conn = _connect(target, i)
        try:
            out[acct.username] = {box: messages(conn, box) for box in mailboxes(conn)}
        finally:
            conn.command("LOGOUT")
            conn.close()
    return out


def differences(before: dict, after: dict) -> list[str]:
    """What changed between two inventories, one line each (empty: nothing)."""
    lines = []
    for user in sorted(set(before) | set(after)):
        b, a = before.get(user, {}), after.get(user, {})
        for box in sorted(set(a) - set(b)):
            lines.append(f"{user}: mailbox {box!r} left behind ({len(a[box])} messages)")
        for box in sorted(set(b) - set(a)):
            lines.append(f"{user}: mailbox {box!r} disappeared")
        for box in sorted(set(a) & set(b)):
            if a[box] != b[box]:
                gone = [m for m in b[box] if m not in a[box]]
                new = [m for m in a[box] if m not in b[box]]
                lines.append(f"{user}: {box!r} changed: gone {gone[:5]}, new {new[:5]}")
    return lines


USER_DATA = {  # what a user's account holds before the suite ever ran: the suite must not touch any of it
    "INBOX": [(b"Subject: keep me\r\nMessage-ID: <user-1@persist.test>\r\n\r\nmine\r\n", "\\Seen"),
              # marked \Deleted but not expunged: a plain EXPUNGE or CLOSE in INBOX would remove it
              (b"Subject: deleted, not expunged\r\nMessage-ID: <user-2@persist.test>\r\n\r\nstill mine\r\n", "\\Deleted"),
              (b"Subject: flagged\r\nMessage-ID: <user-3@persist.test>\r\n\r\nflagged\r\n", "\\Flagged $Label1")],
    "Archive 2024": [(b"Subject: archived\r\nMessage-ID: <user-4@persist.test>\r\n\r\nold\r\n", "")],
}


def seed_user_data(target: Target) -> None:
    """Give every account of ``target`` the mail and folders of USER_DATA (as if a person used it)."""
    for i in range(len(target.accounts)):
        conn = _connect(target, i)
        try:
            for box, msgs in USER_DATA.items():
                if box != "INBOX":
                    conn.command(f"CREATE {quote(box)}")
                for data, flags in msgs:
                    res = conn.command(f"APPEND {quote(box)} ({flags}) {{{len(data)}}}", literal=data)
                    assert res.ok, f"seeding {box}: {res.tagged.first_line}"
            conn.command("LOGOUT")
        finally:
            conn.close()
