"""Push checks end to end against the embedded Dovecot (1 s keepalive): every case passes, with timelines."""

from __future__ import annotations

from tests.push.support import by_case

PUSH_UNDER_INTERMEDIARIES = "push_survives_idle_timeout or silent_drop_noticed or idle_reports_new_mail_promptly"


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
