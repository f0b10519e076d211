"""Every client check fails against a client that misbehaves on purpose, for its own reason
(tests/fakes/clients/: one adapter per misbehaviour), and the failure carries its evidence."""

from __future__ import annotations

from pathlib import Path

import pytest

FAKES = Path(__file__).resolve().parents[1] / "fakes" / "clients"
pytestmark = pytest.mark.slow


def by_case(run) -> dict[tuple[str, str, str], dict]:
    return {(r["check"], r["subject"], r["scenario"].split(":")[0]): r for r in run.results["results"]}


@pytest.mark.proves("client/fetch_complete", "client.fetch.complete")
@pytest.mark.proves("client/no_loss_no_duplicate", "client.sync.no-loss-no-duplicate")
@pytest.mark.proves("client/resync_cost", "client.sync.resync-cost")
@pytest.mark.proves("client/no_credentials_without_tls", "client.tls.no-cleartext-credentials")
@pytest.mark.proves("client/no_credentials_to_interceptor", "client.tls.verify-before-credentials")
def test_each_check_fails_for_its_own_reason(lemonade, prove):
    fakes = ["fake-skip-last", "fake-duplicates", "fake-redownload", "fake-opportunistic", "fake-trust-all"]
    args = [a for f in fakes for a in ("--client", str(FAKES / f))]
    run = lemonade("run", *args, "-n", "2", "-k", "fetch_complete or no_loss or resync_cost or credentials",
                   timeout=240)
    assert run.rc == 1, run.err
    got = by_case(run)
    expect = {
        ("client/fetch_complete", "fake-skip-last", "direct"): ("client.fetch.complete", "were never delivered"),
        ("client/no_loss_no_duplicate", "fake-duplicates", "kill"): ("client.sync.no-loss-no-duplicate",
                                                                     "delivered more than once"),
        ("client/no_loss_no_duplicate", "fake-duplicates", "flaky"): ("client.sync.no-loss-no-duplicate",
                                                                      "delivered more than once"),
        ("client/resync_cost", "fake-redownload", "direct"): ("client.sync.resync-cost", "O(mailbox) re-download"),
        ("client/no_credentials_without_tls", "fake-opportunistic", "strip-starttls"): (
            "client.tls.no-cleartext-credentials", "credentials in cleartext"),
        ("client/no_credentials_to_interceptor", "fake-trust-all", "inspecting"): (
            "client.tls.verify-before-credentials", "sent credentials through it"),
    }
    for key, (requirement, words) in expect.items():
        r = got[key]
        prove(r, key[0], requirement, words)
        assert r["role"] == "client" and r["subject"] == key[1]
        assert r["evidence"]["transcript"], key
    # the same fakes pass the checks whose rule they keep (each fake breaks one rule only)
    assert got[("client/no_loss_no_duplicate", "fake-redownload", "kill")]["verdict"] == "pass"
    assert got[("client/fetch_complete", "fake-opportunistic", "direct")]["verdict"] == "pass"
    assert got[("client/no_credentials_without_tls", "fake-skip-last", "strip-starttls")]["verdict"] == "pass"
    # a case the fake does not play (exit 127) is not-applicable, never fail
    assert got[("client/resync_cost", "fake-skip-last", "direct")]["verdict"] == "not-applicable"
    # the cleartext LOGIN is on the wire in the transcript, with the password redacted
    r = got[("client/no_credentials_without_tls", "fake-opportunistic", "strip-starttls")]
    login = [e["text"] for e in r["evidence"]["transcript"] if "LOGIN" in e["text"] and e["direction"] == "C"]
    assert login and all("<redacted>" in t for t in login)
    for f in run.dir.rglob("*"):
        if f.is_file():
            assert b"alice-Lemonade-pw1" not in f.read_bytes(), f
