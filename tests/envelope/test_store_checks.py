"""The BINARY, UIDPLUS and CATENATE-refusal checks can fail, each requirement for its own reason: against the real
Dovecot seen through an intermediary that makes one answer wrong (tests/envelope/mangle_addon.py), and against
in-memory stores that break one CATENATE rule (tests/fakes/urlauth.py); and what they find on Dovecot itself."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from tests.conftest import CliRun, run_cli
from tests.direct import assert_judged
from tests.fakes.imap import FakeImapServer
from tests.fakes.urlauth import UrlauthStore

K = "binary_unknown or binary_append_seen or uid_expunge_only or no_uids_without"
TEXT = "envelope/binary_append_seen_as_text"
# scenario mode: (check, requirement, words of the failure)
MANGLED = {
    "eol": (TEXT, "binary.crlf-output", "BODY[]: bare LF at octet"),
    "bodystructure": (TEXT, "binary.bodystructure-view", "gives part 2 the encoding 'binary'"),
    "rfc2047": (TEXT, "binary.no-rfc2047", "instead of the appended 'Subject: =?utf-8?q?caf=C3=A9_cr=C3=A8me?='"),
    "unknown-cte": ("envelope/binary_unknown_cte", "binary.unknown-cte", "expected tagged NO [UNKNOWN-CTE]"),
    "disclose-uids": ("envelope/no_uids_without_read_right", "uidplus.no-disclosure", "got its UIDs: APPEND answered"),
    "uid-expunge": ("envelope/uid_expunge_only_named", "uidplus.uid-expunge", "the mailbox holds UIDs"),
}


def run_mangled(tmp_path, *args: str) -> CliRun:
    """`lemonade run` in a process that first registers the test-only mangle intermediary (run_cli runs such a run
    in that one process: the workers would not know the addon)."""
    return run_cli(tmp_path / "mangle-run", "run", *args, prelude="import tests.envelope.mangle_addon")


@pytest.mark.proves("envelope/binary_append_seen_as_text", "binary.crlf-output")
@pytest.mark.proves("envelope/binary_append_seen_as_text", "binary.bodystructure-view")
@pytest.mark.proves("envelope/binary_append_seen_as_text", "binary.no-rfc2047")
@pytest.mark.proves("envelope/binary_unknown_cte", "binary.unknown-cte")
@pytest.mark.proves("envelope/no_uids_without_read_right", "uidplus.no-disclosure")
@pytest.mark.proves("envelope/uid_expunge_only_named", "uidplus.uid-expunge")
def test_mangled_answers_fail_their_checks(tmp_path, prove):
    scenarios = [a for mode in MANGLED for a in ("--scenario", f"mangle:mode={mode}")]
    run = run_mangled(tmp_path, "-k", K, *scenarios)  # one process: the workers would not know the addon
    assert run.rc == 1, run.out + run.err[-3000:]
    for mode, (check, rid, words) in MANGLED.items():
        r = prove(run, check, rid, words, scenario=f"mangle:mode={mode}")
        actions = [e["text"] for e in r["evidence"]["transcript"] if e["direction"] == "I"]
        assert any("mangle" in a or "server->client" in a or "client->server" in a for a in actions), actions
    # each mangling breaks its own rule: the neighbours judged in the same check still pass
    assert_judged(run, TEXT, "binary.crlf-output", "pass", scenario="mangle:mode=bodystructure")
    assert_judged(run, TEXT, "binary.no-rfc2047", "pass", scenario="mangle:mode=bodystructure")
    assert_judged(run, TEXT, "binary.bodystructure-view", "pass", scenario="mangle:mode=rfc2047")


CATENATE = {  # target: (store knobs, requirement, words)
    "badurl-names-last": ({"badurl_names_last": True}, "catenate.badurl", "does not name the first failing URL"),
    "keeps-partial": ({"catenate_keeps_partial": True}, "catenate.badurl", "the refused CATENATE stored a message"),
    "limit-code": ({"append_limit": 5000, "toobig_code": "LIMIT"}, "catenate.toobig", "expected tagged NO [TOOBIG]"),
}


@pytest.mark.proves("envelope/catenate_badurl", "catenate.badurl")
@pytest.mark.proves("envelope/catenate_toobig", "catenate.toobig")
def test_catenate_refusals_fail_against_stores_breaking_one_rule(lemonade, tmp_path, prove):
    args = ["run", "-k", "catenate_badurl or catenate_toobig"]
    with ExitStack() as stack:
        for name, knobs in [("correct", {"append_limit": 5000}), *((n, k) for n, (k, _, _) in CATENATE.items())]:
            fake = stack.enter_context(FakeImapServer(type(f"Store_{name}", (UrlauthStore,), knobs)))
            args += ["--target", str(fake.target_file(tmp_path, name=name))]
        run = lemonade(*args)
    for name, (_, rid, words) in CATENATE.items():
        prove(run, f"envelope/{'catenate_toobig' if 'toobig' in rid else 'catenate_badurl'}", rid, words, target=name)
    assert_judged(run, "envelope/catenate_badurl", "catenate.badurl", "pass", target="correct")
    assert_judged(run, "envelope/catenate_toobig", "catenate.toobig", "pass", target="correct")
