"""What a case creates is removed at its end, only that, and what cannot be removed is listed (issue 21): removals at
teardown against a real Dovecot (the user's \\Deleted message survives the suite's expunge; without UIDPLUS the suite
leaves its message rather than EXPUNGE the user's), and leftovers in results.json (schema) and the report (escaped)."""

from __future__ import annotations

import uuid

import pytest

from conformance.case import CaseContext
from conformance.catalog import load_catalog
from conformance.intermediaries.scenario import parse_scenario
from conformance.protocols.imapwire import parse_fetch, quote
from conformance.report.html import render_html
from conformance.results import leftovers_of
from conformance.schema import validate_results
from conformance.targets import Account, Endpoint, Target


def _case(target: Target) -> CaseContext:
    return CaseContext(target=target, scenario=parse_scenario("direct"), catalog=load_catalog(),
                       requirements=["idle.fetch-has-uid"], profiles=[], depth="quick", check="unit/leftovers").start()


def _flags_by_message_id(conn, mailbox: str) -> dict[str, str]:
    conn.command(f"EXAMINE {quote(mailbox)}")
    res = conn.command("FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    out = {}
    for r in res.untagged:
        parsed = parse_fetch(r)
        if parsed:
            header = next(v for k, v in parsed[1].items() if k.upper().startswith("BODY["))
            out[header.decode().split(":", 1)[1].strip()] = " ".join(parsed[1].get("FLAGS") or [])
    return out


def test_a_removal_that_fails_is_a_leftover_not_an_error():
    target = Target("t", {"imap": Endpoint("imap", "imap", "127.0.0.1", 1)}, [Account("alice", "pw")])
    case = _case(target)
    case.remove_at_end("jmap", "alice: Email M1", lambda: (_ for _ in ()).throw(OSError("connection refused")))
    case.remove_at_end("mailbox", "alice: mailbox x", lambda: case.leftover("mailbox", "alice: mailbox x", "NO busy"))
    case.close()  # no HarnessError: the verdicts stand
    assert [(x.kind, x.what) for x in case.leftovers] == [("mailbox", "alice: mailbox x"), ("jmap", "alice: Email M1")]
    assert "OSError: connection refused" in case.leftovers[1].reason


def test_expunge_at_end_removes_only_the_case_message(dovecot):
    case = _case(dovecot)
    conn = case.imap(0, via_path=False, label="user")
    user_id = f"<user-{uuid.uuid4().hex}@persist.test>"
    ours = f"<{case.unique('ours')}@lemonade.test>"
    for mid, flags in ((user_id, "\\Deleted"), (ours, "")):  # the user's: marked \Deleted, not expunged
        data = f"Subject: s\r\nMessage-ID: {mid}\r\n\r\nbody\r\n".encode()
        assert conn.command(f"APPEND INBOX ({flags}) {{{len(data)}}}", literal=data).ok
    case.expunge_at_end("INBOX", ours)
    case.delete_at_end("INBOX")  # a server refuses to delete INBOX: a leftover, not an error
    case.close()
    check = _case(dovecot)
    after = _flags_by_message_id(check.imap(0, via_path=False), "INBOX")
    check.close()
    assert ours not in after, "the case's own message was not expunged"
    assert "\\Deleted" in after.get(user_id, ""), "the user's \\Deleted message must survive the suite's cleanup"
    assert [x.kind for x in case.leftovers] == ["mailbox"] and "INBOX" in case.leftovers[0].what, case.leftovers


def test_a_second_users_scratch_mailbox_is_deleted_in_that_users_account(dovecot):
    """The case's second connection knows the first user's password too (the case's redactor carries every password
    it used): the mailbox belongs to the account the connection logged in as, and is deleted there."""
    case = _case(dovecot)
    case.imap(0, via_path=False, label="owner")
    guest = case.imap(1, via_path=False, label="guest")
    box = case.scratch_mailbox(guest, "guest-source")
    case.close()
    check = _case(dovecot)
    listed = check.imap(1, via_path=False).command(f"LIST \"\" {quote(box)}").untagged
    check.close()
    assert not listed and not case.leftovers, (listed, case.leftovers)


@pytest.fixture
def dovecot_without_uidplus(tmp_path):
    from conformance.providers.dovecot import DovecotProvider

    prov = DovecotProvider(settings={"extra": "imap_capability = IMAP4rev1 LITERAL+ IDLE"}, keep_logs=tmp_path)
    yield prov.start()
    prov.stop()


def test_without_uidplus_the_message_stays_listed(dovecot_without_uidplus):
    case = _case(dovecot_without_uidplus)
    conn = case.imap(0, via_path=False)
    ours = f"<{case.unique('ours')}@lemonade.test>"
    data = f"Subject: s\r\nMessage-ID: {ours}\r\n\r\nbody\r\n".encode()
    assert conn.command(f"APPEND INBOX {{{len(data)}}}", literal=data).ok
    case.expunge_at_end("INBOX", ours)
    case.close()
    assert [x.kind for x in case.leftovers] == ["message"], case.leftovers
    assert ours in case.leftovers[0].what and "UIDPLUS" in case.leftovers[0].reason


def test_leftovers_in_results_json_and_the_report():
    what = "alice: mailbox <script>alert(1)</script>"
    result = {"check": "push/x", "requirements": ["idle.fetch-has-uid"], "target": "t", "scenario": "direct",
              "verdict": "pass", "message": "", "requirement_verdicts": {"idle.fetch-has-uid": {"verdict": "pass",
                                                                                             "message": ""}},
              "subject": "t", "role": "server", "duration_s": 0.1, "level": "MUST", "profiles": [], "nodeid": "n",
              "rerun": "r", "started": 1.0, "worker": "main",
              "evidence": {"leftovers": [{"kind": "mailbox", "what": what, "reason": "DELETE answered NO"}]}}
    doc = {"schema_version": 2, "run": {"id": "r1", "suite_version": "0"}, "results": [result],
           "summary": {"total": 1, "counts": {"pass": 1}, "profiles": {}, "verdict": "pass"},
           "leftovers": leftovers_of([result])}
    assert doc["leftovers"] == [{"check": "push/x", "target": "t", "scenario": "direct", "kind": "mailbox",
                                 "what": what, "reason": "DELETE answered NO"}]
    assert not validate_results(doc)
    html = render_html(doc)
    assert 'id="leftovers"' in html and "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
