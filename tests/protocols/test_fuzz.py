"""Every sans-IO reader of the suite's protocol clients, fuzzed: any input ends in parsed values or a
ProtocolViolation (a Flood is one), never another exception, and what a reader holds stays within its bounds.

Inputs are drawn from each protocol's own vocabulary (so the fuzzer reaches deep states) and from raw bytes, split
into arbitrary segments. Examples are few and derandomized so CI stays fast and stable; the inputs that found bugs
are kept as explicit examples (``CORPUS_*``), run every time.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request

from conformance.errors import ProtocolViolation, ServerClosed
from conformance.protocols import imapwire, smtpwire, sse
from conformance.protocols.http import MAX_HEAD, HttpReader, parse_json
from conformance.protocols.jmap import parse_api_response, parse_session
from conformance.protocols.websocket import MAX_MESSAGE, WsReader

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def stream_of(tokens: list[bytes], max_size: int = 60):
    """Byte strings made of protocol tokens and random bytes, cut into 1..8 segments."""
    piece = st.one_of(st.sampled_from(tokens), st.binary(max_size=12))
    whole = st.lists(piece, max_size=max_size).map(b"".join)
    return whole.flatmap(lambda data: st.lists(st.integers(0, len(data)), max_size=7).map(
        lambda cuts: [data[a:b] for a, b in zip([0, *sorted(cuts)], [*sorted(cuts), len(data)])]))


# -- IMAP -------------------------------------------------------------------------------------------
IMAP_TOKENS = [b"* ", b"A1 ", b"+ ", b"OK ", b"NO ", b"BAD ", b"BYE ", b"1 ", b"42 ", b"FETCH ", b"EXISTS",
               b"EXPUNGE", b"STATUS ", b"INBOX ", b"VANISHED ", b"(EARLIER) ", b"1:3,7", b"(", b")", b"[", b"]",
               b"<0>", b"{3}\r\n", b"{0}\r\n", b"~{2}\r\n", b"{5+}\r\n", b"abc", b"\r\n", b'"q\\"x"', b"NIL ",
               b"BODY[] ", b"BODY[HEADER.FIELDS (TO)] ", b"BINARY.SIZE[1] ", b"UID ", b"MODSEQ ", b"FLAGS ",
               b"(\\Seen $X) ", b"RFC822.SIZE ", b"(MESSAGES 3 UIDNEXT 9) ", b"[APPENDUID 1 2] ", b"CAPABILITY ",
               b"\r", b"\n", b"\x00", b"\xff"]
CORPUS_IMAP = [
    [b"* 1 FETCH (BODY[] {5}\r\nhello UID 3 FLAGS (\\Seen))\r\n"],  # items after a literal were lost
    [b"* 1 FETCH (BODY[] {5}\r\nhel", b"lo UID 3)\r\n"],
    [b"* 2 FETCH ((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((x))\r\n"],
    [b"* 1 FETCH (UID x)\r\n"],
    [b"* STATUS \"a\" (MESSAGES)\r\n"],
    [b"* 1 FETCH (BODY[] ~{99999999999999999999}\r\n)\r\n"],
    ["* 1 FETCH (UID \u00b2)\r\n* SEARCH \u00b2\r\n".encode()],  # isdigit() is true for '²', int() refuses it
]


def _imap_parse_all(resp: imapwire.Response) -> None:
    for parse in (imapwire.parse_fetch, imapwire.parse_status, imapwire.parse_exists, imapwire.parse_expunge,
                  imapwire.parse_search, imapwire.parse_esearch, imapwire.parse_vanished, imapwire.parse_flags,
                  lambda r: imapwire.response_code(r, "APPENDUID")):
        try:
            parse(resp)
        except ProtocolViolation:
            pass
        except ValueError as e:  # parse_uid_set's int() on a VANISHED set is the one documented exception
            assert parse is imapwire.parse_vanished, f"{getattr(parse, '__name__', parse)}: {e!r}"
    imapwire.parse_capabilities(resp.text)
    _ = (resp.tag, resp.status, resp.code, resp.is_untagged, resp.is_continuation)


@FUZZ
@given(stream_of(IMAP_TOKENS))
def test_imap_reader_and_parsers(chunks):
    _imap_reads(chunks)


def test_imap_corpus():
    for chunks in CORPUS_IMAP:
        _imap_reads(chunks)


def _imap_reads(chunks: list[bytes]) -> None:
    reader = imapwire.ResponseReader()
    try:
        for chunk in chunks:
            for resp in reader.feed(chunk):
                assert isinstance(resp, imapwire.Response)
                _imap_parse_all(resp)
            assert reader.pending <= imapwire.MAX_LINE + imapwire.MAX_RESPONSE
    except ProtocolViolation:
        pass


def test_imap_tokenizer_on_the_corpus_answers():
    r = imapwire.ResponseReader()
    (f,) = r.feed(CORPUS_IMAP[0][0])
    assert imapwire.parse_fetch(f) == (1, {"BODY[]": b"hello", "UID": 3, "FLAGS": ["\\Seen"]})


# -- SMTP -------------------------------------------------------------------------------------------
SMTP_TOKENS = [b"250", b"220", b"354", b"554", b"199", b"-", b" ", b"ok", b"PIPELINING", b"\r\n", b"\n", b"\r",
               b"2", b"25", b"\xff"]


@FUZZ
@given(stream_of(SMTP_TOKENS))
@example([b"250-a\r\n", b"250 b\r\n"])
@example([b"250-a\n250 b\n"])
@example([b"250\r\n"])
def test_smtp_reply_reader(chunks):
    reader = smtpwire.ReplyReader()
    try:
        for chunk in chunks:
            for reply in reader.feed(chunk):
                assert 200 <= reply.code < 600 and reply.lines
                _ = (reply.text, reply.message, reply.keywords())
            assert reader.pending <= smtpwire.MAX_LINE + smtpwire.MAX_REPLY_OCTETS + 1
    except ProtocolViolation:
        pass


# -- SSE --------------------------------------------------------------------------------------------
SSE_TOKENS = [b"data:", b"data: x", b"event: state", b"id: 7", b"id: a\x00b", b"retry: 10", b"retry: x", b": ping",
              b"\n", b"\r", b"\r\n", b"\xef\xbb\xbf", b"\xff\xfe", b":", b" "]


@FUZZ
@given(stream_of(SSE_TOKENS))
@example([b"data: a\r", b"\ndata: b\n\n"])  # a CRLF split across reads
def test_sse_parser(chunks):
    parser = sse.SseParser()
    try:
        for chunk in chunks:
            for ev in parser.feed(chunk):
                assert isinstance(ev, sse.SseEvent) and isinstance(ev.data, str)
            line, event = parser.held
            assert line <= sse.MAX_LINE and event <= sse.MAX_EVENT
    except ProtocolViolation:
        pass


# -- HTTP -------------------------------------------------------------------------------------------
HTTP_TOKENS = [b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 101 Switching\r\n", b"HTTP/1.0 204 No\r\n", b"HTTP/1.1 100 Go\r\n",
               b"Content-Length: 5\r\n", b"Content-Length: x\r\n", b"Content-Length: 99999999999999999999\r\n",
               b"Transfer-Encoding: chunked\r\n", b"Transfer-Encoding: gzip\r\n", b"Connection: close\r\n",
               b"\r\n", b"5\r\n", b"hello", b"0\r\n\r\n", b"ffffffffffffffffff\r\n", b"5;ext=1\r\n", b": x\r\n"]


@FUZZ
@given(stream_of(HTTP_TOKENS), st.booleans())
@example([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel"], True)
def test_http_reader(chunks, eof):
    reader = HttpReader()
    reader.request("GET", "/", [("Host", "x")])
    try:
        for chunk in [*chunks, *([b""] if eof else [])]:
            if chunk == b"" and not eof:
                continue
            reader.feed(chunk)
            assert reader.body_octets <= reader.max_body
            assert len(reader.h11.trailing_data[0]) <= MAX_HEAD + 65536
    except (ProtocolViolation, ServerClosed):  # garbage, or a close before the response was complete
        pass


# -- JMAP JSON --------------------------------------------------------------------------------------
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                       max_size=4), max_leaves=20)
CORPUS_JSON = [b"[" * 100000, b'{"a": NaN}', b"\xff", b'{"methodResponses": [["x", {}]]}',
               b'{"methodResponses": [[1, {}, "c"]]}', b"1" * 5000]


@FUZZ
@given(st.one_of(st.binary(max_size=40), json_values.map(lambda v: json.dumps(v).encode()),
                 st.fixed_dictionaries({"methodResponses": st.lists(json_values, max_size=3)}).map(
                     lambda v: json.dumps(v).encode())))
def test_jmap_json(body):
    _jmap_json(body)


def test_jmap_json_corpus():
    for body in CORPUS_JSON:
        _jmap_json(body)


def _jmap_json(body: bytes) -> None:
    for parse in (parse_json, parse_session, parse_api_response):
        try:
            parse(body)
        except ProtocolViolation:
            pass


# -- WebSocket --------------------------------------------------------------------------------------
def _opened() -> WsReader:
    reader = WsReader()
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(reader.request("x", "/", ["jmap"], []))
    req = next(e for e in server.events() if isinstance(e, Request))
    reader.feed(server.send(AcceptConnection(subprotocol=req.subprotocols[0])))
    assert reader.accepted is not None
    return reader


frames = st.builds(lambda op, fin, payload, ext: bytes([(0x80 if fin else 0) | op, len(payload) if ext == 0 else ext])
                   + payload, st.integers(0, 15), st.booleans(), st.binary(max_size=20), st.sampled_from([0, 126, 127]))


@FUZZ
@given(st.lists(st.one_of(frames, st.binary(max_size=16)), max_size=10))
@example([b"\x83\x02ab"])  # a reserved opcode: wsproto reports it as its own close, which used to pass as the peer's
@example([b"\x81\x03\xff\xfe\xfd"])
def test_websocket_reader(chunks):
    reader = _opened()
    try:
        for chunk in chunks:
            for msg in reader.feed(chunk):
                assert msg.kind in ("text", "bytes", "pong", "ping", "close")
            assert reader.message_octets <= MAX_MESSAGE
    except ProtocolViolation:
        pass
