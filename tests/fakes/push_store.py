"""A fake message store with IDLE and NOTIFY (RFC 2177, RFC 5465) on top of ``StoreSession``, to prove push checks fail.

``PushStore`` behaves by default: changes made by one session reach another at its next command, at once while it
idles, and as NOTIFY events (selected mailbox: EXISTS/FETCH/EXPUNGE; other watched mailboxes: STATUS) at any time
once NOTIFY SET chose them; NOTIFY SET reports pending changes, validates event pairs, ignores unknown mailboxes,
answers an unsupported event with NO [BADEVENT (...)], and its STATUS indicator lists MESSAGES UIDNEXT UIDVALIDITY
(and HIGHESTMODSEQ after ENABLE CONDSTORE/QRESYNC). Each class attribute switches on one misbehaviour, so a test
names exactly the fault a check must catch. ``DeliveringSmtp`` is a submission fake (STARTTLS, AUTH PLAIN, DATA)
that delivers into the store's INBOX without telling anybody.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time
from pathlib import Path

from .imap import DEFAULT_CAPS, FakeImapServer
from .lemonade_store import Msg, StoreSession
from .smtp import FakeSmtp, Lines

EVENTS = ("MessageNew", "MessageExpunge", "FlagChange", "MailboxName", "SubscriptionChange")
_GROUP = re.compile(r"\((selected-delayed|selected|personal|inboxes|subscribed|mailboxes|subtree)"
                    r"((?: (?:\"[^\"]*\"|[^\s()]+)|(?: \([^()]*\)))*?) \(((?:[^()]|\([^()]*\))*)\)\)", re.I)


class PushStore(StoreSession):
    capabilities = DEFAULT_CAPS.replace(" URLAUTH", "")
    # misbehaviours (all off: a correct store)
    idle_no_continuation = False        # IDLE answered with a tagged NO instead of '+'
    idle_hangs_on_other_command = False  # a command sent instead of DONE is ignored: IDLE never ends
    idle_reports_nothing = False        # changes are never reported during IDLE
    fetch_without_uid = False           # FETCH for a flag change leaves out UID (also after ENABLE QRESYNC)
    expunge_between_commands = False    # another session's expunge is reported at once, no command in progress
    notify_set_no_flush = False         # NOTIFY SET does not report what changed since the last command
    status_without_uidvalidity = False  # the STATUS indicator of NOTIFY SET leaves out UIDVALIDITY
    status_without_uidnext = False      # STATUS events for other watched mailboxes leave out UIDNEXT
    accept_invalid_pairs = False        # NOTIFY SET (selected (FlagChange)) and friends are accepted
    leak_unknown_mailbox = False        # NOTIFY SET says something about a mailbox that does not exist
    notify_only_during_commands = False  # NOTIFY events wait for the next command (or IDLE)
    bye_after_silence = 0.0             # autologout after that many seconds without a command

    def __init__(self, sock, server) -> None:
        super().__init__(sock, server)
        self.lock = threading.RLock()
        self.idling: str | None = None
        self.notify: dict[str, dict] = {}  # group -> {"events": set, "names": set}
        self.held: list[str] = []  # NOTIFY events waiting for a command
        self.enabled: set[str] = set()
        self.flags_told: dict[int, frozenset[str]] = {}
        self.last_command = time.monotonic()
        server.__dict__.setdefault("push_sessions", [])
        server.push_sessions.append(self)

    # -- wire, shared between this session's thread and the ones that report changes to it ---------
    def send(self, line: str | bytes) -> None:
        with self.lock:
            super().send(line)

    def push(self, line: str) -> None:
        try:
            self.send(line)
        except OSError:
            pass

    def readline(self) -> bytes | None:
        line = super().readline()
        self.last_command = time.monotonic()
        return line

    def run(self) -> None:
        if self.bye_after_silence:
            threading.Thread(target=self._autologout, daemon=True).start()
        super().run()

    def _autologout(self) -> None:
        while not self.server.stopping.is_set():
            time.sleep(0.1)
            if self.authenticated and time.monotonic() - self.last_command > self.bye_after_silence:
                self.push("* BYE Autologout: idle for too long")
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return

    def others(self) -> list["PushStore"]:
        return [s for s in self.server.push_sessions if s is not self and s.sock.fileno() != -1]

    # -- state ------------------------------------------------------------------------------------
    def modseq(self, name: str) -> int:
        return self.server.__dict__.setdefault("modseqs", {}).get(name, 1)

    def bump(self, name: str) -> None:
        seqs = self.server.__dict__.setdefault("modseqs", {})
        seqs[name] = seqs.get(name, 1) + 1

    def condstore(self) -> bool:
        return bool({"CONDSTORE", "QRESYNC"} & self.enabled)

    def cmd_enable(self, tag, args):
        names = {a.upper() for a in args.split()} & {"CONDSTORE", "QRESYNC"}
        self.enabled |= names
        self.send(f"* ENABLED {' '.join(sorted(names))}")
        self.send(f"{tag} OK ENABLE completed")

    def cmd_select(self, tag, args):
        super().cmd_select(tag, args)
        self.flags_told = {m.uid: frozenset(m.flags) for m in self.msgs()}

    cmd_examine = cmd_select

    def status_line(self, name: str, *, indicator: bool = False) -> str:
        box = self.boxes[name]
        items = [f"MESSAGES {len(box.msgs)}"]
        if indicator or not self.status_without_uidnext:
            items.append(f"UIDNEXT {box.uidnext}")
        if not (indicator and self.status_without_uidvalidity):
            items.append("UIDVALIDITY 7")
        if self.condstore():
            items.append(f"HIGHESTMODSEQ {self.modseq(name)}")
        return f'* STATUS "{name}" ({" ".join(items)})'

    # -- reporting changes --------------------------------------------------------------------------
    def report_changes(self) -> None:
        """Expunges, flag changes and new messages of the selected mailbox since this session last heard."""
        with self.lock:
            current = {m.uid: m for m in self.msgs()}
            for uid in [u for u in self.view if u not in current]:
                self.send(f"* {self.view.index(uid) + 1} EXPUNGE")
                self.view.remove(uid)
                self.flags_told.pop(uid, None)
            for i, uid in enumerate(self.view):
                flags = frozenset(current[uid].flags)
                if self.flags_told.get(uid) != flags and self.wants("FlagChange"):
                    uid_item = "" if self.fetch_without_uid else f"UID {uid} "
                    self.send(f"* {i + 1} FETCH ({uid_item}FLAGS ({' '.join(sorted(flags))}))")
                self.flags_told[uid] = flags
            new = [m for m in self.msgs() if m.uid not in self.view]
            if new:
                self.view += [m.uid for m in new]
                self.send(f"* {len(self.view)} EXISTS")
                for m in new:
                    self.flags_told[m.uid] = frozenset(m.flags)
            held, self.held = self.held, []
            for line in held:
                self.send(line)

    def wants(self, event: str) -> bool:
        """Does this session want ``event`` for its selected mailbox (everything without NOTIFY)?"""
        if not self.notify:
            return True
        return any(event in g["events"] for k, g in self.notify.items() if k.startswith("selected"))

    def changed(self, name: str) -> None:
        """Another session changed mailbox ``name``: tell this one what it is owed now."""
        if name == self.selected:
            at_once = (self.idling is not None and not self.idle_reports_nothing) or self.expunge_between_commands \
                or ("selected" in self.notify and not self.notify_only_during_commands)
            if at_once:
                try:
                    self.report_changes()
                except OSError:
                    pass
            return
        for group in self.notify.values():
            if name in group["names"] and {"MessageNew", "MessageExpunge"} & group["events"]:
                line = self.status_line(name)
                if self.notify_only_during_commands and self.idling is None:
                    self.held.append(line)
                else:
                    self.push(line)

    def broadcast(self, name: str) -> None:
        self.bump(name)
        for s in self.others():
            s.changed(name)

    # -- commands that change the store: tell the others ------------------------------------------
    def add(self, name: str, data: bytes, flags: list[str] | None = None) -> Msg:
        msg = super().add(name, data, flags)
        self.broadcast(name)
        return msg

    def apply_flags(self, msg: Msg, op: str, flags: list[str]) -> None:
        StoreSession.apply_flags(msg, op, flags)
        if self.selected:
            self.broadcast(self.selected)

    def cmd_uid_store(self, tag, args):
        super().cmd_uid_store(tag, args)
        self.flags_told.update({m.uid: frozenset(m.flags) for m in self.msgs()})  # its own change was told

    def cmd_store(self, tag, args):
        super().cmd_store(tag, args)
        self.flags_told.update({m.uid: frozenset(m.flags) for m in self.msgs()})

    def cmd_expunge(self, tag, args):
        box = self.box()
        before = len(box.msgs) if box else 0
        super().cmd_expunge(tag, args)
        if box and len(box.msgs) != before:
            self.broadcast(self.selected)

    def matches(self, msg: Msg, criteria: str) -> bool:
        m = re.match(r'HEADER MESSAGE-ID "?([^"]*)"?$', criteria.strip(), re.I)
        if m:
            return m.group(1).encode().lower() in msg.data.split(b"\r\n\r\n", 1)[0].lower()
        return super().matches(msg, criteria)

    # -- IDLE ---------------------------------------------------------------------------------------
    def cmd_idle(self, tag, args):
        if self.idle_no_continuation:
            self.send(f"{tag} NO IDLE not available")
            return
        self.send("+ idling")
        self.idling = tag
        if not self.idle_reports_nothing:
            self.report_changes()
        while True:
            line = self.readline()
            if line is None:
                return False
            if line.strip().upper() == b"DONE":
                break
            if not self.idle_hangs_on_other_command:
                self.idling = None
                self.send(f"{tag} BAD Expected DONE")
                return
        self.idling = None
        self.report_changes()
        self.send(f"{tag} OK IDLE terminated")

    # -- NOTIFY -------------------------------------------------------------------------------------
    def cmd_notify(self, tag, args):
        text = args.strip()
        if text.upper() == "NONE":
            self.notify = {}
            self.send(f"{tag} OK NOTIFY NONE")
            return
        m = re.match(r"SET( STATUS)? (.*)$", text, re.I)
        if not m:
            self.send(f"{tag} BAD NOTIFY SET or NONE expected")
            return
        groups: dict[str, dict] = {}
        for g in _GROUP.finditer(m.group(2)):
            kind, names, events = g.group(1).lower(), g.group(2).strip(), g.group(3)
            evs = {e for e in EVENTS if re.search(rf"\b{e}\b", events, re.I)}
            if re.search(r"\bAnnotationChange\b", events, re.I):
                self.send(f"{tag} NO [BADEVENT ({' '.join(EVENTS)})] AnnotationChange is not supported")
                return
            paired = ("FlagChange" not in evs or {"MessageNew", "MessageExpunge"} <= evs) and \
                (("MessageNew" in evs) == ("MessageExpunge" in evs))
            if not paired and not self.accept_invalid_pairs:
                self.send(f"{tag} BAD invalid event combination ({events})")
                return
            listed = {n.strip('"') for n in re.findall(r'"[^"]*"|[^\s()]+', names)}
            groups.setdefault(kind, {"events": set(), "names": set()})
            groups[kind]["events"] |= evs
            groups[kind]["names"] |= listed
        with self.lock:
            self.notify = groups
            for group in groups.values():
                ghosts = sorted(n for n in group["names"] if n not in self.boxes)
                if ghosts and self.leak_unknown_mailbox:
                    self.send(f"* NO [NONEXISTENT] {ghosts[0]} does not exist")
                group["names"] = {n for n in group["names"] if n in self.boxes}
            if m.group(1):
                for group in groups.values():
                    for name in sorted(group["names"]):
                        self.send(self.status_line(name, indicator=True))
            if not self.notify_set_no_flush:
                self.report_changes()
            self.send(f"{tag} OK NOTIFY completed")


class DeliveringSmtp(FakeSmtp):
    """Submission with STARTTLS and AUTH PLAIN whose DATA is delivered into the INBOX of ``store`` (a FakeImapServer
    running PushStore sessions), silently: nobody is told, as a server whose delivery forgets its idling clients."""

    def __init__(self, store: FakeImapServer, tls_context: ssl.SSLContext) -> None:
        super().__init__(tls_context)
        self.store = store

    def _deliver(self, data: bytes) -> None:
        from .lemonade_store import Box

        boxes = self.store.__dict__.setdefault("boxes", {"INBOX": Box()})
        inbox = boxes.setdefault("INBOX", Box())
        inbox.msgs.append(Msg(inbox.uidnext, data))
        inbox.uidnext += 1

    def session(self, lines: Lines) -> None:
        tls = False
        lines.send(b"220 fake.test ESMTP delivering\r\n")
        while not self.stopping.is_set():
            cmd = lines()
            if cmd is None:
                return
            verb = cmd.split(b" ", 1)[0].upper()
            if verb == b"EHLO":
                extra = b"250-AUTH PLAIN\r\n" if tls else b"250-STARTTLS\r\n"
                lines.send(b"250-fake.test\r\n" + extra + b"250 8BITMIME\r\n")
            elif verb == b"STARTTLS":
                lines.send(b"220 2.0.0 go ahead\r\n")
                lines.wrap(self.tls_context)
                tls = True
            elif verb == b"AUTH":
                lines.send(b"235 2.7.0 authenticated\r\n")
            elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                lines.send(b"250 2.0.0 OK\r\n")
            elif verb == b"DATA":
                lines.send(b"354 go on\r\n")
                body = b""
                while (chunk := lines()) is not None and chunk != b".":
                    body += (chunk[1:] if chunk.startswith(b"..") else chunk) + b"\r\n"
                self._deliver(body)
                lines.send(b"250 2.0.0 delivered\r\n")
            elif verb == b"QUIT":
                lines.send(b"221 bye\r\n")
                return
            else:
                lines.send(b"502 5.5.1 not here\r\n")


def store_target(directory: Path, server: FakeImapServer, name: str, smtp: DeliveringSmtp | None = None) -> Path:
    """The target file of a PushStore fake (and its submission fake)."""
    extra = {"submission": f"smtp://127.0.0.1:{smtp.port}"} if smtp else None
    return server.target_file(directory, name=name, extra_endpoints=extra)
