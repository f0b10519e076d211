"""The BURL check against a fake store with URLAUTH and a fake submission server with BURL (tests/fakes/burl.py),
in-process with an observable relay: an MSA that adds a header to the signed message in transit, and a store that
cannot keep $Submitted, each fail their own requirement; the pair that keeps the rules passes."""

from __future__ import annotations

import pytest

from conformance.case import CaseContext
from conformance.catalog import load_catalog
from conformance.fixtures.smime import SmimeKit
from conformance.intermediaries.scenario import parse_scenario
from conformance.targets import Account, Endpoint, Target
from tests.fakes.burl import BurlStore, BurlSubmission, Relay
from tests.fakes.imap import ACCOUNTS, FakeImapServer
from tests.fakes.starttls import server_context
from tests.proving import run_check

REQUIREMENTS = ["smime.opaque-in-transit", "mobile.envelope.signed-byte-exact", "lemonade.store.keywords"]


@pytest.fixture(scope="module")
def kit():
    k = SmimeKit()
    yield k
    k.cleanup()


def burl_case(tmp_path, kit, *, alter: str = "", alter_body: bool = False, keywords_lost: bool = False) -> dict:
    """Run envelope/burl_submission_byte_exact against a fake pair; its judged result."""
    from conformance.checks.envelope.test_signed_roundtrip import test_burl_submission_byte_exact

    store_cls = type("Store", (BurlStore,), {"keywords_lost": keywords_lost})
    relay = Relay()
    with FakeImapServer(store_cls) as store, BurlSubmission(store, relay, server_context(tmp_path), alter,
                                                                    alter_body) as smtp:
        target = Target(name="fake-burl", accounts=[Account(u, p) for u, p in ACCOUNTS], sink=relay,
                        endpoints={"imap": Endpoint("imap", "imap", "127.0.0.1", store.port),
                                   "submission": Endpoint("submission", "smtp", "127.0.0.1", smtp.port)})
        case = CaseContext(target=target, scenario=parse_scenario("direct"), catalog=load_catalog(),
                           requirements=REQUIREMENTS, profiles=["envelope-security"], depth="quick",
                           check="envelope/burl_submission_byte_exact").start()
        try:
            return run_check(case, test_burl_submission_byte_exact, kit)
        finally:
            case.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnknownMarkWarning")
def test_a_pair_that_keeps_the_rules_passes(tmp_path, kit):
    r = burl_case(tmp_path, kit)
    assert r["verdict"] == "pass", r


@pytest.mark.filterwarnings("ignore::pytest.PytestUnknownMarkWarning")
@pytest.mark.proves("envelope/burl_submission_byte_exact", "smime.opaque-in-transit")
def test_an_msa_that_alters_the_signed_message_fails(tmp_path, kit, prove):
    r = prove(burl_case(tmp_path, kit, alter="X-Scanned-By: fake antivirus"), "envelope/burl_submission_byte_exact",
              "smime.opaque-in-transit", "prepended non-trace fields ['X-Scanned-By']")
    assert r["requirement_verdicts"]["lemonade.store.keywords"]["verdict"] == "pass", r


@pytest.mark.filterwarnings("ignore::pytest.PytestUnknownMarkWarning")
@pytest.mark.proves("envelope/burl_submission_byte_exact", "lemonade.store.keywords")
def test_a_store_that_loses_submitted_fails_the_keywords(tmp_path, kit, prove):
    r = prove(burl_case(tmp_path, kit, keywords_lost=True), "envelope/burl_submission_byte_exact",
              "lemonade.store.keywords", "Lemonade keywords not storable")
    assert r["requirement_verdicts"]["smime.opaque-in-transit"]["verdict"] == "pass", r


@pytest.mark.filterwarnings("ignore::pytest.PytestUnknownMarkWarning")
@pytest.mark.proves("envelope/burl_submission_byte_exact", "mobile.envelope.signed-byte-exact")
def test_an_msa_that_rewrites_line_ends_fails_the_byte_exact_forwarding(tmp_path, kit, prove):
    r = prove(burl_case(tmp_path, kit, alter_body=True), "envelope/burl_submission_byte_exact",
              "mobile.envelope.signed-byte-exact", "relayed messages did not come back intact")
    assert r["requirement_verdicts"]["smime.opaque-in-transit"]["verdict"] == "fail", r
