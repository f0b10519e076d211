"""The JMAP store, EmailDelivery and HTTP-behaviour checks against the scripted peer: all pass against the conformant
one, and each fails for its own reason against a peer that breaks one rule (one peer carries several broken rules,
each judged by a different check). Each proving test names its checks and requirements (markers ``proves``) and
asserts them through ``prove``."""

from __future__ import annotations

import pytest

from conformance.intermediaries.real.nginx import NGINX
from tests.jmap.peers import assert_passes, proven, run_peer, run_peers
from tests.real.conftest import installed

# email_delivery_push judges what moves EmailDelivery on a quiet account: its passing run is alone (test_comment_keepalive)
CHECKS = {"jmap/upload_private", "jmap/import_errors", "jmap/changes_reach_back", "jmap/no_cache",
          "jmap/chunked_both_ways", "jmap/stream_outlives_idle_timeout", "jmap/events_framed_in_payload",
          "jmap/eventsource_through_default_nginx"}
K = " or ".join(c.split("/")[1] for c in CHECKS)


@pytest.fixture
def nginx():
    installed(NGINX)  # the nginx check runs behind Debian's nginx (real-nginx)


def test_conformant_peer_passes(lemonade, tmp_path, nginx):
    run, results = run_peer(lemonade, tmp_path, K + " or blob_retention")
    assert_passes(results, CHECKS)
    assert run.rc == 0, run.out
    r = results["jmap/blob_retention"]  # full depth only (an hour at a conformant server)
    assert r["verdict"] == "skipped" and "--depth full" in r["message"], r


@pytest.mark.proves("jmap/upload_private", "jmap.upload.private")
@pytest.mark.proves("jmap/import_errors", "jmapmail.import.errors")
@pytest.mark.proves("jmap/changes_reach_back", "jmap.changes.retention")
@pytest.mark.proves("jmap/email_delivery_push", "jmapmail.emaildelivery")
@pytest.mark.proves("jmap/no_cache", "http.no-cache")
@pytest.mark.proves("jmap/chunked_both_ways", "http.chunked-parse")
@pytest.mark.proves("jmap/stream_outlives_idle_timeout", "http.idle-timeout")
@pytest.mark.proves("jmap/events_framed_in_payload", "http.intermediary-buffering")
@pytest.mark.proves("jmap/eventsource_through_default_nginx", "proxy.nginx-buffering")
def test_each_broken_rule_fails_its_check(lemonade, tmp_path, nginx, prove):
    """SHOULD and MAY rules (changes reach-back, Cache-Control, idle timeout, framing in the payload) fail non-strict
    (prove reads the level from the catalog)."""
    faults = ("leaky-blobs", "sloppy-import", "short-changes-log", "no-delivery-type", "cacheable",
              "no-chunked-requests", "unframed-events", "no-accel")
    run, _ = run_peer(lemonade, tmp_path, K + " or email_delivery", behaviour="ignore-ping", faults=faults)
    for check, rid, reason in [
        ("jmap/upload_private", "jmap.upload.private", "downloaded alice's unreferenced blob"),
        ("jmap/import_errors", "jmapmail.import.errors", "expected invalidProperties"),
        ("jmap/changes_reach_back", "jmap.changes.retention", "cannotCalculateChanges"),
        ("jmap/email_delivery_push", "jmapmail.emaildelivery", "MUST push EmailDelivery"),
        ("jmap/no_cache", "http.no-cache", "has no Cache-Control"),
        ("jmap/chunked_both_ways", "http.chunked-parse", "answered 411"),
        ("jmap/stream_outlives_idle_timeout", "http.idle-timeout", "idle timeout"),
        ("jmap/events_framed_in_payload", "http.intermediary-buffering", "framed by blank lines"),
        ("jmap/eventsource_through_default_nginx", "proxy.nginx-buffering", "X-Accel-Buffering"),
    ]:
        proven(prove, run, check, rid, reason)
    assert run.rc == 1


@pytest.mark.proves("jmap/chunked_both_ways", "http.chunked-parse")
@pytest.mark.proves("jmap/import_errors", "jmapmail.import.errors")
@pytest.mark.proves("jmap/email_delivery_push", "jmapmail.emaildelivery")
@pytest.mark.proves("jmap/comment_keepalive", "sse.comment-keepalive")
def test_second_reasons(lemonade, tmp_path, prove):
    """A response without its last chunk, refused UTF-8 headers, EmailDelivery moved by flags and deletes (its SHOULD
    NOT part: non-strict); and a peer sending nothing on a ping=0 stream (comment keepalive, a SHOULD: non-strict).
    One run, the two peers its targets."""
    k = "chunked_both or import_errors or email_delivery or comment_keepalive"
    run, peers = run_peers(lemonade, tmp_path, k, {"second": ("unterminated-chunked", "no-eai", "delivery-on-flags"),
                                                   "plain": ()})
    t = "fake-jmap-second"
    proven(prove, run, "jmap/chunked_both_ways", "http.chunked-parse", "incomplete chunked read", target=t)
    proven(prove, run, "jmap/import_errors", "jmapmail.import.errors", "raw UTF-8 headers (RFC 6532) was refused",
           target=t)
    r = prove(run, "jmap/email_delivery_push", "jmapmail.emaildelivery", "SHOULD NOT", target=t, verdict="non-strict")
    assert r["evidence"]["transcript"]
    proven(prove, run, "jmap/comment_keepalive", "sse.comment-keepalive", "no comment line within 20 s",
           target="fake-jmap-plain")


def test_comment_keepalive(lemonade, tmp_path):
    """A peer sending a comment every second passes (and pushes EmailDelivery only for new mail); this run is alone
    (email_delivery_push judges what moves EmailDelivery on a quiet account)."""
    _, results = run_peer(lemonade, tmp_path, "comment_keepalive or email_delivery", faults=("comments",),
                          workers=1)
    assert_passes(results, {"jmap/comment_keepalive", "jmap/email_delivery_push"})


@pytest.mark.proves("jmap/blob_retention", "jmap.blob.retention")
def test_blob_retention_fails_when_a_blob_vanishes(lemonade, tmp_path, prove):
    """Full depth only (an hour at a conformant server): a peer dropping unreferenced blobs after 2 s fails at the
    first read (at quick depth the check is skipped with the command that runs it: test_conformant_peer_passes)."""
    run, _ = run_peer(lemonade, tmp_path, "blob_retention", faults=("blob-ttl",), args=("--depth", "full"), workers=1)
    proven(prove, run, "jmap/blob_retention", "jmap.blob.retention", "was gone or changed")
