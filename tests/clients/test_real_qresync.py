"""client.qresync.use, read in clear through the terminating relay, all three ways in one run: interimap enables
QRESYNC and resynchronises with SELECT (QRESYNC (...)) (pass); mbsync never enables it (not-applicable, said
why); fake-no-qresync enables it and then selects plainly and fetches every message's FLAGS (fails for that)."""

from __future__ import annotations

from pathlib import Path

import pytest

FAKE = Path(__file__).resolve().parents[1] / "fakes" / "clients" / "fake-no-qresync"
pytestmark = pytest.mark.slow


@pytest.mark.proves("client/qresync_use", "client.qresync.use")
def test_qresync_use_real_clients_and_fake(lemonade, prove):
    run = lemonade("run", "--client", "interimap", "--client", "mbsync", "--client", str(FAKE), "-n", "2",
                   "-k", "qresync_use", timeout=180)
    got = {r["subject"]: r for r in run.results["results"]}
    inter = got["interimap"]
    assert inter["verdict"] == "pass", inter["message"]
    cmds = inter["evidence"]["resync_commands"]
    assert any("ENABLE QRESYNC" in c for c in cmds) and any("SELECT" in c and "(QRESYNC (" in c for c in cmds), cmds
    assert any("AUTHENTICATE PLAIN <redacted>" in c for c in cmds)  # in clear, credentials redacted
    mb = got["mbsync"]
    assert mb["verdict"] == "not-applicable" and "never sent ENABLE QRESYNC" in mb["message"], mb["message"]
    fake = got["fake-no-qresync"]
    prove(fake, "client/qresync_use", "client.qresync.use", "SELECT/EXAMINE without (QRESYNC ...)")
    # a SHOULD: its failure is non-strict, for the requirement and the result
    assert fake["verdict"] == fake["requirement_verdicts"]["client.qresync.use"]["verdict"] == "non-strict"
    assert "SELECT/EXAMINE without (QRESYNC ...)" in fake["message"], fake["message"]
    assert "every message's FLAGS without CHANGEDSINCE" in fake["message"] and "UID FETCH 1:* (FLAGS)" in fake["message"]
    assert any("ENABLE QRESYNC" in c for c in fake["evidence"]["resync_commands"])
    for f in run.dir.rglob("*"):
        if f.is_file():
            assert b"alice-Lemonade-pw1" not in f.read_bytes(), f
