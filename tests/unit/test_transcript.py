"""Credentials never reach a transcript: protocol-aware redaction plus known-secret scrubbing."""

import base64

from conformance.transcript import REDACTED, Redactor, Transcript, printable


def test_imap_login_redacted():
    r = Redactor({"s3cret"})
    assert r.client('a1 LOGIN "alice" "s3cret"\r\n') == f'a1 LOGIN "alice" {REDACTED}\r\n'


def test_authenticate_and_continuation_redacted():
    r = Redactor()
    blob = base64.b64encode(b"\0alice\0pw").decode()
    assert blob not in r.client(f"a2 AUTHENTICATE PLAIN {blob}\r\n")
    r2 = Redactor()
    r2.client("a3 AUTHENTICATE PLAIN\r\n")
    r2.server("+ \r\n")
    assert r2.client(blob + "\r\n").strip() == REDACTED
    r2.server("a3 OK done\r\n")
    assert r2.client("a4 NOOP\r\n") == "a4 NOOP\r\n"


def test_smtp_auth_and_basic_redacted():
    r = Redactor()
    assert "AGFsaWNl" not in r.client("AUTH PLAIN AGFsaWNlAHB3\r\n")
    assert r.scrub("Authorization: Basic YWxpY2U6cHc=\r\n") == f"Authorization: Basic {REDACTED}\r\n"


def test_secret_and_its_base64_scrubbed_anywhere():
    pw = "alice-pw-123"
    t = Transcript(secrets={pw})
    r = t.redactor()
    text = r.server(f"* OK echo {pw} and {base64.b64encode(pw.encode()).decode()}")
    assert pw not in text and base64.b64encode(pw.encode()).decode() not in text


def test_printable_escapes_controls_and_summarises_tls():
    assert printable(b"a\x00b\r\n") == "a\\x00b\r\n"
    assert printable(b"\x17\x03\x03\x00\x10" + b"x" * 16).startswith("[TLS records")


def test_secret_forms_catch_the_password_inside_sasl_plain_and_basic():
    from conformance.transcript import secret_forms

    pw = "alicepw"
    forms = secret_forms(pw)
    for wrapped in (f"\0alice\0{pw}", f"alice:{pw}", f"\0a\0{pw}", f"xy:{pw}"):
        encoded = base64.b64encode(wrapped.encode()).decode()
        assert any(f in encoded for f in forms), wrapped
        assert pw not in Redactor({pw}).scrub(encoded) and "<redacted>" in Redactor({pw}).scrub(encoded)


def test_quote_redacts_a_command_without_touching_the_sasl_state():
    r = Redactor({"pw123"})
    r.client("a1 AUTHENTICATE PLAIN\r\n")
    assert r.quote('L001 LOGIN "alice" "pw123"') == f'L001 LOGIN "alice" {REDACTED}'
    assert r.in_sasl, "quoting a command for a message leaves the connection's SASL state alone"


def test_a_connection_keeps_its_head_and_a_ring_of_its_tail_and_notes_the_gap():
    from conformance.transcript import CONN_HEAD_BYTES, CONN_TAIL_BYTES, ENTRY_OVERHEAD

    t = Transcript()
    t.add("direct", "S", "* OK greeting", conn="imap#1")
    for i in range(20000):
        t.add("direct", "S", f"* OK flood {i}", 12, conn="imap#1")
    t.add("direct", "S", "L001 OK the end", conn="imap#1")
    texts = [e["text"] for e in t.as_list()]
    assert texts[0] == "* OK greeting" and texts[-1] == "L001 OK the end"
    gap = [x for x in texts if x.startswith("[transcript:")]
    assert len(gap) == 1 and "left out here" in gap[0] and t.dropped > 10000
    assert t.retained_bytes <= CONN_HEAD_BYTES + CONN_TAIL_BYTES + ENTRY_OVERHEAD + 100
    assert texts.index(gap[0]) < texts.index("L001 OK the end")


def test_a_case_is_bounded_across_its_connections_and_marks_survive_drops():
    from conformance.transcript import CASE_BYTES

    t = Transcript()
    mark = None
    for c in range(40):
        for _ in range(300):
            t.add("direct", "C", "x" * 100, 100, conn=f"imap#{c}")
        if c == 30:
            mark = t.mark()
    assert t.retained_bytes <= CASE_BYTES and t.dropped > 0
    since = t.since(mark)
    assert since and all(e.conn not in {f"imap#{c}" for c in range(31)} for e in since)
    assert len(t.text().splitlines()) == len(t.as_list())


def test_quoting_a_command_without_its_line_end_leaves_the_next_line_alone():
    r = Redactor({"pw123"})
    assert r.quote('L001 LOGIN "alice" "pw123"') == f'L001 LOGIN "alice" {REDACTED}'
    assert r.client("L002 NOOP\r\n") == "L002 NOOP\r\n"


