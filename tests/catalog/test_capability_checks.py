"""The capability checks can fail: each runs against a store that breaks exactly its rule, and passes otherwise.

Correct behaviour is proven against the real Dovecot (test_capability_checks_pass_against_dovecot). The
in-memory store in tests/fakes/lemonade_store.py misbehaves in one way per target; one `lemonade run`
with every fake as a separate --target keeps this test to a single run.
"""

from contextlib import ExitStack

import pytest

from tests.fakes.imap import FakeImapServer
from tests.fakes.lemonade_store import StoreSession
from tests.fakes.push_store import DeliveringSmtp
from tests.fakes.starttls import server_context

CHECKS = {
    "keywords": "capability/lemonade_keywords_stored_copied_searchable",
    "partial": "capability/url_partial_in_catenate_and_urlfetch",
    "binary": "capability/binary_append_accepted",
    "literal": "capability/literal_plus_without_continuation",
    "esearch": "capability/esearch_count_always_single_response",
    "context": "capability/context_update_order",
    "idle": "capability/idle_notification_is_prompt",
}
K = ("keywords_stored or url_partial or binary_append_accepted or literal_plus or esearch_count "
     "or context_update")
BROKEN = {  # target name: (misbehaviour, the check it must fail, what the failure message says)
    "copy-drops-keywords": ("copy_drops_keywords", "keywords", "COPY lost $Forwarded $SubmitPending $Submitted"),
    "ignores-partial": ("ignore_partial", "partial", "expected the 10 octets"),
    "refuses-binary": ("refuse_binary_append", "binary", "binary APPEND"),
    "prompts-nonsync": ("continuation_for_nonsync", "literal", "continuation for a non-synchronizing literal"),
    "no-empty-count": ("esearch_omit_empty_count", "esearch", "expected COUNT 0"),
    "addto-first": ("addto_before_exists", "context", "ADDTO was sent before the EXISTS"),
    "expunge-first": ("expunge_before_removefrom", "context", "REMOVEFROM came after the expunge"),
}


@pytest.mark.proves("capability/lemonade_keywords_stored_copied_searchable", "lemonade.store.keywords")
@pytest.mark.proves("capability/url_partial_in_catenate_and_urlfetch", "lemonade.store.url-partial")
@pytest.mark.proves("capability/binary_append_accepted", "lemonade.store.binary-append")
@pytest.mark.proves("capability/literal_plus_without_continuation", "literal-plus.nonsync")
@pytest.mark.proves("capability/esearch_count_always_single_response", "esearch.count-always")
@pytest.mark.proves("capability/context_update_order", "context.update-order")
def test_misbehaving_stores_fail_exactly_their_check(lemonade, tmp_path, prove):
    args = ["run", "-k", K]
    with ExitStack() as stack:
        for name in ["correct", *BROKEN]:
            knob = BROKEN[name][0] if name in BROKEN else None
            session = type(f"Store_{name}", (StoreSession,), {knob: True} if knob else {})
            fake = stack.enter_context(FakeImapServer(session))
            args += ["--target", str(fake.target_file(tmp_path, name=name))]
        run = lemonade(*args, timeout=600)
    got = {(r["target"], r["check"]): r for r in run.results["results"]}
    for name, (_, check, expect) in BROKEN.items():
        r = got[(name, CHECKS[check])]
        prove(r, CHECKS[check], r["requirements"][0], expect)
        others = {c: got[(name, c)]["verdict"] for k, c in CHECKS.items() if k not in (check, "idle")}
        assert set(others.values()) == {"pass"}, (name, others)  # the fault breaks one rule only
    for key, check in CHECKS.items():
        if key != "idle":
            r = got[("correct", check)]
            assert r["verdict"] == "pass", (check, r["verdict"], r["message"])
    assert run.rc == 1


@pytest.mark.proves("capability/idle_notification_is_prompt", "lemonade.store.idle-timely")
def test_store_that_pushes_nothing_while_idle_fails_idle_check(lemonade, tmp_path, prove):
    with FakeImapServer(StoreSession) as fake:  # its IDLE answers '+' and then stays silent until DONE
        run = lemonade("run", "--target", str(fake.target_file(tmp_path)), "-k", "idle_notification")
    prove(run, CHECKS["idle"], "lemonade.store.idle-timely", "no EXISTS while idling within 2 s")


