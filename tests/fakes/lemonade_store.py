"""A small in-memory IMAP message store for the capability checks' failure tests.

``StoreSession`` implements just enough of IMAP (CREATE/DELETE, SELECT, APPEND with {n}, {n+}, ~{n} and
CATENATE URL parts, UID STORE/FETCH (one UID or n:*)/COPY/SEARCH, ESEARCH result options, SEARCH RETURN (UPDATE) contexts,
NOOP, EXPUNGE) to behave correctly by default. Each class attribute below switches on one misbehaviour, so
a test subclass states exactly the fault a check must catch. Sessions share the store through the server.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .imap import DEFAULT_CAPS, FakeImapSession


@dataclass
class Msg:
    uid: int
    data: bytes
    flags: list[str] = field(default_factory=list)


@dataclass
class Box:
    uidnext: int = 1
    msgs: list[Msg] = field(default_factory=list)


def section1(data: bytes) -> bytes:
    """Body part 1: the first part of a multipart message, else the body (enough for the checks' samples)."""
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb'boundary="?([^";\r\n]+)"?', head, re.I)
    if not m:
        return body
    parts = body.split(b"--" + m.group(1))
    if len(parts) < 2:
        return b""
    part = parts[1].lstrip(b"\r\n") if parts[1].startswith(b"\r\n") else parts[1]
    return part.partition(b"\r\n\r\n")[2].removesuffix(b"\r\n")


