"""The sans-IO IMAP response reader and parsers, with plain bytes."""

import pytest

from conformance.errors import ProtocolViolation
from conformance.protocols.imapwire import (
    ResponseReader,
    format_uid_set,
    parse_capabilities,
    parse_fetch,
    parse_uid_set,
    parse_vanished,
)


def test_reader_joins_literals_across_feeds():
    r = ResponseReader()
    assert r.feed(b"* 1 FETCH (UID 7 BODY[] {5}\r\nhel") == []
    out = r.feed(b"lo)\r\nA1 OK done\r\n")
    assert [x.first_line for x in out] == ["* 1 FETCH (UID 7 BODY[] {5}", "A1 OK done"]
    seq, items = parse_fetch(out[0])
    assert seq == 1 and items["UID"] == 7 and items["BODY[]"] == b"hello"
    assert out[1].status == "OK" and out[1].tag == "A1"


def test_reader_rejects_endless_line():
    r = ResponseReader()
    with pytest.raises(ProtocolViolation):
        r.feed(b"x" * (1 << 20 + 1))


def test_status_code_and_capabilities():
    r = ResponseReader()
    (g,) = r.feed(b"* OK [CAPABILITY IMAP4rev1 IDLE] hi\r\n")
    assert g.status == "OK" and g.code == "CAPABILITY IMAP4rev1 IDLE"
    assert parse_capabilities(g.text) == ["IMAP4REV1", "IDLE"]
    assert parse_capabilities("* CAPABILITY a b\r\n") == ["A", "B"]


def test_uid_sets_and_vanished():
    assert parse_uid_set("1:3,7,10:9") == {1, 2, 3, 7, 9, 10}
    assert format_uid_set({1, 2, 3, 7, 9, 10}) == "1:3,7,9:10"
    r = ResponseReader()
    (v,) = r.feed(b"* VANISHED (EARLIER) 3:4\r\n")
    assert parse_vanished(v) == (True, {3, 4})


def test_fetch_flags_modseq():
    r = ResponseReader()
    (f,) = r.feed(b"* 2 FETCH (UID 9 MODSEQ (41) FLAGS (\\Seen $Forwarded))\r\n")
    assert parse_fetch(f) == (2, {"UID": 9, "MODSEQ": 41, "FLAGS": ["\\Seen", "$Forwarded"]})


def _one(raw: bytes):
    (resp,) = ResponseReader().feed(raw)
    return resp


def test_fetch_items_after_a_literal_are_kept():
    seq, items = parse_fetch(_one(b"* 1 FETCH (BODY[] {5}\r\nhello UID 3 FLAGS (\\Seen))\r\n"))
    assert (seq, items) == (1, {"BODY[]": b"hello", "UID": 3, "FLAGS": ["\\Seen"]})


def test_fetch_sections_origins_quoted_nil_and_literal8():
    raw = (b'* 7 fetch (BODY[HEADER.FIELDS (SUBJECT TO)]<0> "a\\"b" BINARY[1] ~{3}\r\n\x00\x01\x02 BODY[2] NIL '
           b"BINARY.SIZE[1] 3 RFC822.SIZE 99 MODSEQ (12) ENVELOPE (NIL \"s\"))\r\n")
    seq, items = parse_fetch(_one(raw))
    assert seq == 7 and items["BODY[HEADER.FIELDS (SUBJECT TO)]<0>"] == b'a"b'
    assert items["BINARY[1]"] == b"\x00\x01\x02" and items["BODY[2]"] is None
    assert items["BINARY.SIZE[1]"] == 3 and items["RFC822.SIZE"] == 99 and items["MODSEQ"] == 12
    assert items["ENVELOPE"] == [None, b"s"]


def test_fetch_that_does_not_parse_is_a_protocol_violation():
    for raw in (b"* 1 FETCH (UID)\r\n", b"* 1 FETCH (UID 3\r\n", b"* 1 FETCH (UID x)\r\n",
                b'* 1 FETCH (BODY[] "open)\r\n', b"* 1 FETCH BODY[] {3}\r\nabc\r\n"):
        with pytest.raises(ProtocolViolation):
            parse_fetch(_one(raw))
    assert parse_fetch(_one(b"* 1 EXISTS\r\n")) is None


def test_flags_status_and_numbers_past_ten_digits():
    from conformance.protocols.imapwire import parse_exists, parse_flags, parse_search, parse_status

    assert parse_flags(_one(b"* 4 FETCH (FLAGS (\\Deleted $Junk) UID 9)\r\n")) == (4, ["\\Deleted", "$Junk"])
    assert parse_exists(_one(b"* " + b"9" * 5000 + b" EXISTS\r\n")) is None  # not a ValueError from int()
    assert parse_search(_one("* SEARCH 2 \u00b2 3\r\n".encode())) == [2, 3]
    assert parse_status(_one(b'* STATUS "a b" (MESSAGES 3 UIDNEXT 9)\r\n')) == ("a b", {"MESSAGES": 3, "UIDNEXT": 9})


def test_reader_bounds_and_take_unparsed():
    from conformance.errors import Flood
    from conformance.protocols import imapwire

    r = ResponseReader()
    with pytest.raises(ProtocolViolation, match="literal"):
        r.feed(b"* 1 FETCH (BODY[] {%d}\r\n" % (imapwire.MAX_LITERAL + 1))
    r = ResponseReader()
    with pytest.raises(Flood):
        for _ in range(imapwire.MAX_RESPONSE // (64 << 10) + 2):
            r.feed(b"* 1 FETCH (BODY[1] {65536}\r\n" + b"x" * 65536 + b" BODY[2] {0}\r\n")
    r = ResponseReader()
    assert r.feed(b"A1 OK done\r\nxyz") and r.take_unparsed() == b"xyz" and r.pending == 0
    r.feed(b"* 1 FETCH (BODY[] {5}\r\nab")
    with pytest.raises(ProtocolViolation):
        r.take_unparsed()
def test_exists_expunge_search_and_response_codes():
    from conformance.protocols.imapwire import (
        Response,
        parse_esearch,
        parse_exists,
        parse_expunge,
        parse_search,
        response_code,
    )

    assert parse_exists(Response(b"* 12 EXISTS\r\n")) == 12
    assert parse_exists(Response(b"* 3 exists\r\n")) == 3  # IMAP atoms are case-insensitive
    assert parse_exists(Response(b"* 3 EXPUNGE\r\n")) is None and parse_exists(Response(b"a1 OK 3 EXISTS\r\n")) is None
    assert parse_expunge(Response(b"* 3 Expunge\r\n")) == 3 and parse_expunge(Response(b"* 3 EXISTS\r\n")) is None
    assert parse_search(Response(b"* SEARCH 2 5 9 (MODSEQ 17)\r\n")) == [2, 5, 9]
    assert parse_search(Response(b"* SEARCH\r\n")) == [] and parse_search(Response(b"* ESEARCH COUNT 1\r\n")) is None
    ok = Response(b"* OK [UIDNEXT 7] Predicted next UID\r\n")
    assert response_code(ok, "UIDNEXT") == "7" and response_code(ok, "UIDVALIDITY") is None
    assert response_code(Response(b"* OK [CLOSED] previous mailbox closed\r\n"), "closed") == ""
    es = parse_esearch(Response(b'* ESEARCH (TAG "a1") UID COUNT 0 MIN 3\r\n'))
    assert es is not None and (es.tag, es.uid, es.data) == ("a1", True, {"COUNT": "0", "MIN": "3"})
    assert parse_esearch(Response(b"* SEARCH 1\r\n")) is None
