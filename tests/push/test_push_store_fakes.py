"""The IDLE and NOTIFY checks against a fake store with push (tests/fakes/push_store.py): it passes them all as it
stands, and each misbehaviour fails exactly the check of the rule it breaks, for that rule's reason."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest

from conformance.catalog import PROFILES_DIR
from tests.fakes.imap import FakeImapServer
from tests.fakes.push_store import DeliveringSmtp, PushStore, store_target
from tests.fakes.starttls import server_context

NOTIFY_CHECKS = ("notify_set_returns_pending_changes", "notify_status_indicator", "notify_unsupported_event",
                 "notify_invalid_event_pairs", "notify_ignores_unknown_mailboxes", "notify_flag_change_fetch",
                 "notify_events_between_commands", "notify_other_mailbox_status")
IDLE_CHECKS = ("idle_continuation_and_done", "idle_reports_flag_changes_and_expunges")

# target name -> (misbehaviours switched on, the checks it runs); faults that touch different checks share a fake
FAULTS = {
    "notify-set-faults": (("notify_set_no_flush", "status_without_uidvalidity", "accept_invalid_pairs",
                           "leak_unknown_mailbox"),
                          "notify_set_returns_pending_changes or notify_status_indicator or notify_invalid_event_pairs "
                          "or notify_ignores_unknown_mailboxes"),
    "event-faults": (("fetch_without_uid", "notify_only_during_commands", "status_without_uidnext"),
                     "notify_flag_change_fetch or idle_reports_flag_changes or notify_events_between_commands "
                     "or notify_other_mailbox_status"),
    "idle-refused": (("idle_no_continuation",), "idle_continuation_and_done"),
    "idle-faults": (("idle_hangs_on_other_command", "expunge_between_commands"),
                    "idle_continuation_and_done or idle_reports_flag_changes_and_expunges"),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One `lemonade run` per fake (the conformant store runs every check), concurrently."""
    from tests.conftest import run_cli

    tmp = tmp_path_factory.mktemp("push-store")
    with ExitStack() as stack:
        jobs = {"good": (PushStore, " or ".join(NOTIFY_CHECKS + IDLE_CHECKS))}
        for name, (knobs, k) in FAULTS.items():
            jobs[name] = (type(f"PushStore_{name}", (PushStore,), dict.fromkeys(knobs, True)), k)
        args = {}
        for name, (session, k) in jobs.items():
            server = stack.enter_context(FakeImapServer(session))
            args[name] = ("run", "--target", str(store_target(tmp, server, name)), "--scenario", "direct", "-k", k)
        with ThreadPoolExecutor(len(args)) as pool:
            done = {name: pool.submit(run_cli, tmp / name, *a) for name, a in args.items()}
            yield {name: f.result() for name, f in done.items()}


def test_the_conformant_push_store_passes_every_idle_and_notify_check(runs):
    run = runs["good"]
    verdicts = {r["check"]: (r["verdict"], r["message"]) for r in run.results["results"]}
    assert len(verdicts) == len(NOTIFY_CHECKS + IDLE_CHECKS), verdicts
    assert {c: v for c, (v, _) in verdicts.items()} == dict.fromkeys(verdicts, "pass"), verdicts


@pytest.mark.proves("push/notify_set_returns_pending_changes", "notify.set-implicit-noop")
@pytest.mark.proves("push/notify_status_indicator", "notify.status-indicator")
@pytest.mark.proves("push/notify_invalid_event_pairs_are_bad", "notify.event-pairing")
@pytest.mark.proves("push/notify_ignores_unknown_mailboxes", "notify.ignore-unknown-mailbox")
@pytest.mark.proves("push/notify_flag_change_fetch_has_uid_and_flags", "notify.flagchange-fetch")
@pytest.mark.proves("push/notify_events_between_commands", "notify.between-commands")
@pytest.mark.proves("push/notify_other_mailbox_status_during_idle", "notify.other-mailbox-status")
def test_each_notify_fault_fails_its_check(runs, prove):
    prove(runs["notify-set-faults"], "push/notify_set_returns_pending_changes", "notify.set-implicit-noop",
          "NOTIFY SET returned no '* 2 EXISTS'")
    prove(runs["notify-set-faults"], "push/notify_status_indicator", "notify.status-indicator", "lacks UIDVALIDITY")
    prove(runs["notify-set-faults"], "push/notify_invalid_event_pairs_are_bad", "notify.event-pairing",
          ["NOTIFY SET (selected (FlagChange)) is an invalid combination", "must get tagged BAD"])
    prove(runs["notify-set-faults"], "push/notify_ignores_unknown_mailboxes", "notify.ignore-unknown-mailbox",
          ["said something about the non-existent mailbox", "NONEXISTENT"])
    prove(runs["event-faults"], "push/notify_flag_change_fetch_has_uid_and_flags", "notify.flagchange-fetch",
          ["must carry UID and FLAGS", "UID missing"])
    prove(runs["event-faults"], "push/notify_events_between_commands", "notify.between-commands",
          "no unsolicited STATUS for the watched mailbox")
    prove(runs["event-faults"], "push/notify_other_mailbox_status_during_idle", "notify.other-mailbox-status",
          "STATUS after new mail lacks UIDNEXT")


