"""URLAUTH (RFC 4467): who may make an authorized URL, what fetching one returns, how it is revoked, how it is keyed.

A URLAUTH URL carries its own authorization: the server appends a token (an HMAC of the rump under a secret
mailbox key) to the rump the client names. Anyone holding the URL can fetch the data, so the token must be
unguessable, exact to the octet, and revocable (;EXPIRE=, RESETKEY). Each check stores its own message in a
scratch mailbox and only resets the key of that mailbox.
"""

from __future__ import annotations

import datetime
import itertools
import os
import time

import pytest

from conformance.checks.support import Blame, append, search_uids, select
from conformance.protocols.imapwire import parse_genurlauth, quote

from .urlauth import Fetched, genurlauth, rfc3339, rump, server_time, split_token, url_host, urlfetch

MESSAGE = (b"From: urlauth-check@lemonade.test\r\nTo: alice@lemonade.test\r\nSubject: URLAUTH check\r\n"
           b"Message-ID: <urlauth-{n}@lemonade.test>\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
           b"A message only URLAUTH URLs should reveal.\r\n")


def stored_message(case, imap, prefix: str) -> tuple[str, int | None, int, bytes]:
    """A scratch mailbox holding one unique message: (mailbox, uidvalidity, uid, octets). Set-up: the harness's."""
    case.require_capability(imap.capability(), "URLAUTH")
    box = case.scratch_mailbox(imap, prefix)
    data = MESSAGE.replace(b"{n}", os.urandom(6).hex().encode())
    sel = select(imap, box)
    done = append(imap, box, data)
    uid = done.uid if done.uid is not None else max(search_uids(imap), default=1)  # the box holds this one message
    return box, done.uidvalidity or sel.uidvalidity, uid, data


@pytest.mark.requirement("urlauth.genurlauth-checks")
def test_genurlauth_refuses_incomplete_rumps(case):
    """GENURLAUTH of a URL without ;URLAUTH=<access> or without an owner userid gives tagged BAD (RFC 4467 7, both
    examples of the RFC); an OK is tolerated only with a URL that never resolves (it then hides whether a userid
    exists), so each OK is tried with URLFETCH."""
    imap = case.imap()
    box, uidvalidity, uid, _ = stored_message(case, imap, "genurlauth")
    user = case.account(0).username
    host = url_host(case)
    malformed = {
        "no access identifier": f"imap://{user}@{host}/{box};UIDVALIDITY={uidvalidity}/;UID={uid}/;SECTION=1",
        "no owner userid": f"imap://{host}/{box};UIDVALIDITY={uidvalidity}/;UID={uid}/;SECTION=1;URLAUTH=submit+{user}",
    }
    problems, seen = [], []
    for what, url in malformed.items():
        res = imap.command(f"GENURLAUTH {quote(url)} INTERNAL")
        seen.append(f"{what}: {res.tagged.first_line}")
        if res.status == "BAD":
            continue
        made = [u for r in res.untagged for u in parse_genurlauth(r) or []]
        if res.ok and made:
            got = urlfetch(imap, made[0])
            if got.data is None:
                continue  # the tolerated exception: OK, but a URL that never resolves
            problems.append(f"{what}: OK with a URL that resolves ({got.describe()})")
        else:
            problems.append(f"{what}: {res.tagged.first_line!r}, expected a tagged BAD")
    case.require("urlauth.genurlauth-checks", not problems,
                  "GENURLAUTH of an incomplete rump must be refused with tagged BAD (RFC 4467 7): " + "; ".join(problems))
    case.passed("; ".join(seen))


ANSWERED = b"(any answer)"  # expected value of a fetch whose data another requirement judges


def _judge_fetches(fetches: list[tuple[str, Fetched, bytes | None]]) -> list[str]:
    """For urlauth.urlfetch-ok: every URLFETCH answered with tagged OK and an untagged URLFETCH naming the URL, with
    the expected data (bytes) or NIL (None); ``ANSWERED``: the answer's form only."""
    out = []
    for what, got, expected in fetches:
        if not got.result.ok or not got.answered:
            out.append(f"{what}: {got.describe()} (expected tagged OK with an untagged URLFETCH)")
        elif expected is ANSWERED:
            continue
        elif expected is None and got.data is not None:
            out.append(f"{what}: {len(got.data)} octets, expected NIL")
        elif expected is not None and got.data != expected:
            out.append(f"{what}: {'NIL' if got.data is None else f'{len(got.data)} other octets'}, expected the "
                       f"{len(expected)} octets of the message")
    return out


