"""Fakes that misbehave on purpose make the promptness and BADEVENT checks fail."""

from __future__ import annotations

from tests.fakes.imap import FakeImapServer
from tests.fakes.push import IdleNeverReports, NotifyBadeventListsSupported, NotifyUnsupportedIsBad


def test_fakes_fail_the_promptness_and_badevent_checks(lemonade, tmp_path):
    """One run, two misbehaving fakes (IDLE that never reports new mail; NOTIFY answering an unsupported event
    BAD) and one that answers NO [BADEVENT (...)] as RFC 5465 asks, so the check can also pass."""
    with (FakeImapServer(IdleNeverReports) as silent, FakeImapServer(NotifyUnsupportedIsBad) as bad,
          FakeImapServer(NotifyBadeventListsSupported) as good):
        run = lemonade("run", "--target", str(silent.target_file(tmp_path, name="idle-never-reports")),
                       "--target", str(bad.target_file(tmp_path, name="notify-bad")),
                       "--target", str(good.target_file(tmp_path, name="notify-good")), "--scenario", "direct",
                       "-k", "idle_reports_new_mail_promptly or notify_unsupported_event")
    results = {(r["check"], r["target"]): r for r in run.results["results"]}
    r = results[("push/idle_reports_new_mail_promptly", "idle-never-reports")]
    assert r["verdict"] == "fail" and "no '* n EXISTS'" in r["message"], r["message"]
    assert r["evidence"]["timeline"]["verdict"] == "fail"
    assert any(s["kind"] == "waiting" and "never" in s["label"] for s in r["evidence"]["timeline"]["spans"])
    r = results[("push/notify_unsupported_event_is_no_badevent", "notify-bad")]
    assert r["verdict"] == "fail" and "tagged NO" in r["message"] and "BAD" in r["message"], r["message"]
    assert results[("push/notify_unsupported_event_is_no_badevent", "notify-good")]["verdict"] == "pass"
    assert run.rc == 1
