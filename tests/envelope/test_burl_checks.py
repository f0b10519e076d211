"""The BURL and submission checks can fail, each requirement for its own reason: run in this process against a fake
MSA (tests/fakes/submission.py) whose relay is observable and that breaks one rule, over a fake URLAUTH store; and
what they find on the embedded Dovecot."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from conformance.checks.envelope import test_burl as checks
from conformance.fixtures.smime import SmimeKit
from conformance.targets import Account, Endpoint, Target
from tests.direct import assert_judged, run_check
from tests.fakes.imap import ACCOUNTS, FakeImapServer
from tests.fakes.starttls import server_context
from tests.fakes.submission import FakeSubmission, resolver
from tests.fakes.urlauth import UrlauthStore

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnknownMarkWarning")


@pytest.fixture(scope="module")
def smime():
    kit = SmimeKit()
    yield kit
    kit.cleanup()


@pytest.fixture(scope="module")
def tls_context():
    with tempfile.TemporaryDirectory(prefix="lemonade-fake-msa-") as d:
        yield server_context(Path(d))


def burl_target(tls_context, **knobs):
    """A context manager: (Target with the fake store and a fake MSA with ``knobs``, the MSA)."""

    class Both:
        def __enter__(self):
            self.imap = FakeImapServer(UrlauthStore).__enter__()
            msa_cls = type("Msa", (FakeSubmission,), {"size_limit": 16384, **knobs})
            self.msa = msa_cls(tls_context, resolver(self.imap)).__enter__()
            endpoints = {"imap": Endpoint("imap", "imap", "127.0.0.1", self.imap.port),
                         "submission": Endpoint("submission", "smtp", "127.0.0.1", self.msa.port)}
            name = "-".join(knobs) or "correct"
            return Target(name=f"fake-msa-{name}", endpoints=endpoints, accounts=[Account(u, p) for u, p in ACCOUNTS],
                          sink=self.msa)

        def __exit__(self, *exc):
            self.msa.__exit__(*exc)
            self.imap.__exit__(*exc)

    return Both()


CHECK = {fn: f"envelope/{fn.__name__.removeprefix('test_')}" for fn in (
    checks.test_burl_refusals, checks.test_burl_bdat_interleave, checks.test_burl_8bit_content,
    checks.test_submission_size_after_burl, checks.test_burl_fetch_over_tls,
    checks.test_submission_modifies_only_what_it_may)}
# misbehaviour: (check, requirement, words of the failure)
BROKEN = {
    "burl_without_rcpt": (checks.test_burl_refusals, "burl.failure-modes", "BURL with no valid recipient answered 250"),
    "keep_partial": (checks.test_burl_refusals, "burl.failure-modes", "the relay received a message for burl-partial"),
    "ignore_submit_user": (checks.test_burl_refusals, "burl.submit-plus-check", "URL in alice's session answered 250"),
    "bdat_drops_burl": (checks.test_burl_bdat_interleave, "burl.bdat-interleave", "not BDAT header + BURL body"),
    "no_8bitmime": (checks.test_burl_8bit_content, "burl.8bit-downconvert", "BURL advertised without 8BITMIME"),
    "eight_bit_as_7bit": (checks.test_burl_8bit_content, "burl.8bit-downconvert", "an 8-bit octet at"),
    "size_declared_only": (checks.test_submission_size_after_burl, "lemonade.submit.size-after-burl",
                           "declared SIZE=200) answered 250"),
    "adds_field": (checks.test_submission_modifies_only_what_it_may, "submit.modification-limits",
                   "added 'X-Scanned: yes'"),
}


def _args(fn, smime):
    return (smime,) if fn in (checks.test_burl_8bit_content, checks.test_submission_modifies_only_what_it_may) else ()


@pytest.mark.proves("envelope/burl_refusals", "burl.failure-modes")
@pytest.mark.proves("envelope/burl_refusals", "burl.submit-plus-check")
@pytest.mark.proves("envelope/burl_bdat_interleave", "burl.bdat-interleave")
@pytest.mark.proves("envelope/burl_8bit_content", "burl.8bit-downconvert")
@pytest.mark.proves("envelope/submission_size_after_burl", "lemonade.submit.size-after-burl")
@pytest.mark.proves("envelope/submission_modifies_only_what_it_may", "submit.modification-limits")
def test_broken_msas_fail_their_checks(smime, tls_context, prove):
    """One fake MSA per misbehaviour, each check run in this process: every one fails its requirement."""
    for knob, (fn, rid, words) in sorted(BROKEN.items()):
        with burl_target(tls_context, **{knob: True}) as target:
            run = run_check(fn, target, *_args(fn, smime))
        prove(run, CHECK[fn], rid, words)


def test_correct_msa_passes_every_check(smime, tls_context):
    with burl_target(tls_context) as target:
        for fn in CHECK:
            if fn is checks.test_burl_fetch_over_tls:
                continue  # the correct fake resolves URLs itself: not applicable, shown below
            run = run_check(fn, target, *_args(fn, smime))
            r = run.result(CHECK[fn])
            assert r["verdict"] == "pass", (CHECK[fn], r["message"], r["requirement_verdicts"])


@pytest.mark.proves("envelope/burl_fetch_over_tls", "lemonade.submit.burl-fetch-tls")
def test_fetch_over_tls_cleartext_login_first_is_non_strict(tls_context, prove):
    """A SHOULD: an MSA that sends its LOGIN in the clear before STARTTLS is non-strict, its password redacted."""
    with burl_target(tls_context, fetch_mode="cleartext") as target:
        run = run_check(checks.test_burl_fetch_over_tls, target)
    r = prove(run, CHECK[checks.test_burl_fetch_over_tls], "lemonade.submit.burl-fetch-tls",
              "sent 'LOGIN (arguments not shown)' in the clear")
    assert "secret" not in str(r["evidence"]["transcript"])  # the MSA's password is redacted


def test_fetch_over_tls_starttls_first_passes_and_no_session_is_not_applicable(tls_context):
    """STARTTLS first passes; an MSA that never calls the IMAP server is not applicable."""
    check = CHECK[checks.test_burl_fetch_over_tls]
    with burl_target(tls_context, fetch_mode="starttls") as target:
        run = run_check(checks.test_burl_fetch_over_tls, target)
    r = assert_judged(run, check, "lemonade.submit.burl-fetch-tls", "pass")
    assert "secret" not in str(r["evidence"]["transcript"])
    with burl_target(tls_context) as target:
        run = run_check(checks.test_burl_fetch_over_tls, target)
    assert_judged(run, check, "lemonade.submit.burl-fetch-tls", "not-applicable", "opened no IMAP session")


@pytest.mark.proves("envelope/burl_not_on_port_25", "burl.not-on-25")
def test_relay_on_port_25_offering_burl_fails(lemonade, tmp_path, tls_context, prove):
    with FakeImapServer(UrlauthStore) as imap:
        targets = []
        for name, burl in (("relay-with-burl", True), ("relay-without-burl", False)):
            relay = type("Relay", (FakeSubmission,), {"advertise_burl": burl})(tls_context).__enter__()
            targets.append(relay)
            path = imap.target_file(tmp_path, name=name, extra_endpoints={"relay": f"smtp://127.0.0.1:{relay.port}"})
            targets.append(path)
        try:
            run = lemonade("run", "-k", "burl_not_on_port_25", "--target", str(targets[1]), "--target", str(targets[3]))
        finally:
            targets[0].__exit__(None, None, None)
            targets[2].__exit__(None, None, None)
    prove(run, "envelope/burl_not_on_port_25", "burl.not-on-25", "before TLS: BURL imap", target="relay-with-burl")
    assert_judged(run, "envelope/burl_not_on_port_25", "burl.not-on-25", "pass", target="relay-without-burl")
