"""An in-memory IMAP store with URLAUTH (RFC 4467), multi-URL CATENATE and APPENDLIMIT, for the failure tests.

``UrlauthStore`` extends the capability checks' ``StoreSession``: GENURLAUTH (INTERNAL mechanism: an HMAC-SHA1 of the
exact rump under a per-mailbox key, like Dovecot's), URLFETCH, RESETKEY, INTERNALDATE, and CATENATE with any number
of URL parts. It behaves correctly by default; each class attribute switches on one misbehaviour. ``resolve`` is what
the fake submission server (tests/fakes/submission.py) calls for BURL.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import itertools
import os
import re
import urllib.parse

from .lemonade_store import StoreSession, section1

URL = re.compile(r"^imap://(?:([^@/;]*)@)?([^/]+)/([^;/]+)(?:;UIDVALIDITY=(\d+))?/;UID=(\d+)(?:/;SECTION=([^;]+))?"
                 r"(?:;EXPIRE=([^;]+))?;URLAUTH=([^:;]+)(?::([A-Za-z0-9-]+):([0-9a-fA-F]*))?$", re.I)


def _quote_url(url: str) -> str:
    return '"' + url.replace("\\", "\\\\").replace('"', '\\"') + '"'


class UrlauthStore(StoreSession):
    capabilities = StoreSession.capabilities + " URLAUTH MULTIAPPEND"
    owner = "alice"
    # misbehaviours (all off: a correct store)
    accept_incomplete = False   # GENURLAUTH of a rump without ;URLAUTH= or without owner: OK with a working URL
    no_for_invalid = False      # URLFETCH of an invalid URL: tagged NO instead of URLFETCH url NIL + OK
    fold_rump = False           # case-folds and percent-decodes the rump before the HMAC
    ignore_expire = False       # ;EXPIRE= never checked
    never_reset = False         # RESETKEY answers OK and changes nothing
    counter_tokens = False      # tokens are a counter, zero-padded to 40 hex digits
    short_tokens = False        # tokens of 16 hex digits (64 bits)
    append_limit: int | None = None  # APPENDLIMIT=n advertised and enforced for CATENATE
    toobig_code = "TOOBIG"      # the response code of an over-limit CATENATE
    badurl_names_last = False   # [BADURL] names the last URL of the CATENATE, not the first failing one
    catenate_keeps_partial = False  # a failing CATENATE stores what it built so far

    def __init__(self, sock, server) -> None:
        super().__init__(sock, server)
        if self.append_limit is not None and "APPENDLIMIT" not in self.capabilities:
            self.capabilities = f"{self.capabilities} APPENDLIMIT={self.append_limit}"

    # -- keys and tokens ----------------------------------------------------------------------------------
    def keys(self) -> dict[str, bytes]:
        return self.server.__dict__.setdefault("urlauth_keys", {})

    def key(self, mailbox: str) -> bytes:
        return self.keys().setdefault(mailbox, os.urandom(32))

    def token(self, mailbox: str, rump: str) -> str:
        if self.counter_tokens:
            counter = self.server.__dict__.setdefault("token_counter", itertools.count(1))
            return f"{next(counter):040x}"
        text = urllib.parse.unquote(rump).lower() if self.fold_rump else rump
        mac = hmac.new(self.key(mailbox), text.encode(), hashlib.sha1).hexdigest()
        return "01" + (mac[:14] if self.short_tokens else mac)

    def issued(self) -> dict[tuple[str, str], str]:
        """(mailbox, rump as hashed) -> token, for the counter tokens that cannot be recomputed."""
        return self.server.__dict__.setdefault("issued", {})

    # -- commands --------------------------------------------------------------------------------------------
    def cmd_genurlauth(self, tag, args):
        m = re.match(r'^"([^"]*)" INTERNAL$', args.strip(), re.I)
        if not m:
            self.send(f"{tag} BAD GENURLAUTH \"rump\" INTERNAL")
            return
        rump = m.group(1)
        if self.accept_incomplete and ";URLAUTH=" not in rump.upper():
            rump += ";URLAUTH=anonymous"
        parts = URL.match(rump)
        if parts is None or (not parts.group(1) and not self.accept_incomplete):
            self.send(f"{tag} BAD missing access identifier or owner in supplied URL")
            return
        mailbox = parts.group(3)
        tok = self.token(urllib.parse.unquote(mailbox), rump)
        self.issued()[(urllib.parse.unquote(mailbox), urllib.parse.unquote(rump).lower() if self.fold_rump else rump)] = tok
        self.send(f"* GENURLAUTH {_quote_url(rump + ':INTERNAL:' + tok)}")
        self.send(f"{tag} OK GENURLAUTH completed")

    def resolve(self, url: str, user: str | None = None) -> bytes | None:
        """The data ``url`` gives (None: NIL), as URLFETCH (or a BURL fetch by ``user``) sees it."""
        m = URL.match(url)
        if not m or not m.group(10):
            return None
        owner, mailbox, section, expire, access, token = (m.group(1), urllib.parse.unquote(m.group(3)), m.group(6),
                                                          m.group(7), m.group(8), m.group(10))
        rump = url[:url.rfind(":", 0, url.rfind(":"))]
        text = urllib.parse.unquote(rump).lower() if self.fold_rump else rump
        expected = self.issued().get((mailbox, text)) if self.counter_tokens else self.token(mailbox, rump)
        if expected is None or not hmac.compare_digest(expected.lower(), token.lower()):
            return None
        if owner is None or (not self.fold_rump and owner != self.owner):
            return None
        if access.lower().startswith("submit+") and user is not None and access[7:] != user:
            return None
        if expire and not self.ignore_expire:
            when = datetime.datetime.strptime(expire, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
            if when <= datetime.datetime.now(datetime.timezone.utc):
                return None
        box = self.boxes.get(mailbox)
        msg = next((x for x in box.msgs if x.uid == int(m.group(5))), None) if box else None
        if msg is None:
            return None
        if not section:
            return msg.data
        head, _, body = msg.data.partition(b"\r\n\r\n")
        return {"TEXT": body, "HEADER": head + b"\r\n\r\n", "1": section1(msg.data)}.get(section.upper())

    def cmd_urlfetch(self, tag, args):
        urls = re.findall(r'"((?:[^"\\]|\\.)*)"|(\S+)', args)
        out = []
        for quoted, atom in urls:
            url = quoted or atom
            data = self.resolve(url)
            if data is None and self.no_for_invalid:
                self.send(f"{tag} NO cannot fetch {url}")
                return
            out.append(_quote_url(url).encode() + (b" NIL" if data is None else b" {%d}\r\n" % len(data) + data))
        self.send(b"* URLFETCH " + b" ".join(out) + b"\r\n")  # explicit CRLF: the last literal may end with one
        self.send(f"{tag} OK URLFETCH completed")

    def cmd_resetkey(self, tag, args):
        if not self.never_reset:
            name = self.name_of(args) if args.strip() else None
            for box in ([name] if name else list(self.keys())):
                self.keys().pop(box, None)
            self.issued().clear()
        self.send(f"{tag} OK RESETKEY completed")

    def cmd_uid_fetch(self, tag, args):
        if "INTERNALDATE" in args.upper():
            m = re.match(r"(\d+) ", args)
            stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%d-%b-%Y %H:%M:%S +0000")
            self.send(f'* 1 FETCH (UID {m.group(1) if m else 1} INTERNALDATE "{stamp}")')
            self.send(f"{tag} OK FETCH completed")
            return
        super().cmd_uid_fetch(tag, args)

    def cmd_append(self, tag, args):
        if re.search(r"CATENATE \(URL", args, re.I):
            return self.catenate_urls(tag, self.name_of(args), re.findall(r'URL "([^"]*)"', args))
        return super().cmd_append(tag, args)

    def catenate_urls(self, tag, name, urls):
        if name not in self.boxes:
            self.send(f"{tag} NO [TRYCREATE] no such mailbox")
            return
        built = b""
        for url in urls:
            m = re.match(r"^/([^;]+);UIDVALIDITY=\d+/;UID=(\d+)$", url, re.I)
            src = self.boxes.get(m.group(1)) if m else None
            msg = next((x for x in src.msgs if x.uid == int(m.group(2))), None) if src else None
            if msg is None:
                if self.catenate_keeps_partial and built:
                    self.add(name, built)
                    if name == self.selected:
                        self.report_changes()
                self.send(f"{tag} NO [BADURL {urls[-1] if self.badurl_names_last else url}] cannot resolve")
                return
            built += msg.data
            if self.append_limit is not None and len(built) > self.append_limit:
                self.send(f"{tag} NO [{self.toobig_code}] composed message grows too big")
                return
        new = self.add(name, built)
        if name == self.selected:
            self.report_changes()
        self.send(f"{tag} OK [APPENDUID 7 {new.uid}] CATENATE completed")
