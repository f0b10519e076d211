"""The capability checks can fail: each runs against a store that breaks exactly its rule, and passes otherwise.

Correct behaviour is proven against the real Dovecot (test_capability_checks_pass_against_dovecot). The
in-memory store in tests/fakes/lemonade_store.py misbehaves in one way per target; one `lemonade run`
with every fake as a separate --target keeps this test to a single run.
"""

from contextlib import ExitStack

from tests.fakes.imap import FakeImapServer
from tests.fakes.lemonade_store import StoreSession

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


def test_misbehaving_stores_fail_exactly_their_check(lemonade, tmp_path):
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
        assert r["verdict"] == "fail" and expect in r["message"], (name, r["verdict"], r["message"])
        others = {c: got[(name, c)]["verdict"] for k, c in CHECKS.items() if k not in (check, "idle")}
        assert set(others.values()) == {"pass"}, (name, others)  # the fault breaks one rule only
    for key, check in CHECKS.items():
        if key != "idle":
            r = got[("correct", check)]
            assert r["verdict"] == "pass", (check, r["verdict"], r["message"])
    assert run.rc == 1


def test_store_that_pushes_nothing_while_idle_fails_idle_check(lemonade, tmp_path):
    with FakeImapServer(StoreSession) as fake:  # its IDLE answers '+' and then stays silent until DONE
        run = lemonade("run", "--target", str(fake.target_file(tmp_path)), "-k", "idle_notification")
    r = run.result(CHECKS["idle"])
    assert r["verdict"] == "fail" and "no EXISTS while idling within 2 s" in r["message"], r["message"]


def test_capability_checks_pass_against_dovecot(lemonade):
    run = lemonade("run", "--profile", "lemonade", "-k", K + " or idle_notification")
    verdicts = {c: run.result(c)["verdict"] for c in CHECKS.values()}
    assert set(verdicts.values()) == {"pass"}, (verdicts, run.out)
    idle = run.result(CHECKS["idle"])
    assert idle["evidence"]["measurements"]["idle_latency"]["value"] < 2
    # coverage in the report: the checks' requirements verified, the rest not run (or untestable), listed by id
    cov = run.results["coverage"]["lemonade"]
    assert {"lemonade.store.keywords", "context.update-order", "lemonade.store.idle-timely"} <= set(cov["verified"])
    assert {"lemonade.submit.size-after-burl", "lemonade.store.capabilities"} <= set(cov["not_run"])
    assert "lemonade.mda.sieve-extensions" in cov["untestable"]
    html = (run.dir / "index.html").read_text()
    assert "<dt>not run (" in html and "<code>lemonade.submit.size-after-burl</code>" in html
