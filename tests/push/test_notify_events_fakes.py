"""Fakes that break one NOTIFY rule each make the MailboxName, IDLE-consistency and MessageNew checks fail; a fake
that keeps the rules lets all three pass."""

from __future__ import annotations

import pytest

from tests.fakes.imap import FakeImapServer
from tests.fakes.push import (
    NotifyDelayedExpungesAtOnce,
    NotifyDeletedWithoutNonExistent,
    NotifyFlagChangeAlways,
    NotifyingMailStore,
    NotifyMessageNewExistsOnly,
    NotifyNewMailNeverSent,
)

CHECKS = {"mailboxname": "push/notify_mailboxname_list_events", "consistency": "push/notify_idle_sends_only_chosen_events",
          "messagenew": "push/notify_selected_messagenew_exists_then_fetch",
          "delayed": "push/notify_selected_delayed_holds_expunges"}


@pytest.mark.proves("push/notify_mailboxname_list_events", "notify.mailboxname")
@pytest.mark.proves("push/notify_idle_sends_only_chosen_events", "notify.idle-consistency")
@pytest.mark.proves("push/notify_selected_messagenew_exists_then_fetch", "notify.selected-messagenew")
@pytest.mark.proves("push/notify_selected_delayed_holds_expunges", "notify.selected-delayed")
def test_fakes_fail_the_notify_event_checks(lemonade, tmp_path, prove):
    fakes = {"good": NotifyingMailStore, "no-nonexistent": NotifyDeletedWithoutNonExistent,
             "flagchange-always": NotifyFlagChangeAlways, "exists-only": NotifyMessageNewExistsOnly,
             "expunge-at-once": NotifyDelayedExpungesAtOnce, "new-mail-never-sent": NotifyNewMailNeverSent}
    servers = {name: FakeImapServer(cls) for name, cls in fakes.items()}
    try:
        for s in servers.values():
            s.__enter__()
        args = []
        for name, s in servers.items():
            args += ["--target", str(s.target_file(tmp_path, name=name))]
        run = lemonade("run", *args, "--scenario", "direct", "-n", "2", "-k",
                       "notify_mailboxname or notify_idle_sends_only or notify_selected_messagenew "
                       "or notify_selected_delayed")
    finally:
        for s in servers.values():
            s.__exit__(None, None, None)
    results = {(r["check"], r["target"]): r for r in run.results["results"]}
    for check in CHECKS.values():
        r = results[(check, "good")]
        assert r["verdict"] == "pass", (check, r["message"])
    r = prove(run, CHECKS["mailboxname"], "notify.mailboxname", "\\NonExistent", target="no-nonexistent")
    assert r["evidence"]["timeline"]["verdict"] == "fail"
    prove(run, CHECKS["consistency"], "notify.idle-consistency", ["* 1 FETCH", "Flagged"], target="flagchange-always")
    # a chosen event that never comes is the server's failure too (it used to be a harness error)
    prove(run, CHECKS["consistency"], "notify.idle-consistency", ["did not send a chosen event", "'* 2 EXISTS'"],
          target="new-mail-never-sent")
    # SHOULD level: a failure is reported non-strict
    prove(run, CHECKS["messagenew"], "notify.selected-messagenew", "no FETCH for the new message", target="exists-only")
    prove(run, CHECKS["delayed"], "notify.selected-delayed", ["SELECTED-DELAYED", "* 1 EXPUNGE"],
          target="expunge-at-once")
    # each fake breaks only its own rule
    for name in ("no-nonexistent", "flagchange-always", "exists-only", "expunge-at-once"):
        broken = {c for c in CHECKS.values() if results[(c, name)]["verdict"] not in ("pass",)}
        assert len(broken) == 1, (name, broken)
    assert run.rc == 1
