"""Push checks end to end: pass against the embedded Dovecot, FAIL with timelines when the keepalive is too long,
and FAIL against fakes that never report new mail or answer an unsupported NOTIFY event with BAD."""

from __future__ import annotations

from conformance.providers.dovecot import DovecotProvider
from conformance.targets import write_target_file
from tests.fakes.imap import FakeImapServer
from tests.fakes.push import IdleNeverReports, NotifyBadeventListsSupported, NotifyUnsupportedIsBad

PUSH_UNDER_INTERMEDIARIES = "push_survives_idle_timeout or silent_drop_noticed or idle_reports_new_mail_promptly"


def by_case(run) -> dict[str, dict]:
    return {f"{r['check']}|{r['scenario']}": r for r in run.results["results"]}


def test_push_passes_on_dovecot_direct_and_behind_nat_idle(lemonade):
    """Short keepalive (1 s, quick depth) against nat-idle:timeout=3 (quick default): every push case passes."""
    run = lemonade("run", "-n", "2", "-k", PUSH_UNDER_INTERMEDIARIES)
    results = by_case(run)
    assert run.rc == 0, run.out + run.err
    for scenario in ("direct", "nat-idle:timeout=3,mode=rst", "nat-idle:timeout=3,mode=fin",
                     "nat-idle:timeout=3,mode=silent", "lifetime:max=5,mode=fin"):
        r = results[f"push/push_survives_idle_timeout|{scenario}"]
        assert r["verdict"] == "pass", r["message"]
        m = r["evidence"]["measurements"]
        assert m["longest_gap"]["value"] < 3 and m["idle_timeout"]["value"] == 3
        assert r["evidence"]["timeline"]["version"] == 1
        kinds = {e["kind"] for e in r["evidence"]["timeline"]["events"]}
        assert {"client", "keepalive", "change"} <= kinds, kinds
        if not scenario.startswith("lifetime"):
            assert "notification" in kinds and m["survived"]["value"] is True
    assert results["push/silent_drop_noticed|nat-idle:timeout=3,mode=silent"]["verdict"] == "pass"
    assert results["push/idle_reports_new_mail_promptly|nat-idle:timeout=3,mode=rst"]["verdict"] == "pass"
    html = (run.dir / "index.html").read_text()
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="timeline"') >= 7


def test_long_keepalive_fails_with_timeline_evidence(lemonade, tmp_path):
    """The same checks against a Dovecot whose keepalive is longer than the intermediary's timeout (3 s).

    Dovecot aligns the first keepalive of an IDLE to a slot derived from the clock and the client address, so it
    comes after a random 0..interval seconds; a 60 min interval keeps it out of the few observed seconds
    (a 20 s interval would let it land inside them now and then, and a quick observation would see a short gap).
    """
    prov = DovecotProvider("quick", settings={"imap_idle_notify_interval": "60 mins"})
    target = prov.start()
    try:
        f = write_target_file(target, tmp_path / "slow-keepalive.toml")
        run = lemonade("run", "--target", str(f), "-n", "2", "-k", "push_survives_idle_timeout or silent_drop_noticed",
                       "--scenario", "direct", "--scenario", "nat-idle:timeout=3,mode=rst",
                       "--scenario", "nat-idle:timeout=3,mode=silent")
    finally:
        prov.stop()
    results = by_case(run)
    assert run.rc == 1, run.out + run.err
    direct = results["push/push_survives_idle_timeout|direct"]
    assert direct["verdict"] == "fail" and "not below the idle timeout 3 s" in direct["message"], direct["message"]
    rst = results["push/push_survives_idle_timeout|nat-idle:timeout=3,mode=rst"]
    assert rst["verdict"] == "fail" and "did not survive an idle timeout of 3 s" in rst["message"], rst["message"]
    tl = rst["evidence"]["timeline"]
    assert tl["verdict"] == "fail" and any(e["kind"] == "intermediary" for e in tl["events"])
    assert any(s["kind"] == "gap" and s["end"] - s["start"] >= 2.9 for s in tl["spans"])
    silent = results["push/push_survives_idle_timeout|nat-idle:timeout=3,mode=silent"]
    assert silent["verdict"] == "fail" and "silent black hole nobody noticed" in silent["message"], silent["message"]
    assert any(s["kind"] == "blackhole" for s in silent["evidence"]["timeline"]["spans"])
    noticed = results["push/silent_drop_noticed|nat-idle:timeout=3,mode=silent"]
    assert noticed["verdict"] == "fail" and "no keepalive" in noticed["message"], noticed["message"]


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
