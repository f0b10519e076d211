"""A real scenario through `lemonade run`: checks pinned to the emulator run under its real counterpart, the
result records the program's version and kept logs, and the report links them and the calibration table."""

from __future__ import annotations

from conformance.intermediaries.real.haproxy import HAPROXY

from .conftest import installed


def test_run_under_real_haproxy_records_version_and_logs(lemonade):
    installed(HAPROXY)
    run = lemonade("run", "--scenario", "real-haproxy:timeout=5", "--profile", "imap-push",
                   "-k", "push_survives_idle_timeout")
    assert run.rc in (0, 1), run.err[-2000:]
    r = run.result("push/push_survives_idle_timeout")  # pinned to nat-idle: runs under real-haproxy too
    assert r["scenario"] == "real-haproxy:timeout=5"
    fact = r["evidence"]["measurements"]["intermediary"]
    assert fact["value"].startswith("haproxy 2.") and fact["calibration"].startswith("README.md#calibration")
    for log in fact["logs"]:
        assert (run.dir / log).is_file(), log
    html = (run.dir / "index.html").read_text()
    assert "calibration table (README)" in html and fact["logs"][0] in html
