"""Sans-IO pieces of the HTTP binding: the SSE parser and the reachability figure (plain data, no sockets)."""

from __future__ import annotations

from conformance.protocols.sse import SseParser
from conformance.report.figures import reachability


def test_sse_parser_line_ends_ids_comments_and_partial_events():
    p = SseParser()
    out = p.feed(b"\xef\xbb\xbfevent: ping\ndata: {\"interval\":2}\n\n: keepalive\r\nid: 7\r\nevent: state\r\ndata: a\r")
    assert [(e.type, e.data, e.id) for e in out] == [("ping", '{"interval":2}', None), ("comment", "keepalive", None)]
    out = p.feed(b"\ndata: b\r\rdata: c")
    assert [(e.type, e.data, e.id, e.last_event_id) for e in out] == [("state", "a\nb", "7", "7")]
    assert p.pending  # "data: c" has no terminating line: a client discards it
    out = p.feed(b"\n\n")
    assert [(e.type, e.data, e.id, e.last_event_id) for e in out] == [("message", "c", None, "7")]
    assert not p.pending and not p.invalid_utf8


def test_sse_parser_split_anywhere_gives_the_same_events():
    stream = b"id: 1\nevent: state\ndata: {\"x\": 1}\n\nevent: ping\r\ndata: {}\r\n\r\n"
    whole = [(e.type, e.data, e.id) for e in SseParser().feed(stream)]
    for cut in range(1, len(stream)):
        p = SseParser()
        parts = p.feed(stream[:cut]) + p.feed(stream[cut:])
        assert [(e.type, e.data, e.id) for e in parts] == whole, cut


def _result(target, scenario, rows):
    return {"check": "jmap/reachability", "target": target, "scenario": scenario,
            "evidence": {"reachability": {"rows": rows}}}


def test_reachability_table_protocols_by_firewall_and_escaping():
    ok = {"login": "ok", "read": "ok", "push": "ok", "note": ""}
    blocked = {"login": "blocked", "read": "not reached", "push": "not reached", "note": "<403> by proxy"}
    doc = {"results": [
        _result("cyrus-push", "https-only:ports=443,endpoints=jmap", {"IMAP": blocked, "JMAP push (EventSource)": ok}),
        _result("cyrus-push", "direct", {"IMAP": ok, "JMAP push (EventSource)": ok}),
        _result("dovecot<x>", "direct", {"IMAP": ok}),
        {"check": "other/check", "target": "t", "scenario": "direct", "evidence": {}},
    ]}
    html = reachability.render_run(doc)
    assert html and html.index("<th>direct</th>") < html.index("<th>https-only")  # direct first
    assert "dovecot&lt;x&gt;" in html and "&lt;403&gt;" in html and "<403>" not in html
    assert "⛔" in html and "✔" in html
    assert reachability.render_run({"results": []}) is None
