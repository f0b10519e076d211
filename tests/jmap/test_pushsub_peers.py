"""The PushSubscription checks (RFC 8620 7.2) against the scripted peer: all pass against the conformant one (set up
as a test server: it allows the suite's receiver at 127.0.0.1 and nothing else internal), and each fails for its own
reason against a peer that breaks one rule. Each proving test names its checks and requirements (markers ``proves``)
and asserts them through ``prove``. Every peer is a target of one shared run (one start-up for all the proofs)."""

from __future__ import annotations

import pytest

from tests.jmap.peers import assert_passes, proven, run_peers

PUSHSUB = {"jmap/pushsub_verification", "jmap/pushsub_post_format", "jmap/pushsub_encrypted", "jmap/pushsub_get_hides",
           "jmap/pushsub_expiry", "jmap/pushsub_abuse_limits"}
PEERS = {
    "conformant": (),
    "broken": ("push-before-verify", "no-ttl", "plaintext-push", "get-shows-url", "short-expiry-cap", "accept-http"),
    "second": ("accept-any-code", "ignore-429", "push-after-expiry", "allow-internal", "no-sub-limit"),
    "unknown-method": ("no-pushsub",),  # no peer's name may contain "pushsub": -k matches target names too
    "no-verification": ("no-verification",),
    "refuse-loopback": ("refuse-loopback",),
}


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """(rc, {peer: {check: result}}) of one run of every PushSubscription check against every peer."""
    from tests.conftest import cli_runner

    tmp = tmp_path_factory.mktemp("pushsub")
    run, by_peer = run_peers(cli_runner(tmp), tmp, "pushsub", PEERS)
    return run, by_peer


def test_conformant_peer_passes_every_pushsub_check(shared):
    run, peers = shared
    results = peers["conformant"]
    assert_passes(results, PUSHSUB)
    assert "aes128gcm" in results["jmap/pushsub_encrypted"]["message"]
    assert run.rc == 1, run.out  # the other peers fail; the conformant one alone has no fail (above)
    assert all(set(r) == PUSHSUB for r in peers.values()), {p: sorted(set(r) - PUSHSUB)[:5] for p, r in peers.items()}


@pytest.mark.proves("jmap/pushsub_verification", "jmap.pushsub.verification")
@pytest.mark.proves("jmap/pushsub_post_format", "jmap.pushsub.post-format")
@pytest.mark.proves("jmap/pushsub_encrypted", "jmap.pushsub.encrypted")
@pytest.mark.proves("jmap/pushsub_get_hides", "jmap.pushsub.get-hides")
@pytest.mark.proves("jmap/pushsub_expiry", "jmap.pushsub.expiry")
@pytest.mark.proves("jmap/pushsub_abuse_limits", "jmap.pushsub.abuse-limits")
def test_each_pushsub_rule_broken_fails_its_check(shared, prove):
    """One peer, six broken rules, each failing exactly the check that judges it."""
    run, t = shared[0], "fake-jmap-broken"
    proven(prove, run, "jmap/pushsub_verification", "jmap.pushsub.verification", "before it was verified", target=t)
    proven(prove, run, "jmap/pushsub_post_format", "jmap.pushsub.post-format", "no TTL header", target=t)
    proven(prove, run, "jmap/pushsub_encrypted", "jmap.pushsub.encrypted", "expected aes128gcm", target=t)
    proven(prove, run, "jmap/pushsub_get_hides", "jmap.pushsub.get-hides", "expected the error forbidden", target=t)
    proven(prove, run, "jmap/pushsub_expiry", "jmap.pushsub.expiry", "at least 48 h in the future", target=t)
    proven(prove, run, "jmap/pushsub_abuse_limits", "jmap.pushsub.abuse-limits", "in the clear", target=t)


@pytest.mark.proves("jmap/pushsub_verification", "jmap.pushsub.verification")
@pytest.mark.proves("jmap/pushsub_post_format", "jmap.pushsub.post-format")
@pytest.mark.proves("jmap/pushsub_expiry", "jmap.pushsub.expiry")
@pytest.mark.proves("jmap/pushsub_abuse_limits", "jmap.pushsub.abuse-limits")
def test_second_reasons_fail_the_same_checks(shared, prove):
    """Any code accepted, 429 ignored, pushes after expires, pushes to any internal address, no subscription limit."""
    run, t = shared[0], "fake-jmap-second"
    proven(prove, run, "jmap/pushsub_verification", "jmap.pushsub.verification",
           "expected notUpdated invalidProperties", target=t)
    proven(prove, run, "jmap/pushsub_post_format", "jmap.pushsub.post-format", "a 429 must slow the pushes down",
           target=t)
    proven(prove, run, "jmap/pushsub_expiry", "jmap.pushsub.expiry", "after its expires", target=t)
    proven(prove, run, "jmap/pushsub_abuse_limits", "jmap.pushsub.abuse-limits", ["127.0.0.2", "without any limit"],
           target=t)


@pytest.mark.proves("jmap/pushsub_verification", "jmap.pushsub.verification")
def test_no_pushsubscription_fails_verification_and_leaves_the_rest_not_applicable(shared, prove):
    run, peers = shared
    proven(prove, run, "jmap/pushsub_verification", "jmap.pushsub.verification",
           "does not implement PushSubscription", target="fake-jmap-unknown-method")
    results = peers["unknown-method"]
    for check in PUSHSUB - {"jmap/pushsub_verification"}:
        assert results[check]["verdict"] == "not-applicable" and "unknownMethod" in results[check]["message"], check


@pytest.mark.proves("jmap/pushsub_verification", "jmap.pushsub.verification")
def test_missing_verification_push_and_a_production_policy(shared, prove):
    """No PushVerification at all fails verification; a server refusing even 127.0.0.1 keeps RFC 8620 8.7 (abuse
    limits pass) and leaves verification not-applicable, not failed."""
    run, peers = shared
    proven(prove, run, "jmap/pushsub_verification", "jmap.pushsub.verification", "no PushVerification reached",
           target="fake-jmap-no-verification")
    results = peers["refuse-loopback"]
    assert results["jmap/pushsub_abuse_limits"]["verdict"] == "pass", results["jmap/pushsub_abuse_limits"]["message"]
    assert "count limit not observable" in results["jmap/pushsub_abuse_limits"]["message"]
    v = results["jmap/pushsub_verification"]
    assert v["verdict"] == "not-applicable" and "refused the suite's loopback push URL" in v["message"], v
