"""Fake IMAP servers that misbehave on push on purpose: IDLE that never reports, NOTIFY that answers BAD."""

from __future__ import annotations

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
