"""client.qresync.use against real clients, read in clear through the terminating relay: interimap enables
QRESYNC and resynchronises with SELECT (QRESYNC (...)); mbsync never enables it (not-applicable, said why)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_real_clients_qresync_use(lemonade):
    run = lemonade("run", "--client", "interimap", "--client", "mbsync", "-n", "2", "-k", "qresync_use", timeout=180)
    got = {r["subject"]: r for r in run.results["results"]}
    inter = got["interimap"]
    assert inter["verdict"] == "pass", inter["message"]
    cmds = inter["evidence"]["resync_commands"]
    assert any("ENABLE QRESYNC" in c for c in cmds) and any("SELECT" in c and "(QRESYNC (" in c for c in cmds), cmds
    assert any("AUTHENTICATE PLAIN <redacted>" in c for c in cmds)  # in clear, credentials redacted
    mb = got["mbsync"]
    assert mb["verdict"] == "not-applicable" and "never sent ENABLE QRESYNC" in mb["message"], mb["message"]
    for f in run.dir.rglob("*"):
        if f.is_file():
            assert b"alice-Lemonade-pw1" not in f.read_bytes(), f