def alterations(url: str, mailbox: str) -> dict[str, str]:
    """The URL with its rump changed in ways a server must not fold back (RFC 4467 6): case of the scheme, of the
    URL keywords and of the access identifier, a percent-encoded mailbox character, an upper-cased host name."""
    parts = split_token(url)
    assert parts, url
    rump_url, mech, token = parts
    tail = f":{mech}:{token}"
    out = {
        "scheme upper-cased": "IMAP" + rump_url[4:] + tail,
        ";UID= lower-cased": rump_url.replace(";UID=", ";uid=") + tail,
        ";URLAUTH= lower-cased": rump_url.replace(";URLAUTH=", ";urlauth=") + tail,
        "access identifier upper-cased": rump_url.rsplit("=", 1)[0] + "=" + rump_url.rsplit("=", 1)[1].upper() + tail,
        "a mailbox character percent-encoded": rump_url.replace(f"/{mailbox}", f"/%{ord(mailbox[0]):02X}{mailbox[1:]}",
                                                                  1) + tail,
    }
    host = rump_url.split("@", 1)[1].split("/", 1)[0]
    if any(c.isalpha() for c in host):
        out["host upper-cased"] = rump_url.replace(f"@{host}/", f"@{host.upper()}/", 1) + tail
    return {k: v for k, v in out.items() if v != url}


@pytest.mark.requirement("urlauth.urlfetch-ok", "urlauth.rump-exact")
def test_urlfetch_answers_every_url(case):
    """URLFETCH answers every syntactically valid URL with an untagged URLFETCH and a tagged OK (RFC 4467 7): the
    data for a valid URL, also when another user's session fetches an ``authuser`` URL, and NIL for a tampered token,
    a mailbox URL, an unknown mailbox and every URL whose rump was altered in case or percent-encoding, which the
    server must compare octet for octet (RFC 4467 6)."""
    imap = case.imap()
    box, uidvalidity, uid, data = stored_message(case, imap, "urlfetch")
    user, host = case.account(0).username, url_host(case)
    anon, _ = genurlauth(imap, rump(case, box, uidvalidity, uid, "anonymous"), blame=Blame.PREREQUISITE)
    authuser, _ = genurlauth(imap, rump(case, box, uidvalidity, uid, "authuser"), blame=Blame.PREREQUISITE)
    rump_url, mech, token = split_token(anon) or (anon, "INTERNAL", "")
    tampered = rump_url + f":{mech}:" + token[:-1] + ("0" if token[-1:] != "0" else "1")
    zeros = "0" * max(32, len(token))
    fetches: list[tuple[str, Fetched, bytes | None]] = [
        ("valid URL, owner's session", urlfetch(imap, anon), data),
        ("token with one hex digit changed", urlfetch(imap, tampered), None),
        ("mailbox URL", urlfetch(imap, f"imap://{user}@{host}/{box};URLAUTH=anonymous:{mech}:{zeros}"), None),
        ("unknown mailbox", urlfetch(imap, f"imap://{user}@{host}/{box}-gone/;UID={uid};URLAUTH=anonymous:{mech}:"
                                           f"{zeros}"), None),
    ]
    if len(case.target.accounts) > 1:
        other = case.imap(1, label="other-user")
        fetches.append(("authuser URL fetched by another user's session", urlfetch(other, authuser), data))
    else:
        case.note("one account only: the fetch by another user's session is left out")
    altered = [(f"rump altered: {what}", urlfetch(imap, url), ANSWERED) for what, url in alterations(anon, box).items()]
    leaked = [f"{what}: returned the message" for what, got, _ in altered if got.data is not None]
    problems = _judge_fetches(fetches + altered)
    case.attach("urlfetch", [{"url": what, "answer": got.describe()} for what, got, _ in fetches + altered])
    case.require("urlauth.urlfetch-ok", not problems,
                 "URLFETCH must answer each URL with an untagged URLFETCH (data or NIL) and a tagged OK: "
                 + "; ".join(problems))
    case.require("urlauth.rump-exact", not leaked,
                 "a URL whose rump differs from the one the token was made for must not resolve (RFC 4467 6: no "
                 "case-folding, no percent-decoding): " + "; ".join(leaked))
    case.passed(f"valid URL resolved; NIL for the tampered token, the mailbox URL, the unknown mailbox and "
                f"{len(altered)} altered rumps")


def _distinct_tail(tokens: list[str]) -> int:
    """How many hex digits follow the prefix every token shares (a version or mechanism byte, say)."""
    prefix = os.path.commonprefix(tokens) if len(tokens) > 1 else ""
    return min(len(t) for t in tokens) - len(prefix)


def _predictable_pairs(tokens: list[str], bound: float = 0.35) -> list[str]:
    """Pairs of tokens agreeing in more than ``bound`` of their positions after the shared prefix: a key with 128
    random bits makes two tokens agree in about 1 position of 16."""
    prefix = len(os.path.commonprefix(tokens))
    out = []
    for a, b in itertools.combinations(tokens, 2):
        ta, tb = a[prefix:], b[prefix:]
        n = min(len(ta), len(tb))
        same = sum(x == y for x, y in zip(ta, tb))
        if n and same / n > bound:
            out.append(f"{a} and {b} agree in {same} of {n} hex digits")
    return out


