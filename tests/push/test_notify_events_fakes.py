"""Fakes that break one NOTIFY rule each make the MailboxName, IDLE-consistency and MessageNew checks fail; a fake
that keeps the rules lets all three pass."""

from __future__ import annotations

from tests.fakes.imap import FakeImapServer
from tests.fakes.push import (
    NotifyDelayedExpungesAtOnce,
    NotifyDeletedWithoutNonExistent,
    NotifyFlagChangeAlways,
    NotifyingMailStore,
    NotifyMessageNewExistsOnly,
)

CHECKS = {"mailboxname": "push/notify_mailboxname_list_events", "consistency": "push/notify_idle_sends_only_chosen_events",
          "messagenew": "push/notify_selected_messagenew_exists_then_fetch",
          "delayed": "push/notify_selected_delayed_holds_expunges"}


def test_fakes_fail_the_notify_event_checks(lemonade, tmp_path):
    fakes = {"good": NotifyingMailStore, "no-nonexistent": NotifyDeletedWithoutNonExistent,
             "flagchange-always": NotifyFlagChangeAlways, "exists-only": NotifyMessageNewExistsOnly,
             "expunge-at-once": NotifyDelayedExpungesAtOnce}
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
    r = results[(CHECKS["mailboxname"], "no-nonexistent")]
    assert r["verdict"] == "fail" and "\\NonExistent" in r["message"], r["message"]
    assert r["evidence"]["timeline"]["verdict"] == "fail"
    r = results[(CHECKS["consistency"], "flagchange-always")]
    assert r["verdict"] == "fail" and "* 1 FETCH" in r["message"] and "Flagged" in r["message"], r["message"]
    r = results[(CHECKS["messagenew"], "exists-only")]  # SHOULD level: a failure is reported non-strict
    assert r["verdict"] == "non-strict" and "no FETCH for the new message" in r["message"], r["message"]
    r = results[(CHECKS["delayed"], "expunge-at-once")]
    assert r["verdict"] == "fail" and "SELECTED-DELAYED" in r["message"] and "* 1 EXPUNGE" in r["message"], r["message"]
    # each fake breaks only its own rule
    for name in ("no-nonexistent", "flagchange-always", "exists-only", "expunge-at-once"):
        broken = {c for c in CHECKS.values() if results[(c, name)]["verdict"] not in ("pass",)}
        assert len(broken) == 1, (name, broken)
    assert run.rc == 1
