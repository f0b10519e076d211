"""jmapc end to end against cyrus-push, and sse.reconnect-resume judged both ways on the same Cyrus."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .test_real_clients import no_password_in

FAKES = Path(__file__).resolve().parents[1] / "fakes" / "clients"
pytestmark = pytest.mark.slow


@pytest.mark.skipif(os.geteuid() != 0, reason="the Cyrus targets need root (master drops to user cyrus)")
@pytest.mark.proves("client/eventsource_reconnect_resume", "sse.reconnect-resume")
def test_jmapc_against_cyrus_push(lemonade, prove):
    """jmapc end to end, and sse.reconnect-resume both ways on one Cyrus: jmapc resumes with Last-Event-ID, the
    fake that reconnects without it (tests/fakes/clients/fake-sse-forgetful) fails for that reason."""
    run = lemonade("run", "--client", "jmapc", "--client", str(FAKES / "fake-sse-forgetful"), "--target", "cyrus-push",
                   "-n", "2", "-k", "fetch_complete or push_delivery or eventsource_reconnect",
                   "--scenario", "direct", "--scenario", "read-timeout", timeout=240)
    got = {(r["check"], r["subject"]): r for r in run.results["results"]}
    for check in ("client/fetch_complete", "client/push_delivery", "client/eventsource_reconnect_resume"):
        assert got[(check, "jmapc")]["verdict"] == "pass", (check, got[(check, "jmapc")]["message"])
    assert got[("client/eventsource_reconnect_resume", "jmapc")]["evidence"]["measurements"][
        "last_event_id_sent"]["value"]
    fake = got[("client/eventsource_reconnect_resume", "fake-sse-forgetful")]
    prove(fake, "client/eventsource_reconnect_resume", "sse.reconnect-resume",
          "the client reconnected without Last-Event-ID")
    assert fake["evidence"]["measurements"]["stream_requests"]["value"] >= 2
    no_password_in(run)