@pytest.mark.proves("push/idle_continuation_and_done", "idle.continuation")
@pytest.mark.proves("push/idle_continuation_and_done", "idle.done")
@pytest.mark.proves("push/idle_reports_flag_changes_and_expunges", "idle.fetch-has-uid")
@pytest.mark.proves("push/idle_reports_flag_changes_and_expunges", "idle.expunge-rules")
def test_each_idle_fault_fails_its_check(runs, prove):
    r = prove(runs["idle-refused"], "push/idle_continuation_and_done", "idle.continuation",
              ["IDLE was not answered with a '+' continuation", "IDLE not available"])
    assert r["requirement_verdicts"]["idle.done"]["verdict"] == "skipped", r["requirement_verdicts"]
    r = prove(runs["idle-faults"], "push/idle_continuation_and_done", "idle.done",
              "a command sent instead of DONE left IDLE hanging")
    assert r["requirement_verdicts"]["idle.continuation"]["verdict"] == "pass", "a hang is no longer non-strict"
    r = prove(runs["event-faults"], "push/idle_reports_flag_changes_and_expunges", "idle.fetch-has-uid",
              "QRESYNC enabled (RFC 7162 3.2; RFC 5162 erratum 1807) requires UID in every FETCH")
    assert r["requirement_verdicts"]["idle.expunge-rules"]["verdict"] == "pass"
    r = prove(runs["idle-faults"], "push/idle_reports_flag_changes_and_expunges", "idle.expunge-rules",
              "EXPUNGE sent with no command in progress")
    assert r["requirement_verdicts"]["idle.fetch-has-uid"]["verdict"] == "pass"


@pytest.mark.proves("push/idle_reports_submitted_mail", "lemonade.store.idle-timely")
def test_submitted_mail_delivered_but_never_pushed_fails(lemonade, tmp_path, prove):
    """Submission delivers into the INBOX, the idling client is never told: the check now looks in the INBOX and
    fails, where it used to answer not-applicable."""
    silent = type("PushStore_silent", (PushStore,), {"idle_reports_nothing": True})
    with FakeImapServer(silent) as store, DeliveringSmtp(store, server_context(tmp_path)) as smtp:
        run = lemonade("run", "--target", str(store_target(tmp_path, store, "delivers-silently", smtp)),
                       "--scenario", "direct", "-k", "idle_reports_submitted_mail")
    prove(run, "push/idle_reports_submitted_mail", "lemonade.store.idle-timely",
          ["was delivered to the INBOX", "was not told"])


@pytest.mark.proves("push/autologout_not_below_30_minutes", "idle.autologout-floor")
def test_autologout_after_a_second_fails(lemonade, tmp_path, prove):
    """A server that logs a silent session out after a second fails the 30-minute floor. The check runs at full depth
    only; a copy of the catalog shortens its silent_for to 3 s so the proof takes seconds."""
    profiles = tmp_path / "profiles"
    shutil.copytree(PROFILES_DIR, profiles)
    push = profiles / "requirements" / "push.yaml"
    text = push.read_text()
    assert "full: 1740" in text
    push.write_text(text.replace("full: 1740", "full: 3"))
    impatient = type("PushStore_impatient", (PushStore,), {"bye_after_silence": 1.0})
    with FakeImapServer(impatient) as store:
        run = lemonade("run", "--target", str(store_target(tmp_path, store, "impatient")), "--depth", "full",
                       "--scenario", "direct", "-k", "autologout_not_below_30_minutes",
                       prelude=f"import pathlib, conformance.catalog as c; c.PROFILES_DIR = pathlib.Path({str(profiles)!r})")
    prove(run, "push/autologout_not_below_30_minutes", "idle.autologout-floor",
          ["session ended after", "Autologout", "RFC 9051 5.4 requires at least 30 minutes"])
