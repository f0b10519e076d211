"""The URLAUTH checks can fail, each requirement for its own reason: one run against in-memory stores that break one
URLAUTH rule each (tests/fakes/urlauth.py), beside a correct one; and what they find on the embedded Dovecot."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from tests.direct import assert_judged
from tests.fakes.imap import FakeImapServer
from tests.fakes.urlauth import UrlauthStore

GEN = "envelope/genurlauth_refuses_incomplete_rumps"
FETCH = "envelope/urlfetch_answers_every_url"
REVOKE = "envelope/urlauth_expiry_resetkey_and_tokens"
K = "genurlauth_refuses or urlfetch_answers or urlauth_expiry"
# target name: (misbehaviour, check, requirement, words of the failure)
BROKEN = {
    "accepts-incomplete": ("accept_incomplete", GEN, "urlauth.genurlauth-checks", "OK with a URL that resolves"),
    "no-for-invalid": ("no_for_invalid", FETCH, "urlauth.urlfetch-ok", "token with one hex digit changed: NO"),
    "folds-rump": ("fold_rump", FETCH, "urlauth.rump-exact", "a mailbox character percent-encoded: returned"),
    "ignores-expire": ("ignore_expire", REVOKE, "urlauth.revocation", "still resolved 3 s after its ;EXPIRE= time"),
    "never-resets": ("never_reset", REVOKE, "urlauth.revocation", "still resolved after it"),
    "counter-tokens": ("counter_tokens", REVOKE, "urlauth.entropy", "hex digits vary between tokens"),
    "short-tokens": ("short_tokens", REVOKE, "urlauth.entropy", "shorter than 32 hex digits"),
}
REQUIREMENTS = {GEN: ("urlauth.genurlauth-checks",), FETCH: ("urlauth.urlfetch-ok", "urlauth.rump-exact"),
                REVOKE: ("urlauth.revocation", "urlauth.entropy")}


@pytest.mark.proves("envelope/genurlauth_refuses_incomplete_rumps", "urlauth.genurlauth-checks")
@pytest.mark.proves("envelope/urlfetch_answers_every_url", "urlauth.urlfetch-ok")
@pytest.mark.proves("envelope/urlfetch_answers_every_url", "urlauth.rump-exact")
@pytest.mark.proves("envelope/urlauth_expiry_resetkey_and_tokens", "urlauth.revocation")
@pytest.mark.proves("envelope/urlauth_expiry_resetkey_and_tokens", "urlauth.entropy")
def test_urlauth_checks_fail_against_stores_breaking_one_rule(lemonade, tmp_path, prove):
    args = ["run", "-n", "2", "-k", K]
    with ExitStack() as stack:
        for name in ["correct", *BROKEN]:
            knob = BROKEN[name][0] if name in BROKEN else None
            session = type(f"Urlauth_{name}", (UrlauthStore,), {knob: True} if knob else {})
            fake = stack.enter_context(FakeImapServer(session))
            args += ["--target", str(fake.target_file(tmp_path, name=name))]
        run = lemonade(*args, timeout=600)
    for name, (_, check, rid, words) in BROKEN.items():
        prove(run, check, rid, words, target=name)
    for check, rids in REQUIREMENTS.items():
        for rid in rids:
            assert_judged(run, check, rid, "pass", target="correct")
    # one broken rule fails its own requirements, not the others of the same check
    assert_judged(run, FETCH, "urlauth.urlfetch-ok", "pass", target="folds-rump")
    assert_judged(run, FETCH, "urlauth.rump-exact", "pass", target="no-for-invalid")
    assert_judged(run, REVOKE, "urlauth.entropy", "pass", target="ignores-expire")
    assert_judged(run, REVOKE, "urlauth.revocation", "pass", target="counter-tokens")
    assert run.rc == 1
