"""Fake IMAP servers that misbehave on push on purpose: IDLE that never reports, NOTIFY that answers BAD."""

from __future__ import annotations

import re
import time

from tests.fakes.imap import FakeImapSession


class IdleNeverReports(FakeImapSession):
    """Accepts IDLE with '+' and waits for DONE, but never tells the idling client about new mail."""

    def cmd_idle(self, tag: str, args: str):
        self.send("+ idling")
        line = self.readline()  # blocks until DONE (or the socket times out); nothing is ever reported
        if line is None:
            return False
        self.send(f"{tag} OK IDLE terminated")


class NotifyUnsupportedIsBad(FakeImapSession):
    """Advertises NOTIFY (and no ANNOTATE) but answers an unsupported event with BAD instead of NO [BADEVENT]."""

    def cmd_notify(self, tag: str, args: str):
        if "ANNOTATIONCHANGE" in args.upper():
            self.send(f"{tag} BAD unknown NOTIFY event AnnotationChange")
        else:
            self.send(f"{tag} OK NOTIFY completed")


class NotifyBadeventListsSupported(FakeImapSession):
    """The behaviour RFC 5465 3.1 asks for: NO [BADEVENT (supported events)] for an unsupported event."""

    def cmd_notify(self, tag: str, args: str):
        if "ANNOTATIONCHANGE" in args.upper():
            self.send(f"{tag} NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName)] Unsupported event")
        else:
            self.send(f"{tag} OK NOTIFY completed")


class NotifyingMailStore(FakeImapSession):
    """A small shared mail store with RFC 5465 NOTIFY events pushed to the other sessions, as the RFC asks.

    The sessions of one ``FakeImapServer`` share the mailboxes; a change on one connection is sent at once to every
    other session that asked for it with NOTIFY SET (or, without NOTIFY, to one that has the mailbox selected).
    Subclasses below break exactly one rule each.
    """

    deleted_attrs = "\\NonExistent"
    exists_for_new_mail = True
    fetch_new_mail = True
    flag_change_always = False
    expunge_at_once = False

    def __init__(self, sock, server) -> None:
        super().__init__(sock, server)
        self.notify = ""
        self.pending: list[str] = []  # expunges held for SELECTED-DELAYED until NOOP
        server.__dict__.setdefault("boxes", {"INBOX": []})  # dict.setdefault is atomic: one store per server

    # -- shared state ----------------------------------------------------------------------------
    def boxes(self) -> dict[str, list[set[str]]]:
        return self.server.boxes

    def others(self) -> list["NotifyingMailStore"]:
        """The other sessions still connected (ended sessions stay in ``server.sessions``)."""
        return [s for s in self.server.sessions
                if s is not self and isinstance(s, NotifyingMailStore) and s.sock.fileno() != -1]

    def push(self, line: str) -> None:
        """Send an event to this session from another session's thread; a session that just went away is skipped."""
        try:
            self.send(line)
        except OSError:
            pass

    def watches(self, event: str) -> bool:
        return event.upper() in self.notify.upper()

    @staticmethod
    def name(arg: str) -> str:
        return arg.strip().strip('"')

    # -- NOTIFY ----------------------------------------------------------------------------------
    def cmd_notify(self, tag: str, args: str):
        self.notify = "" if args.strip().upper() == "NONE" else args
        self.send(f"{tag} OK NOTIFY completed")

    def list_event(self, attrs: str, name: str, extra: str = "") -> None:
        for s in self.others():
            if s.watches("MailboxName"):
                s.push(f'* LIST ({attrs}) "/" "{name}"{extra}')

    def cmd_create(self, tag: str, args: str):
        name = self.name(args)
        self.boxes().setdefault(name, [])
        self.list_event("", name)
        self.send(f"{tag} OK CREATE completed")

    def cmd_rename(self, tag: str, args: str):
        old, new = (self.name(a) for a in args.split(" ", 1))
        self.boxes()[new] = self.boxes().pop(old, [])
        self.list_event("", new, f' ("OLDNAME" ("{old}"))')
        self.send(f"{tag} OK RENAME completed")

    def cmd_delete(self, tag: str, args: str):
        name = self.name(args)
        self.boxes().pop(name, None)
        self.list_event(self.deleted_attrs, name)
        self.send(f"{tag} OK DELETE completed")

    # -- messages --------------------------------------------------------------------------------
    def cmd_select(self, tag: str, args: str):
        self.selected = self.name(args)
        n = len(self.boxes().get(self.selected, []))
        self.send(f"* {n} EXISTS")
        self.send("* OK [UIDVALIDITY 1] UIDs valid")
        self.send(f"* OK [UIDNEXT {n + 1}] Predicted next UID")
        self.send(f"{tag} OK [READ-WRITE] SELECT completed")

    cmd_examine = cmd_select

    def cmd_append(self, tag: str, args: str):
        m = re.search(r"\{(\d+)(\+?)\}$", args)
        if not m:
            self.send(f"{tag} BAD literal expected")
            return
        if not m.group(2):
            self.send("+ OK")
        if self.read_literal(int(m.group(1))) is None:
            return False
        self.readline()
        box = self.name(args.split(" ", 1)[0])
        msgs = self.boxes().setdefault(box, [])
        msgs.append(set())
        n = len(msgs)
        for s in self.others():
            if s.selected == box and s.exists_for_new_mail:
                s.push(f"* {n} EXISTS")
                if s.fetch_new_mail and re.search(r"MessageNew \(", s.notify, re.I):
                    s.push(f"* {n} FETCH (UID {n} FLAGS ())")
        if self.selected == box:
            self.send(f"* {n} EXISTS")
        self.send(f"{tag} OK [APPENDUID 1 {n}] APPEND completed")

    def cmd_store(self, tag: str, args: str):
        m = re.match(r"(\d+) ([+-]?)FLAGS(\.SILENT)? \(([^)]*)\)", args, re.I)
        msgs = self.boxes().get(self.selected or "", [])
        if not m or not 0 < int(m.group(1)) <= len(msgs):
            self.send(f"{tag} BAD fake STORE takes 'n [+-]FLAGS[.SILENT] (flags)'")
            return
        n, flags = int(m.group(1)), set(m.group(4).split())
        msgs[n - 1] = msgs[n - 1] | flags if m.group(2) == "+" else msgs[n - 1] - flags if m.group(2) else flags
        line = f"* {n} FETCH (UID {n} FLAGS ({' '.join(sorted(msgs[n - 1]))}))"
        for s in self.others():
            if s.selected == self.selected and (s.flag_change_always or not s.notify or s.watches("FlagChange")):
                s.push(line)
        if not m.group(3):
            self.send(line)
        self.send(f"{tag} OK STORE completed")

    def cmd_expunge(self, tag: str, args: str):
        msgs = self.boxes().get(self.selected or "", [])
        gone = [i + 1 for i, flags in enumerate(msgs) if "\\Deleted" in flags]
        for seq in reversed(gone):
            del msgs[seq - 1]
            for s in self.others():
                if s.selected == self.selected:
                    if s.watches("selected-delayed") and not s.expunge_at_once:
                        s.pending.append(f"* {seq} EXPUNGE")
                    else:
                        s.push(f"* {seq} EXPUNGE")
            self.send(f"* {seq} EXPUNGE")
        self.send(f"{tag} OK EXPUNGE completed")

    def cmd_noop(self, tag: str, args: str):
        self.pending, held = [], self.pending
        for line in held:
            self.send(line)
        self.send(f"{tag} OK NOOP completed")