def test_octet_totals_count_what_the_ring_left_out():
    t = Transcript()
    for _ in range(5000):
        t.add("relay", "S", "x" * 100, 100, conn="conn#1")
    assert t.dropped > 0 and t.octets("conn#1") == {"S": 500000}
    assert sum(e.nbytes for e in t.entries if e.conn == "conn#1") < 500000


def _wire_exchange(pw: str) -> list[tuple[str, bytes]]:
    """A connection's chunks as a relay sees them: a login by SASL PLAIN split over a continuation, one segment
    cutting a LOGIN line, a bulk FETCH reply, and the password echoed by the server."""
    blob = base64.b64encode(f"\0alice\0{pw}".encode())
    return [("S", b"* OK ready\r\n"), ("C", b"a1 AUTHENTICATE PLAIN\r\n"), ("S", b"+ \r\n"), ("C", blob + b"\r\n"),
            ("S", b"a1 OK done\r\n"), ("C", b'a2 LOGIN "alice" "' + pw[:3].encode()), ("C", pw[3:].encode() + b'"\r\n'),
            ("S", b"a2 NO already\r\n"), ("S", b"* 1 FETCH (BODY[] {9000}\r\n" + b"\x01z" * 4500 + b")\r\n"),
            ("S", b"* BYE " + pw.encode() + b"\r\n"), ("S", b"\x16\x03\x01\x00\x05hello")]


def test_wire_chunks_rendered_when_read_match_rendering_as_they_arrive():
    """A path records chunks lazily (``add_wire``); read back, the transcript is the one rendering each chunk at
    once gives: same texts, same order among notes added in between, same redaction of the SASL exchange and of
    a LOGIN line cut by a segment boundary, same summary of a bulk chunk from its first octets only."""
    from conformance.intermediaries.addons.record import WireText, shown, text_of

    pw = "hunter2-pw"
    eager, lazy = Transcript(secrets={pw}), Transcript(secrets={pw})
    r_eager, wire = eager.redactor(), WireText(lazy.redactor())
    for i, (d, data) in enumerate(_wire_exchange(pw)):
        render = r_eager.client if d == "C" else r_eager.server
        eager.add("proxy-server", d, render(text_of(data)), len(data), conn="conn#1")
        lazy.add_wire("proxy-server", d, shown(data), len(data), wire.client if d == "C" else wire.server, "conn#1")
        if i == 4:
            eager.note("logged in")
            lazy.note("logged in")
    got = [(e["direction"], e["text"], e["nbytes"]) for e in lazy.as_list()]
    assert got == [(e["direction"], e["text"], e["nbytes"]) for e in eager.as_list()]
    assert [e["text"] for e in lazy.as_list()].index("logged in") == 5
    text = lazy.text()
    assert pw not in text and pw[3:] not in text and base64.b64encode(f"\0alice\0{pw}".encode()).decode() not in text
    assert "[8773 more octets]" in text and "[TLS records, 10 octets]" in text
    assert lazy.octets("conn#1") == {"S": sum(len(b) for d, b in _wire_exchange(pw) if d == "S"),
                                     "C": sum(len(b) for d, b in _wire_exchange(pw) if d == "C")}


def test_wire_chunks_waiting_to_be_rendered_stay_bounded():
    """A long transfer nobody reads yet keeps at most PENDING_MAX chunks (and PENDING_BYTES of their octets)
    waiting; rendering in batches, the ring keeps its head and tail as ever."""
    from conformance import transcript as tr

    t = Transcript()
    seen = []
    for i in range(3 * tr.PENDING_MAX + 7):
        t.add_wire("relay", "S", b"x" * 100, 100, lambda d, n, i=i: (seen.append(i), f"chunk {i}")[1], "conn#1")
        assert len(t._pending) < tr.PENDING_MAX and t._pending_bytes < tr.PENDING_BYTES
    assert seen == list(range(3 * tr.PENDING_MAX))  # rendered in order, in whole batches, before any read
    texts = [e.text for e in t.entries]
    assert texts[0] == "chunk 0" and texts[-1] == f"chunk {3 * tr.PENDING_MAX + 6}" and t.dropped > 0
    assert t.octets("conn#1") == {"S": 100 * (3 * tr.PENDING_MAX + 7)}


def test_a_chunk_that_cannot_be_rendered_is_named_and_the_rest_kept():
    t = Transcript()
    t.add_wire("relay", "C", b"a1 NOOP\r\n", 9, lambda d, n: d.decode(), "conn#1")
    t.add_wire("relay", "S", b"\xff", 1, lambda d, n: d.decode("ascii"), "conn#1")
    t.add_wire("relay", "S", b"a1 OK\r\n", 7, lambda d, n: d.decode(), "conn#1")
    texts = [e.text for e in t.entries]
    assert texts[0] == "a1 NOOP\r\n" and texts[2] == "a1 OK\r\n"
    assert texts[1].startswith("[1 octets the transcript could not render: UnicodeDecodeError")