def imap_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class StoreSession(FakeImapSession):
    capabilities = DEFAULT_CAPS.replace(" URLAUTH", "")
    # misbehaviours (all off: a correct store)
    continuation_for_nonsync = False   # sends '+' even for {n+}
    esearch_omit_empty_count = False   # leaves COUNT out of an ESEARCH that matched nothing
    copy_drops_keywords = False        # COPY keeps system flags only
    addto_before_exists = False        # ADDTO for a new message before its EXISTS
    expunge_before_removefrom = False  # EXPUNGE before the REMOVEFROM that concerns it
    ignore_partial = False             # CATENATE copies the whole section, ignoring ;PARTIAL=
    refuse_binary_append = False       # NO [UNKNOWN-CTE] for literal8 APPEND

    def __init__(self, sock, server) -> None:
        super().__init__(sock, server)
        self.view: list[int] = []
        self.contexts: dict[str, set[int]] = {}

    # -- shared state -----------------------------------------------------------------------------
    @property
    def boxes(self) -> dict[str, Box]:
        return self.server.__dict__.setdefault("boxes", {"INBOX": Box()})

    def box(self, name: str | None = None) -> Box | None:
        return self.boxes.get(name if name is not None else (self.selected or ""))

    @staticmethod
    def name_of(arg: str) -> str:
        arg = arg.strip()
        return arg[1:].split('"', 1)[0] if arg.startswith('"') else arg.split(" ", 1)[0]

    def msgs(self) -> list[Msg]:
        box = self.box()
        return box.msgs if box else []

    def by_uid(self, uid: int) -> Msg | None:
        return next((m for m in self.msgs() if m.uid == uid), None)

    # -- mailbox commands ---------------------------------------------------------------------------
    def cmd_create(self, tag, args):
        self.boxes.setdefault(self.name_of(args), Box())
        self.send(f"{tag} OK CREATE completed")

    def cmd_delete(self, tag, args):
        self.boxes.pop(self.name_of(args), None)
        self.send(f"{tag} OK DELETE completed")

    def cmd_select(self, tag, args):
        name = self.name_of(args)
        if name not in self.boxes:
            self.send(f"{tag} NO no such mailbox")
            return
        self.selected = name
        self.view = [m.uid for m in self.msgs()]
        self.contexts = {}
        self.send("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)")
        self.send("* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] ok")
        self.send(f"* {len(self.view)} EXISTS")
        self.send("* OK [UIDVALIDITY 7] UIDs valid")
        self.send(f"* OK [UIDNEXT {self.box().uidnext}] next")
        self.send(f"{tag} OK [READ-WRITE] SELECT completed")

    cmd_examine = cmd_select

    def add(self, name: str, data: bytes, flags: list[str] | None = None) -> Msg:
        box = self.boxes[name]
        msg = Msg(box.uidnext, data, list(flags or []))
        box.uidnext += 1
        box.msgs.append(msg)
        return msg

    def cmd_append(self, tag, args):
        name = self.name_of(args)
        if name not in self.boxes:
            self.send(f"{tag} NO [TRYCREATE] no such mailbox")
            return
        cat = re.search(r'CATENATE \(URL "([^"]*)"\)', args, re.I)
        if cat:
            return self.catenate(tag, name, cat.group(1))
        m = re.search(r"(~?)\{(\d+)(\+?)\}$", args)
        if not m:
            self.send(f"{tag} BAD expected a literal")
            return
        binary, n, nonsync = m.group(1), int(m.group(2)), m.group(3)
        if binary and self.refuse_binary_append:
            self.send(f"{tag} NO [UNKNOWN-CTE] binary APPEND refused")
            return
        if not nonsync or self.continuation_for_nonsync:
            self.send("+ go ahead")
        data = self.read_literal(n)
        if data is None or self.readline() is None:
            return False
        flags = re.search(r"\(([^)]*)\)", args[: m.start()])
        msg = self.add(name, data, flags.group(1).split() if flags else [])
        if name == self.selected:
            self.report_changes()
        self.send(f"{tag} OK [APPENDUID 7 {msg.uid}] APPEND completed")

    def catenate(self, tag, name, url):
        m = re.match(r"^/([^;]+);UIDVALIDITY=\d+/;UID=(\d+)/;SECTION=1(?:/;PARTIAL=(\d+)(?:\.(\d+))?)?$", url, re.I)
        src = self.boxes.get(m.group(1)) if m else None
        msg = next((x for x in src.msgs if x.uid == int(m.group(2))), None) if src else None
        if msg is None:
            self.send(f"{tag} NO [BADURL {url}] cannot resolve")
            return
        data = section1(msg.data)
        if m.group(3) is not None and not self.ignore_partial:
            start = int(m.group(3))
            data = data[start:start + int(m.group(4))] if m.group(4) else data[start:]
        new = self.add(name, data)
        if name == self.selected:
            self.report_changes()
        self.send(f"{tag} OK [APPENDUID 7 {new.uid}] CATENATE completed")

    # -- message commands -----------------------------------------------------------------------------
    def cmd_uid_store(self, tag, args):
        m = re.match(r"(\d+) ([+-]?)FLAGS(?:\.SILENT)? \(([^)]*)\)", args, re.I)
        msg = self.by_uid(int(m.group(1))) if m else None
        if msg is None:
            self.send(f"{tag} BAD bad UID STORE")
            return
        self.apply_flags(msg, m.group(2), m.group(3).split())
        if ".SILENT" not in args.upper():
            self.send(f"* {self.view.index(msg.uid) + 1} FETCH (UID {msg.uid} FLAGS ({' '.join(msg.flags)}))")
        self.send(f"{tag} OK STORE completed")

    def cmd_store(self, tag, args):
        m = re.match(r"(\d+) ([+-]?)FLAGS(?:\.SILENT)? \(([^)]*)\)", args, re.I)
        seq = int(m.group(1)) if m else 0
        if not 1 <= seq <= len(self.view):
            self.send(f"{tag} BAD bad STORE")
            return
        msg = self.by_uid(self.view[seq - 1])
        if msg:
            self.apply_flags(msg, m.group(2), m.group(3).split())
        self.send(f"{tag} OK STORE completed")

    @staticmethod
    def apply_flags(msg: Msg, op: str, flags: list[str]) -> None:
        if op == "+":
            msg.flags += [f for f in flags if f.upper() not in {x.upper() for x in msg.flags}]
        elif op == "-":
            msg.flags = [f for f in msg.flags if f.upper() not in {x.upper() for x in flags}]
        else:
            msg.flags = list(flags)

    def cmd_uid_fetch(self, tag, args):
        every = re.match(r"(\d+):\* \((.*)\)$", args)
        if every:  # UID n:* (FLAGS ...): each message from UID n on
            for msg in [x for x in self.msgs() if x.uid >= int(every.group(1))]:
                self.fetch_one(msg, every.group(2).upper())
            self.send(f"{tag} OK FETCH completed")
            return
        m = re.match(r"(\d+) \((.*)\)$", args)
        msg = self.by_uid(int(m.group(1))) if m else None
        if msg is None:
            self.send(f"{tag} OK FETCH completed (nothing)")
            return
        self.fetch_one(msg, m.group(2).upper())
        self.send(f"{tag} OK FETCH completed")

    def fetch_one(self, msg: Msg, items: str) -> None:
        seq = self.view.index(msg.uid) + 1 if msg.uid in self.view else 1
        parts = [f"UID {msg.uid}"]
        if "FLAGS" in items:
            parts.append(f"FLAGS ({' '.join(msg.flags)})")
        out = f"* {seq} FETCH ({' '.join(parts)}".encode()
        if "BODY.PEEK[]" in items:
            out += f" BODY[] {{{len(msg.data)}}}\r\n".encode() + msg.data
        if "BINARY.PEEK[1]" in items:
            body = section1(msg.data)
            out += f" BINARY[1] ~{{{len(body)}}}\r\n".encode() + body
        self.send(out + b")")

    def cmd_uid_copy(self, tag, args):
        m = re.match(r"(\d+) (.+)$", args)
        msg = self.by_uid(int(m.group(1))) if m else None
        dest = self.name_of(m.group(2)) if m else ""
        if msg is None or dest not in self.boxes:
            self.send(f"{tag} NO [TRYCREATE] cannot copy")
            return
        flags = [f for f in msg.flags if f.startswith("\\")] if self.copy_drops_keywords else msg.flags
        new = self.add(dest, msg.data, flags)
        self.send(f"{tag} OK [COPYUID 7 {msg.uid} {new.uid}] COPY completed")

    # -- search --------------------------------------------------------------------------------------
    def matches(self, msg: Msg, criteria: str) -> bool:
        flags = {f.upper() for f in msg.flags}
        c = criteria.strip().upper()
        if c.startswith("KEYWORD "):
            return c.split(" ", 1)[1] in flags
        return {"ALL": True, "UNDELETED": "\\DELETED" not in flags, "UNSEEN": "\\SEEN" not in flags}.get(c, False)

    def search(self, tag, args, uid: bool):
        m = re.match(r"RETURN \(([^)]*)\) (.*)$", args, re.I)
        criteria = m.group(2) if m else args
        hits = [(i + 1, u) for i, u in enumerate(self.view)
                if (msg := self.by_uid(u)) is not None and self.matches(msg, criteria)]
        if not m:
            self.send("* SEARCH" + "".join(f" {u if uid else s}" for s, u in hits))
            self.send(f"{tag} OK SEARCH completed")
            return
        opts = m.group(1).upper().split()
        if "UPDATE" in opts:
            self.contexts[tag] = {u for _, u in hits}
        nums = [u if uid else s for s, u in hits]
        data = []
        if "COUNT" in opts and (nums or not self.esearch_omit_empty_count):
            data.append(f"COUNT {len(nums)}")
        if "MIN" in opts and nums:
            data.append(f"MIN {min(nums)}")
        if "MAX" in opts and nums:
            data.append(f"MAX {max(nums)}")
        if "ALL" in opts and nums:
            data.append("ALL " + ",".join(map(str, nums)))
        self.send(f'* ESEARCH (TAG "{tag}")' + (" UID" if uid else "") + "".join(" " + d for d in data))
        self.send(f"{tag} OK SEARCH completed")

    def cmd_search(self, tag, args):
        self.search(tag, args, uid=False)

    def cmd_uid_search(self, tag, args):
        self.search(tag, args, uid=True)

    # -- changes ------------------------------------------------------------------------------------
    def report_changes(self) -> None:
        current = {m.uid for m in self.msgs()}
        for uid in [u for u in self.view if u not in current]:
            seq = self.view.index(uid) + 1
            removes = [f'* ESEARCH (TAG "{t}") REMOVEFROM (0 {seq})' for t, s in self.contexts.items() if uid in s]
            lines = ([f"* {seq} EXPUNGE"] + removes) if self.expunge_before_removefrom else (removes + [f"* {seq} EXPUNGE"])
            for line in lines:
                self.send(line)
            self.view.remove(uid)
            for s in self.contexts.values():
                s.discard(uid)
        new = [m for m in self.msgs() if m.uid not in self.view]
        if not new:
            return
        self.view += [m.uid for m in new]
        adds = []
        for m in new:
            for t, s in self.contexts.items():
                if self.matches(m, "UNSEEN"):
                    s.add(m.uid)
                    adds.append(f'* ESEARCH (TAG "{t}") ADDTO (0 {self.view.index(m.uid) + 1})')
        exists = f"* {len(self.view)} EXISTS"
        for line in (adds + [exists]) if self.addto_before_exists else ([exists] + adds):
            self.send(line)

    def cmd_noop(self, tag, args):
        self.report_changes()
        self.send(f"{tag} OK NOOP completed")

    def cmd_expunge(self, tag, args):
        box = self.box()
        if box:
            box.msgs = [m for m in box.msgs if "\\DELETED" not in {f.upper() for f in m.flags}]
        self.report_changes()
        self.send(f"{tag} OK EXPUNGE completed")

    def cmd_close(self, tag, args):
        self.selected = None
        self.send(f"{tag} OK CLOSE completed")

    def cmd_unselect(self, tag, args):
        self.selected = None
        self.send(f"{tag} OK UNSELECT completed")