class FewCapabilities(StoreSession):
    """Leaves CATENATE and URL-PARTIAL out of its capabilities."""

    capabilities = StoreSession.capabilities.replace(" CATENATE", "").replace(" URL-PARTIAL", "")


class NoGreetingCode(StoreSession):
    """Greets without a [CAPABILITY ...] response code."""

    greeting_caps = None


class AuthenticateWithoutCode(StoreSession):
    """Its tagged OK to AUTHENTICATE carries no [CAPABILITY ...] code."""

    def cmd_authenticate(self, tag, args):
        if " " not in args.strip():
            self.send("+ ")
            if self.readline() is None:
                return False
        self.authenticated = True
        self.send(f"{tag} OK Logged in")


@pytest.mark.proves("capability/store_capabilities", "lemonade.store.capabilities")
@pytest.mark.proves("capability/store_starttls_offered", "lemonade.store.starttls")
@pytest.mark.proves("capability/capability_code_greeting_and_login", "lemonade.store.capability-code")
@pytest.mark.proves("capability/capability_code_authenticate", "lemonade.store.capability-code")
@pytest.mark.proves("capability/submission_ehlo_keywords", "lemonade.submit.extensions")
@pytest.mark.proves("capability/submission_burl_imap", "lemonade.submit.burl-imap")
def test_stores_and_a_submission_server_missing_the_lemonade_announcements_fail(lemonade, tmp_path, prove):
    """Capabilities, STARTTLS, CAPABILITY response codes and the submission keywords: one fake leaves each out."""
    fakes = {"few-caps": FewCapabilities, "no-greeting-code": NoGreetingCode, "auth-no-code": AuthenticateWithoutCode}
    with ExitStack() as stack:
        args = ["run", "--profile", "lemonade", "-k", "store_capabilities or store_starttls_offered or capability_code "
                "or submission_ehlo_keywords or submission_burl_imap"]
        for name, session in fakes.items():
            server = stack.enter_context(FakeImapServer(session))
            extra = None
            if name == "few-caps":
                smtp = stack.enter_context(DeliveringSmtp(server, server_context(tmp_path)))
                extra = {"submission": f"smtp://127.0.0.1:{smtp.port}"}
            args += ["--target", str(server.target_file(tmp_path, name=name, extra_endpoints=extra))]
        run = lemonade(*args, timeout=600)
    prove(run, "capability/store_capabilities", "lemonade.store.capabilities",
          ["missing 3 of", "CATENATE URLAUTH URL-PARTIAL"], target="few-caps")
    prove(run, "capability/store_starttls_offered", "lemonade.store.starttls", "STARTTLS not advertised before TLS",
          target="few-caps")
    prove(run, "capability/capability_code_greeting_and_login", "lemonade.store.capability-code",
          "greeting has no CAPABILITY response code", target="no-greeting-code")
    prove(run, "capability/capability_code_authenticate", "lemonade.store.capability-code",
          "tagged OK of AUTHENTICATE has no CAPABILITY response code", target="auth-no-code")
    prove(run, "capability/submission_ehlo_keywords", "lemonade.submit.extensions", "EHLO lacks", target="few-caps")
    prove(run, "capability/submission_burl_imap", "lemonade.submit.burl-imap", "BURL not advertised after AUTH",
          target="few-caps")


def test_capability_checks_pass_against_dovecot(lemonade):
    run = lemonade("run", "--profile", "lemonade", "-k", K + " or idle_notification")
    verdicts = {c: run.result(c)["verdict"] for c in CHECKS.values()}
    assert set(verdicts.values()) == {"pass"}, (verdicts, run.out)
    idle = run.result(CHECKS["idle"])
    assert idle["evidence"]["measurements"]["idle_latency"]["value"] < 2
    # coverage in the report: the checks' requirements verified, the rest untested and listed by id
    cov = run.results["coverage"]["lemonade"]
    assert {"lemonade.store.keywords", "context.update-order", "lemonade.store.idle-timely"} <= set(cov["verified"])
    assert "lemonade.submit.size-after-burl" in cov["untested"] and "lemonade.store.capabilities" in cov["not_run"]
    html = (run.dir / "index.html").read_text()
    assert "<dt>untested (" in html and "<code>lemonade.submit.size-after-burl</code>" in html
