"""URLAUTH steps the envelope checks share (RFC 4467): a message's rump URL, GENURLAUTH, URLFETCH, the server's clock.

A rump is an IMAP URL (RFC 5092) ending in ``;URLAUTH=<access>``; GENURLAUTH appends ``:<mechanism>:<token>`` and
URLFETCH resolves the result. The helpers return what the server answered and leave the judging to the check,
except where a ``blame`` says who is at fault when a step is refused.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass

from conformance.checks.support import Blame, refuse
from conformance.protocols.imap import CommandResult, ImapConnection
from conformance.protocols.imapwire import parse_genurlauth, parse_urlfetch, quote

TOKEN = re.compile(r":([A-Za-z0-9-]+):([^:]*)$")  # ':<mechanism>:<token>' at the end of an URLAUTH URL


def url_host(case) -> str:
    """The host an URLAUTH URL names: the target's IMAP host, as the existing BURL check writes it."""
    ep = case.target.endpoint("imap") or case.target.endpoint("imaps")
    return ep.host if ep else "localhost"


def rump(case, mailbox: str, uidvalidity: int | None, uid: int, access: str, *, account: int = 0,
         section: str | None = None, expire: str | None = None, user: str | None = None) -> str:
    """``imap://user@host/mailbox;UIDVALIDITY=v/;UID=u[/;SECTION=s][;EXPIRE=t];URLAUTH=access``."""
    who = case.account(account).username if user is None else user
    owner = f"{who}@" if who else ""
    url = f"imap://{owner}{url_host(case)}/{mailbox}"
    if uidvalidity is not None:
        url += f";UIDVALIDITY={uidvalidity}"
    url += f"/;UID={uid}"
    if section:
        url += f"/;SECTION={section}"
    if expire:
        url += f";EXPIRE={expire}"
    return url + f";URLAUTH={access}"


def split_token(url: str) -> tuple[str, str, str] | None:
    """(rump, mechanism, token) of an URLAUTH URL, or None when it does not end in ':mechanism:token'."""
    m = TOKEN.search(url)
    if not m or ";urlauth=" not in url[:m.start()].lower():
        return None
    return url[:m.start()], m.group(1), m.group(2)


def genurlauth(conn: ImapConnection, rump_url: str, *,
               blame: Blame | None = Blame.SERVER) -> tuple[str | None, CommandResult]:
    """GENURLAUTH ``rump_url`` INTERNAL: (the URL the server made, the result). A refusal, or an OK without the
    untagged GENURLAUTH, is ``blame``'s (with None: the URL is None and the caller judges). Checks that need a URL to
    judge something else pass ``Blame.PREREQUISITE``: without one their requirement cannot be judged (the refusal
    of a well-formed rump is then reported by the GENURLAUTH check, whose requirement it concerns)."""
    res = conn.command(f"GENURLAUTH {quote(rump_url)} INTERNAL")
    urls = [u for r in res.untagged if (got := parse_genurlauth(r)) for u in got]
    if not res.ok:
        refuse(blame, f"GENURLAUTH of a well-formed rump refused, so there is no URL to judge with: "
                      f"{res.tagged.first_line}")
        return None, res
    if not urls:
        refuse(blame, f"GENURLAUTH OK without an untagged GENURLAUTH response: {res}")
        return None, res
    return urls[0], res


@dataclass
class Fetched:
    """What URLFETCH of one URL gave: the result, whether an untagged URLFETCH named the URL, and its data."""

    url: str
    result: CommandResult
    answered: bool
    data: bytes | None  # None: NIL (or no answer)

    def describe(self) -> str:
        """'tagged OK, NIL' / 'tagged NO ..., no URLFETCH response' / 'tagged OK, 21 octets'."""
        tagged = self.result.tagged.first_line.split(" ", 1)[-1][:100]
        if not self.answered:
            return f"{tagged}, no untagged URLFETCH for the URL"
        return f"{tagged}, " + ("NIL" if self.data is None else f"{len(self.data)} octets")


def urlfetch(conn: ImapConnection, url: str, *, timeout: float | None = None) -> Fetched:
    """URLFETCH ``url``: the tagged result and the untagged URLFETCH that names it (the server's words, unjudged)."""
    res = conn.command(f"URLFETCH {quote(url)}", timeout=timeout)
    for r in res.untagged:
        for got_url, data in parse_urlfetch(r) or []:
            if got_url == url:
                return Fetched(url, res, True, data)
    return Fetched(url, res, False, None)


def server_time(conn: ImapConnection, uid: int) -> datetime.datetime:
    """The server's clock, read from the INTERNALDATE of message ``uid`` it just stored (a set-up step)."""
    res = conn.command(f"UID FETCH {uid} (INTERNALDATE)")
    m = re.search(r'INTERNALDATE "([^"]+)"', str(res))
    if not res.ok or not m:
        raise Blame.HARNESS.exception(f"no INTERNALDATE for UID {uid} to read the server's clock: {res}")
    return datetime.datetime.strptime(m.group(1).strip(), "%d-%b-%Y %H:%M:%S %z")


def rfc3339(t: datetime.datetime) -> str:
    """A UTC timestamp as ;EXPIRE= takes it (RFC 4467 3, RFC 3339): 2026-01-31T12:00:00Z."""
    return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