@pytest.mark.requirement("urlauth.revocation", "urlauth.entropy")
def test_urlauth_expiry_resetkey_and_tokens(case):
    """An URL stops resolving once its ;EXPIRE= time passes on the server's clock and after RESETKEY of its mailbox
    (RFC 4467 3, 7); its tokens are at least 128 bits (32 hex digits), never repeat over distinct rumps, change
    with RESETKEY and look unrelated to each other (RFC 4467 2.2, 2.5)."""
    imap = case.imap()
    box, uidvalidity, uid, data = stored_message(case, imap, "revoke")
    expire_after = case.param("expire_after")
    problems: list[str] = []
    # 1. ;EXPIRE= on the server's clock (read from the INTERNALDATE it just gave the message)
    now = server_time(imap, uid)
    offset = now.timestamp() - time.time()
    expires = now.timestamp() + expire_after
    url, _ = genurlauth(imap, rump(case, box, uidvalidity, uid, "anonymous", expire=rfc3339(
        datetime.datetime.fromtimestamp(expires, datetime.timezone.utc))), blame=Blame.PREREQUISITE)
    before = urlfetch(imap, url)
    if before.data != data:
        problems.append(f"a URL expiring {expire_after:g} s ahead of the server's clock did not resolve before "
                        f"then ({before.describe()})")
    wait = expires - offset + 1.0 - time.time()  # one second more: the server's clock has second resolution
    if wait > 0:
        time.sleep(wait)  # a protocol time: nothing to await, the server says nothing when a URL expires
    after = urlfetch(imap, url)
    if after.data is not None:
        problems.append(f"the URL still resolved {expire_after + 1:g} s after its ;EXPIRE= time ({after.describe()})")
    # 2. RESETKEY revokes what was generated before it
    kept, _ = genurlauth(imap, rump(case, box, uidvalidity, uid, "authuser"), blame=Blame.PREREQUISITE)
    ok_before = urlfetch(imap, kept)
    reset = imap.command(f"RESETKEY {quote(box)}")
    if not reset.ok:
        problems.append(f"RESETKEY {box} refused: {reset.tagged.first_line}")
    revoked = urlfetch(imap, kept)
    if ok_before.data != data:
        problems.append(f"a fresh authuser URL did not resolve before RESETKEY ({ok_before.describe()})")
    if revoked.data is not None:
        problems.append(f"the URL generated before RESETKEY {box} still resolved after it ({revoked.describe()})")
    case.require("urlauth.revocation", not problems, "; ".join(problems))
    # 3. the tokens: N distinct rumps, plus the same rump before and after RESETKEY
    user = case.account(0).username
    variants = [(a, s) for s in (None, "1", "TEXT", "HEADER") for a in ("anonymous", "authuser", f"submit+{user}",
                                                                       f"user+{user}")]
    made = {}
    for access, section in variants[:max(2, case.param("tokens"))]:
        got, _ = genurlauth(imap, rump(case, box, uidvalidity, uid, access, section=section))
        made[f"{access} {section or 'whole'}"] = got
    again, _ = genurlauth(imap, rump(case, box, uidvalidity, uid, "authuser"))
    tokens = {k: split_token(u) for k, u in made.items()}
    bad_form = [f"{k}: {u}" for k, u in made.items() if tokens[k] is None]
    hexes = {k: t[2] for k, t in tokens.items() if t}
    weak: list[str] = []
    short = [f"{k}: {len(t)} digits" for k, t in hexes.items() if len(t) < 32 or any(
        c not in "0123456789abcdefABCDEF" for c in t)]
    if bad_form:
        weak.append("URLs without ':mechanism:token': " + "; ".join(bad_form))
    if short:
        weak.append("tokens shorter than 32 hex digits (128 bits) or not hex: " + "; ".join(short))
    values = [t.lower() for t in hexes.values()]
    if len(set(values)) < len(values):
        weak.append(f"the same token for different rumps ({len(values) - len(set(values))} repeats among "
                    f"{len(values)})")
    if values and _distinct_tail(values) < 32:
        weak.append(f"only {_distinct_tail(values)} hex digits vary between tokens of different rumps (the rest is "
                    f"a shared prefix '{os.path.commonprefix(values)}'): fewer than 128 bits")
    new = split_token(again or "")
    old = split_token(kept or "")
    if new and old and new[2].lower() == old[2].lower():
        weak.append("RESETKEY did not change the token of the same rump (the key was not replaced)")
    weak += _predictable_pairs(values)[:5]
    case.attach("urlauth_tokens", [{"rump": k, "token": v} for k, v in hexes.items()])
    case.measure("token_hex_digits", min((len(t) for t in values), default=0), "hex digits")
    case.require("urlauth.entropy", not weak, "URLAUTH tokens must carry at least 128 unpredictable bits: "
                 + "; ".join(weak))
    case.passed(f"expired URL and the URL made before RESETKEY give NIL; {len(values)} tokens of "
                f"{min((len(t) for t in values), default=0)} hex digits, all distinct, new after RESETKEY")
