"""Flaky links: a client that stays connected over a link that keeps resetting, while another session keeps
changing the mailbox, must reach the server's state by quick resynchronisation within a reconnect budget."""

from __future__ import annotations

import random
import time

import pytest

from conformance.checks.support import ChangeMaker, MailboxView, find_code, full_sync, ground_truth
from conformance.errors import ConformanceFailure, HarnessError, ProtocolViolation, ServerClosed, ServerTimeout
from conformance.protocols.imap import ImapConnection
from conformance.protocols.imapwire import parse_exists

from .resync import apply_responses, quick_resync

LINK_ERRORS = (ServerClosed, ServerTimeout, ProtocolViolation, OSError)
POLL = 0.15  # seconds the client listens for unsolicited changes per round


class RandomChanges:
    """Seeded random flag changes, expunges and new messages, made by the second session on ``mailbox``."""

    def __init__(self, changer: ChangeMaker, mailbox: str, seed: int) -> None:
        self.changer, self.mailbox, self.rng = changer, mailbox, random.Random(seed)
        self.count = {"flag": 0, "expunge": 0, "append": 0}
        changer.select(mailbox)

    def change(self) -> None:
        """One random change: a flag set or cleared, an expunge, or a new message (only new ones while the mailbox
        holds 5 messages or fewer)."""
        uids = self.changer.uids()
        kind = self.rng.choice(["flag", "flag", "expunge", "append"]) if len(uids) > 5 else "append"
        if kind == "flag":
            uid = self.rng.choice(uids)
            sign = self.rng.choice("+-")
            flag = self.rng.choice(["\\Seen", "\\Flagged", "$Lemonade"])
            self.changer.store(uid, f"{sign}FLAGS ({flag})")
        elif kind == "expunge":
            self.changer.expunge(self.rng.choice(uids))
        else:
            self.changer.populate(self.mailbox, 1, tag=f"flaky{sum(self.count.values())}")
        self.count[kind] += 1


class Client:
    """A QRESYNC client with a cache: connect, resync, listen, and survive resets."""

    def __init__(self, case, mailbox: str) -> None:
        self.case, self.mailbox = case, mailbox
        self.conn: ImapConnection | None = None
        self.view = MailboxView()
        self.connects = 0
        self.resets = 0
        self.problems: list[str] = []

    def connect(self) -> None:
        """A new connection through the path: QRESYNC resync from the cache, or a full sync the first time."""
        self.connects += 1
        conn = self.case.imap(label=f"client#{self.connects}", timeout=5)
        conn.command("ENABLE QRESYNC")
        if self.view.uidvalidity:
            resync = quick_resync(conn, self.mailbox, self.view, timeout=5)
            self.problems += resync.problems
            self.view = resync.view
        else:
            view, _ = full_sync(conn, self.mailbox, timeout=5)
            self.view = view
        self.conn = conn

    def listen(self) -> None:
        """One round: wait briefly for unsolicited changes, then NOOP; fetch messages announced by EXISTS."""
        assert self.conn is not None
        untagged = []
        r, until = self.conn.poll(POLL), time.monotonic() + 2 * POLL
        while r is not None:
            untagged.append(r)
            if time.monotonic() >= until:  # a server that never stops talking: the NOOP below reads the rest
                break
            r = self.conn.poll(0.01)
        noop = self.conn.command("NOOP", timeout=5)
        untagged += noop.untagged
        apply_responses(self.view, untagged, self.problems)
        if any(parse_exists(u) is not None for u in untagged):
            top = max(self.view.flags, default=0)
            new = self.conn.command(f"UID FETCH {top + 1}:* (FLAGS)", timeout=5)
            apply_responses(self.view, new.untagged, self.problems)
        # commit a new modseq only once the command that reported it has completed
        hm = find_code(noop, "HIGHESTMODSEQ")
        if hm:
            self.view.highestmodseq = max(self.view.highestmodseq, int(hm))

    def round(self) -> bool:
        """Connect if needed, then listen once. False when the link broke during the round."""
        try:
            if self.conn is None:
                self.connect()
            self.listen()
            return True
        except LINK_ERRORS as e:
            self.resets += 1
            self.case.note(f"link broke ({type(e).__name__}: {str(e)[:120]}); reconnecting from modseq "
                           f"{self.view.highestmodseq}")
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            return False


@pytest.mark.requirement("mobile.reconnect.flaky-convergence", "qresync.resync-equivalence", "qresync.no-lost-changes")
@pytest.mark.scenarios("flaky:reset_every=1,seed=7")
def test_flaky_link_converges(case):
    """While a second session changes the mailbox for a while and the link resets again and again, the client
    keeps resynchronising; after the last change it must hold exactly the server's state, within the budget."""
    setup = ChangeMaker(case)
    case.require_capability(setup.conn.capability(), "QRESYNC")
    budget = case.param("max_reconnects")
    changing = case.param("changing")
    name = setup.scratch_mailbox("flaky")
    setup.populate(name, case.param("messages"))
    element = case.scenario.element("flaky")
    changer = RandomChanges(setup, name, seed=int(element.get("seed")) if element else 1)
    client = Client(case, name)
    stop_changes = time.monotonic() + changing
    while time.monotonic() < stop_changes:
        changer.change()
        client.round()
        if client.connects - 1 > budget:
            raise ConformanceFailure(f"more than {budget} reconnects while the mailbox was changing ({client.resets} "
                                     f"resets)", requirement="mobile.reconnect.flaky-convergence")
    # after the last change: one complete round on a live connection must bring the client to the truth
    settled = False
    while client.connects - 1 <= budget:
        if client.round():
            settled = True
            break
    reconnects = client.connects - 1
    case.measure("reconnects", reconnects, "")
    case.measure("resets", client.resets, "")
    case.measure("changes", dict(changer.count), "")
    if client.resets < 1:
        raise HarnessError("the flaky link never reset the client: the scenario was too gentle to prove anything")
    if not settled:
        raise ConformanceFailure(f"no complete resync within {budget} reconnects ({client.resets} resets)",
                                 requirement="mobile.reconnect.flaky-convergence")
    truth = ground_truth(case, name)
    case.require("qresync.resync-equivalence", not client.problems, "; ".join(client.problems[:5]))
    diff = client.view.diff(truth)
    for rid in ("mobile.reconnect.flaky-convergence", "qresync.resync-equivalence", "qresync.no-lost-changes"):
        case.require(rid, not diff, f"after {reconnects} reconnects and {sum(changer.count.values())} changes the "
                                    f"client's state differs from the server: " + "; ".join(diff))
    case.passed(f"{sum(changer.count.values())} changes {changer.count}, {client.resets} resets, {reconnects} "
                f"reconnects (budget {budget}); {len(truth.flags)} messages match the server")
