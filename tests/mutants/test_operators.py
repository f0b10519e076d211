"""The mutation operators on plain bytes (sans-IO), and one live path: each changes what it says and nothing else."""

from __future__ import annotations

import tomllib

from conformance.protocols.imap import ImapConnection
from conformance.protocols.imapwire import ResponseReader
from conformance.transcript import Transcript
from tests.mutants.operators import (
    OPERATORS,
    drop_state_events,
    is_push,
    mutate_imap,
    mutate_json,
    mutate_smtp,
    reorder,
)


def responses(data: bytes):
    return ResponseReader().feed(data)


def test_there_are_at_least_fifteen_operators_over_the_three_protocols():
    by_protocol = {p: [n for n, o in OPERATORS.items() if o.protocol == p] for p in ("imap", "smtp", "jmap")}
    assert len(OPERATORS) - 1 >= 15 and all(by_protocol.values()), by_protocol
    assert OPERATORS["identity"].protocol == "any"


def test_imap_operators_change_exactly_their_item():
    exists, vanished, fetch = responses(b"* 3 EXISTS\r\n* VANISHED 4:5\r\n* 1 FETCH (UID 7 MODSEQ (12) FLAGS ())\r\n")
    assert mutate_imap("imap-drop-exists", exists, "") == []
    assert mutate_imap("imap-duplicate-exists", exists, "") == [exists.raw, exists.raw]
    assert mutate_imap("imap-drop-vanished", vanished, "") == []
    assert mutate_imap("imap-drop-vanished", exists, "") == [exists.raw]
    assert mutate_imap("imap-strip-modseq", fetch, "") == [b"* 1 FETCH (UID 7 FLAGS ())\r\n"]
    [ok] = responses(b"L1 OK [APPENDUID 9 4] [HIGHESTMODSEQ 5] done\r\n")
    assert mutate_imap("imap-rename-code", ok, "APPEND") == [b"L1 OK [APPENDID 9 4] [HIGHESTMODSEQ 5] done\r\n"]
    assert mutate_imap("imap-strip-highestmodseq", ok, "EXPUNGE") == [b"L1 OK [APPENDUID 9 4] done\r\n"]
    assert mutate_imap("imap-status-change", ok, "UID STORE") == [b"L1 NO [APPENDUID 9 4] [HIGHESTMODSEQ 5] done\r\n"]
    assert mutate_imap("imap-status-change", ok, "APPEND") == [ok.raw]
    [caps] = responses(b"* CAPABILITY IMAP4rev1 ESEARCH CONTEXT=SEARCH CONTEXT=SORT\r\n")
    assert mutate_imap("imap-strip-capability", caps, "") == [b"* CAPABILITY IMAP4rev1 CONTEXT=SORT\r\n"]
    for name in OPERATORS:
        if name.startswith("imap-") or name == "identity":
            assert mutate_imap("identity", fetch, "") == [fetch.raw]


def test_literal_operators_keep_the_response_readable():
    body = b"x" * 100
    [r] = responses(b"* 1 FETCH (UID 3 BODY[] {100}\r\n" + body + b" FLAGS (\\Seen))\r\n")
    [altered] = mutate_imap("imap-alter-literal-byte", r, "")
    [again] = responses(altered)
    assert again.literals[0] != body and len(again.literals[0]) == 100 and again.literals[0][:50] == body[:50]
    [short] = mutate_imap("imap-truncate-literal", r, "")
    [again] = responses(short)
    assert again.literals == [body[:-1]] and again.first_line.endswith("{99}")
    [small] = responses(b"* 1 FETCH (BODY[] {5}\r\nhello)\r\n")
    assert mutate_imap("imap-truncate-literal", small, "") == [small.raw]  # under 64 octets: left alone


def test_reorder_and_push_detection():
    batch = [b"* 1 EXISTS\r\n", b"* ESEARCH (TAG \"a\") ADDTO (0 1)\r\n", b"L2 OK NOOP\r\n"]
    assert reorder(batch) == [batch[1], batch[0], batch[2]]
    assert is_push([b"* 2 EXISTS\r\n"]) and not is_push([b"* 2 EXISTS\r\n", b"L3 OK done\r\n"])
    assert not is_push([b"* OK Still here\r\n"])


def test_smtp_operators_work_on_replies_before_tls():
    ehlo = b"250-mx.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n"
    assert mutate_smtp("smtp-strip-starttls", ehlo, "EHLO", False) == b"250-mx.test\r\n250 PIPELINING\r\n"
    assert mutate_smtp("smtp-strip-starttls", ehlo, "EHLO", True) == ehlo
    assert mutate_smtp("smtp-refuse-starttls", b"220 go ahead\r\n", "STARTTLS", False).startswith(b"454 ")
    auth = mutate_smtp("smtp-advertise-auth", ehlo, "EHLO", False)
    assert auth.startswith(b"250-mx.test\r\n250-AUTH PLAIN LOGIN\r\n") and auth.endswith(b"250 STARTTLS\r\n")


def test_jmap_operators_on_bodies_and_event_streams():
    assert mutate_json("jmap-rename-error", "/api", 200, b'["error",{"type":"unknownMethod"},"b"]')[1] == \
        b'["error",{"type":"serverFail"},"b"]'
    assert mutate_json("jmap-status-change", "/api", 400, b'{"type":"urn:ietf:params:jmap:error:notJSON"}')[0] == 500
    session = b'{"apiUrl":"/jmap/","eventSourceUrl":"/es?x","state":"1"}'
    assert b"eventSourceUrl" not in mutate_json("jmap-drop-session-member", "/.well-known/jmap", 200, session)[1]
    status, body = mutate_json("jmap-alter-download", "/download/a/b/c", 200, b"abcdef")
    assert status == 200 and body != b"abcdef" and len(body) == 6
    out, held = drop_state_events(b"event: ping\ndata: {}\n\nevent: state\ndata: {}\n\nid: 3\nevent: st")
    assert out == b"event: ping\ndata: {}\n\n" and held == b"id: 3\nevent: st"


def test_a_live_path_changes_only_what_the_operator_names(tmp_path):
    """The embedded Dovecot (cleartext) behind the mutating proxy: identity changes nothing, drop-exists drops the
    EXISTS of a SELECT and counts it."""
    from tests.mutants.target import mutant_target

    seen = {}
    for operator in ("identity", "imap-drop-exists"):
        with mutant_target(tmp_path / operator, "imap", operator) as mutant:
            t = tomllib.loads(mutant.target_file.read_text())
            host, port = t["endpoints"]["imap"].split("//")[1].split(":")
            conn = ImapConnection(host, int(port), transcript=Transcript())
            conn.read_greeting()
            conn.login(t["accounts"][0]["username"], t["accounts"][0]["password"])
            seen[operator] = ([r.first_line for r in conn.command("SELECT INBOX").untagged], mutant.applied)
            conn.close()
    assert any(line.endswith(" EXISTS") for line in seen["identity"][0]) and seen["identity"][1] == 0, seen
    assert not any(line.endswith(" EXISTS") for line in seen["imap-drop-exists"][0]), seen
    assert seen["imap-drop-exists"][1] >= 1, seen
