"""The PushSubscription checks (RFC 8620 7.2) against the scripted peer: all pass against the conformant one (set up
as a test server: it allows the suite's receiver at 127.0.0.1 and nothing else internal), and each fails for its own
reason against a peer that breaks one rule. Each proving test names its check and requirement (marker ``proves``).
Every peer is a target of one shared run (one start-up for all the proofs)."""

from __future__ import annotations

import pytest

from tests.jmap.peers import assert_fails, assert_passes, judged, run_peers

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


def test_each_pushsub_rule_broken_fails_its_check(shared):
    """One peer, six broken rules, each failing exactly the check that judges it."""
    results = shared[1]["broken"]
    # proves("jmap/pushsub_verification", "jmap.pushsub.verification")
    assert_fails(results, "jmap/pushsub_verification", "jmap.pushsub.verification", "before it was verified")
    # proves("jmap/pushsub_post_format", "jmap.pushsub.post-format")
    assert_fails(results, "jmap/pushsub_post_format", "jmap.pushsub.post-format", "no TTL header")
    # proves("jmap/pushsub_encrypted", "jmap.pushsub.encrypted")
    assert_fails(results, "jmap/pushsub_encrypted", "jmap.pushsub.encrypted", "expected aes128gcm")
    # proves("jmap/pushsub_get_hides", "jmap.pushsub.get-hides")
    assert_fails(results, "jmap/pushsub_get_hides", "jmap.pushsub.get-hides", "expected the error forbidden")
    # proves("jmap/pushsub_expiry", "jmap.pushsub.expiry")
    assert_fails(results, "jmap/pushsub_expiry", "jmap.pushsub.expiry", "at least 48 h in the future")
    # proves("jmap/pushsub_abuse_limits", "jmap.pushsub.abuse-limits")
    assert_fails(results, "jmap/pushsub_abuse_limits", "jmap.pushsub.abuse-limits", "in the clear")


def test_second_reasons_fail_the_same_checks(shared):
    """Any code accepted, 429 ignored, pushes after expires, pushes to any internal address, no subscription limit."""
    results = shared[1]["second"]
    # proves("jmap/pushsub_verification", "jmap.pushsub.verification")
    assert_fails(results, "jmap/pushsub_verification", "jmap.pushsub.verification", "expected notUpdated invalidProperties")
    # proves("jmap/pushsub_post_format", "jmap.pushsub.post-format")
    assert_fails(results, "jmap/pushsub_post_format", "jmap.pushsub.post-format", "a 429 must slow the pushes down")
    # proves("jmap/pushsub_expiry", "jmap.pushsub.expiry")
    assert_fails(results, "jmap/pushsub_expiry", "jmap.pushsub.expiry", "after its expires")
    # proves("jmap/pushsub_abuse_limits", "jmap.pushsub.abuse-limits")
    message = judged(results, "jmap/pushsub_abuse_limits", "jmap.pushsub.abuse-limits")["message"]
    assert "127.0.0.2" in message and "without any limit" in message, message


def test_no_pushsubscription_fails_verification_and_leaves_the_rest_not_applicable(shared):
    results = shared[1]["unknown-method"]
    # proves("jmap/pushsub_verification", "jmap.pushsub.verification")
    assert_fails(results, "jmap/pushsub_verification", "jmap.pushsub.verification", "does not implement PushSubscription")
    for check in PUSHSUB - {"jmap/pushsub_verification"}:
        assert results[check]["verdict"] == "not-applicable" and "unknownMethod" in results[check]["message"], check


def test_missing_verification_push_and_a_production_policy(shared):
    """No PushVerification at all fails verification; a server refusing even 127.0.0.1 keeps RFC 8620 8.7 (abuse
    limits pass) and leaves verification not-applicable, not failed."""
    results = shared[1]["no-verification"]
    # proves("jmap/pushsub_verification", "jmap.pushsub.verification")
    assert_fails(results, "jmap/pushsub_verification", "jmap.pushsub.verification", "no PushVerification reached")
    results = shared[1]["refuse-loopback"]
    assert results["jmap/pushsub_abuse_limits"]["verdict"] == "pass", results["jmap/pushsub_abuse_limits"]["message"]
    assert "count limit not observable" in results["jmap/pushsub_abuse_limits"]["message"]
    v = results["jmap/pushsub_verification"]
    assert v["verdict"] == "not-applicable" and "refused the suite's loopback push URL" in v["message"], v
