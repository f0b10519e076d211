"""The checks added for the untested IMAP, submission and TLS requirements (issue 18), run once against the embedded
Dovecot: the verdict of each requirement, the real findings with their evidence, and the not-applicable ones with
their reason. Their failure tests are beside the fakes (tests/envelope, tests/push, tests/transport)."""

from __future__ import annotations

from tests.direct import assert_judged

K = ("urlauth or genurlauth or urlfetch or burl or submission_size_after or submission_modifies or catenate_badurl "
     "or catenate_toobig or binary_unknown or binary_append_seen or uid_expunge_only or no_uids_without "
     "or compress_inside_tls or notify_flood or mandatory_tls12 or no_tls_compression or managesieve "
     "or idle_timeout_announced")
PASS = {
    "envelope/genurlauth_refuses_incomplete_rumps": ("urlauth.genurlauth-checks",),
    "envelope/urlauth_expiry_resetkey_and_tokens": ("urlauth.revocation", "urlauth.entropy"),
    "envelope/burl_refusals": ("burl.failure-modes", "burl.submit-plus-check"),
    "envelope/burl_bdat_interleave": ("burl.bdat-interleave",),
    "envelope/burl_8bit_content": ("burl.8bit-downconvert",),
    "envelope/submission_size_after_burl": ("lemonade.submit.size-after-burl",),
    "envelope/submission_modifies_only_what_it_may": ("submit.modification-limits",),
    "envelope/catenate_badurl": ("catenate.badurl",),
    "envelope/binary_unknown_cte": ("binary.unknown-cte",),
    "envelope/binary_append_seen_as_text": ("binary.crlf-output", "binary.bodystructure-view", "binary.no-rfc2047"),
    "envelope/uid_expunge_only_named": ("uidplus.uid-expunge",),
    "envelope/no_uids_without_read_right": ("uidplus.no-disclosure",),
    "reconnect/compress_inside_tls": ("compress.layering",),
    "push/notify_flood_reported_or_overflowed": ("notify.overflow",),
    "transport/mandatory_tls12_suite": ("tls.imap-mti-suite",),
    "transport/no_tls_compression": ("tls.no-compression",),
}


def test_coverage_checks_on_dovecot(lemonade):
    run = lemonade("run", "-n", "2", "-k", K, timeout=400)
    for check, rids in PASS.items():
        for rid in rids:
            assert_judged(run, check, rid, "pass")
    # real findings
    # 1. Dovecot 2.3.19 hands a URL another user fetches to its imap-urlauth service, whose login process panics
    #    (assertion on DOVECOT-TOKEN's 'private' flag in sasl-server.c): the session gets NO instead of the data.
    assert_judged(run, "envelope/urlfetch_answers_every_url", "urlauth.urlfetch-ok", "fail",
                  "authuser URL fetched by another user's session: NO")
    assert_judged(run, "envelope/urlfetch_answers_every_url", "urlauth.rump-exact", "pass")
    # 2. Pigeonhole's ManageSieve (the Sieve of Dovecot's delivery agent) has no i;unicode-casemap comparator.
    assert_judged(run, "capability/managesieve_lists_lemonade_extensions", "lemonade.mda.managesieve-extensions",
                  "fail", "lacks comparator-i;unicode-casemap")
    # not applicable, with the reason
    assert_judged(run, "envelope/catenate_toobig", "catenate.toobig", "not-applicable", "no APPENDLIMIT")
    assert_judged(run, "envelope/burl_fetch_over_tls", "lemonade.submit.burl-fetch-tls", "not-applicable",
                  "opened no IMAP session")
    assert_judged(run, "envelope/burl_not_on_port_25", "burl.not-on-25", "not-applicable", "no relay endpoint")
    # full depth only, with the command that runs it
    idle = run.result("push/idle_timeout_announced_with_bye")
    assert idle["verdict"] == "skipped" and "--depth full" in idle["message"], idle["message"]
    size = run.result("envelope/submission_size_after_burl")["evidence"]["measurements"]
    assert size["assembled"]["value"] > size["size_limit"]["value"] == 1048576  # servers/dovecot/settings.toml
