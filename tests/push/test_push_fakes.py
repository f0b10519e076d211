"""Fakes that misbehave on purpose make the promptness and BADEVENT checks fail."""

from __future__ import annotations

import pytest

from tests.fakes.imap import FakeImapServer
from tests.fakes.push import (
    IdleNeverReports,
    IdleOneKeepaliveThenSilence,
    NotifyBadeventListsSupported,
    NotifyUnsupportedIsBad,
)


@pytest.mark.proves("push/idle_reports_new_mail_promptly", "lemonade.store.idle-timely")
@pytest.mark.proves("push/idle_reports_new_mail_promptly", "mobile.push.prompt-through-intermediary")
@pytest.mark.proves("push/idle_reports_new_mail_promptly", "idle.continuation")
@pytest.mark.proves("push/notify_unsupported_event_is_no_badevent", "notify.unsupported-event")
def test_fakes_fail_the_promptness_and_badevent_checks(lemonade, tmp_path, prove):
    """One run, two misbehaving fakes (IDLE that never reports new mail; NOTIFY answering an unsupported event
    BAD) and one that answers NO [BADEVENT (...)] as RFC 5465 asks, so the check can also pass."""
    with (FakeImapServer(IdleNeverReports) as silent, FakeImapServer(NotifyUnsupportedIsBad) as bad,
          FakeImapServer(NotifyBadeventListsSupported) as good):
        run = lemonade("run", "--target", str(silent.target_file(tmp_path, name="idle-never-reports")),
                       "--target", str(bad.target_file(tmp_path, name="notify-bad")),
                       "--target", str(good.target_file(tmp_path, name="notify-good")), "--scenario", "direct",
                       "-k", "idle_reports_new_mail_promptly or notify_unsupported_event")
    results = {(r["check"], r["target"]): r for r in run.results["results"]}
    r = prove(run, "push/idle_reports_new_mail_promptly", "lemonade.store.idle-timely", "no '* n EXISTS'",
              target="idle-never-reports")
    prove(run, "push/idle_reports_new_mail_promptly", "mobile.push.prompt-through-intermediary", "no '* n EXISTS'",
          target="idle-never-reports")
    prove(run, "push/idle_reports_new_mail_promptly", "idle.continuation", "no '* n EXISTS'", target="idle-never-reports")
    assert r["evidence"]["timeline"]["verdict"] == "fail"
    assert any(s["kind"] == "waiting" and "never" in s["label"] for s in r["evidence"]["timeline"]["spans"])
    prove(run, "push/notify_unsupported_event_is_no_badevent", "notify.unsupported-event", ["tagged NO", "BAD"],
          target="notify-bad")
    assert results[("push/notify_unsupported_event_is_no_badevent", "notify-good")]["verdict"] == "pass"
    assert run.rc == 1


@pytest.mark.proves("push/silent_drop_noticed", "mobile.push.silent-drop-noticed")
def test_one_early_keepalive_does_not_make_a_schedule(lemonade, tmp_path, prove):
    """A server that sends one line right after IDLE and then nothing for minutes used to pass: the learned gap was cut
    by the NAT's own drop. The schedule is now learned from what the server sends, and needs two keepalives."""
    with FakeImapServer(IdleOneKeepaliveThenSilence) as fake:
        run = lemonade("run", "--target", str(fake.target_file(tmp_path, name="one-keepalive")),
                       "--scenario", "nat-idle:timeout=3,mode=silent", "-k", "silent_drop_noticed")
    r = prove(run, "push/silent_drop_noticed", "mobile.push.silent-drop-noticed",
              ["fewer than two keepalives (1)", "no schedule a client can learn"])
    assert r["evidence"]["measurements"]["blackhole_at"]["natural"] is True, r["evidence"]["measurements"]
    assert r["evidence"]["timeline"]["verdict"] == "fail"