class NotifyDeletedWithoutNonExistent(NotifyingMailStore):
    """Reports a deleted mailbox with a plain LIST, without the \\NonExistent attribute RFC 5465 5.4 asks for."""

    deleted_attrs = ""


class NotifyFlagChangeAlways(NotifyingMailStore):
    """Sends FETCH for every flag change during IDLE even when NOTIFY SET did not ask for FlagChange."""

    flag_change_always = True


class NotifyMessageNewExistsOnly(NotifyingMailStore):
    """Sends EXISTS for new mail in the selected mailbox but never the FETCH with the attributes MessageNew asked for."""

    fetch_new_mail = False


class NotifyNewMailNeverSent(NotifyingMailStore):
    """Accepts NOTIFY SET with MessageNew for the selected mailbox but never sends the EXISTS for another session's
    new message: a chosen event missing."""

    exists_for_new_mail = False


class NotifyDelayedExpungesAtOnce(NotifyingMailStore):
    """Accepts SELECTED-DELAYED but reports another connection's expunge at once, with no command in progress."""

    expunge_at_once = True


class IdleOneKeepaliveThenSilence(FakeImapSession):
    """Answers IDLE with '+', sends one '* OK' keepalive 0.1 s later and then nothing at all (a keepalive schedule
    of, say, 20 minutes): behind a NAT that drops it silently, no client can tell the loss from a quiet mailbox."""

    def cmd_idle(self, tag: str, args: str):
        self.send("+ idling")
        time.sleep(0.1)
        self.send("* OK Still here")
        self.sock.settimeout(60)
        line = self.readline()
        if line is None:
            return False
        self.send(f"{tag} OK IDLE terminated")
