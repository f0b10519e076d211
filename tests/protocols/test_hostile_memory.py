"""The floods of issue 20, each met by the suite's own client in a process of its own: every one ends early as a
fail, with no password in the message or transcript, and the process's peak resident memory stays far below
300 MB (the figures: ``bench/hostile_peers.py``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.fakes.hostile import BEHAVIOURS
from tests.fakes.scripted import ScriptedPeer

FLOODS = [("imap", "untagged-flood"), ("imap", "capability-50MB"), ("smtp", "endless-ehlo"),
          ("http", "endless-chunked"), ("eventsource", "endless-without-event-boundary"), ("websocket", "frame-2^63")]
MEMORY_BOUND_MB = 300


@pytest.mark.parametrize("protocol,behaviour", FLOODS)
def test_a_flood_ends_early_as_a_fail_in_bounded_memory(protocol, behaviour):
    with ScriptedPeer(BEHAVIOURS[protocol][behaviour]) as peer:
        p = subprocess.run([sys.executable, "-m", "tests.fakes.hostile", protocol, str(peer.port)], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["verdict"] == "fail" and r["exception"] in ("Flood", "ProtocolViolation"), r
    assert r["seconds"] < 5, f"the flood was not cut short of the 5 s deadline: {r}"
    assert r["max_rss_mb"] < MEMORY_BOUND_MB, r
    assert not r["password_leaked"], r
