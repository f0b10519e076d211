"""HTTP behaviour of the JMAP endpoint that intermediaries depend on (RFC 9110, RFC 9112, RFC 8620 2, nginx).

What the server can be judged on: it disables caching of the Session and the event stream, it parses a chunked
request and ends a chunked response with the last chunk, its pings keep a stream alive through an idle-timeout
proxy, its events reach a client whole through a hop that re-chunks them, and behind Debian's default nginx its
stream is neither held nor cut (X-Accel-Buffering: no, pings under proxy_read_timeout). The rules that bind the
proxy itself (no-transform, CONNECT) are not judged here: the suite's intermediaries are its harness, compared with
the real programs by ``lemonade calibrate``.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from dataclasses import dataclass
from urllib.parse import quote

import h11
import pytest

from conformance.checks.support.jmap import (
    client,
    event_source_url,
    event_stream,
    imported,
    open_raw,
    require_eventsource_200,
    state_change,
    timeline,
    writer,
)
from conformance.errors import ConformanceFailure, HarnessError, ProtocolViolation, ServerClosed, ServerTimeout
from conformance.protocols.eventsource import stream_connection
from conformance.protocols.jmap import EventStream, split_url

pytestmark = pytest.mark.uses("jmap")

UNCACHEABLE = ("no-store", "no-cache")


def _uncacheable(value: str) -> bool:
    """Cache-Control that keeps a response out of caches (no-store, no-cache, or max-age=0 with must-revalidate)."""
    parts = {p.strip().split("=")[0].lower(): p.strip() for p in value.split(",") if p.strip()}
    return any(d in parts for d in UNCACHEABLE) or (parts.get("max-age", "").endswith("=0") and "must-revalidate" in parts)


@pytest.mark.requirement("http.no-cache")
def test_no_cache(case):
    """The Session resource and the event stream carry Cache-Control that disables caching (RFC 8620 2)."""
    rid = "http.no-cache"
    c = client(case)
    c.discover()
    session_cc = c.last_response.headers.get("cache-control", "") if c.last_response is not None else ""
    stream = event_stream(case, c, types="*", ping=0)
    require_eventsource_200(stream, "GET eventSourceUrl")
    stream_cc = stream.header("cache-control")
    stream.close()
    problems = [f"{what} has Cache-Control {cc!r}" if cc else f"{what} has no Cache-Control"
                for what, cc in (("the Session response", session_cc), ("the EventSource response", stream_cc))
                if not _uncacheable(cc)]
    case.measure("session_cache_control", session_cc)
    case.measure("eventsource_cache_control", stream_cc)
    case.require(rid, not problems, "; ".join(problems) + " (RFC 8620 2: no-cache, no-store, must-revalidate or similar; "
                                                         "a cache may serve a stale Session or hold the stream)")
    case.passed(f"Session: {session_cc!r}; EventSource: {stream_cc!r}")


def chunked_upload(case, c, data: bytes, pieces: int = 3, label: str = "http#chunked") -> tuple[int, bytes]:
    """POST ``data`` to the uploadUrl over HTTP/1.1 with Transfer-Encoding: chunked in ``pieces`` chunks, through
    the path; (status, response body). A stall or an unparseable answer is the server's."""
    url = c.url("uploadUrl").replace("{accountId}", quote(c.account_id, safe=""))
    _, _, _, target = split_url(url)
    conn, host = open_raw(case, c, label)
    case.on_cleanup(conn.close)
    h = h11.Connection(h11.CLIENT)
    step = max(1, len(data) // pieces)
    conn.send(h.send(h11.Request(method="POST", target=target, headers=[
        ("Host", host), ("Authorization", c.auth), ("Content-Type", "application/octet-stream"),
        ("Transfer-Encoding", "chunked")])))
    for i in range(0, len(data), step):
        conn.send(h.send(h11.Data(data=data[i:i + step])))
    conn.send(h.send(h11.EndOfMessage()))
    since = time.monotonic()
    deadline = since + case.deadline
    status, body = 0, b""
    while True:
        try:
            ev = h.next_event()
        except h11.RemoteProtocolError as e:
            raise ProtocolViolation(f"the answer to a chunked upload is not valid HTTP/1.1: {e}") from e
        if ev is h11.NEED_DATA:
            try:
                got = conn.recv(deadline, "to a chunked upload", since=since)
            except ServerClosed:
                got = b""
            if got:
                conn.record_server(got)
            h.receive_data(got)
        elif isinstance(ev, h11.Response):
            status = ev.status_code
        elif isinstance(ev, h11.Data):
            body += bytes(ev.data)
        elif isinstance(ev, (h11.EndOfMessage, h11.ConnectionClosed)):
            return status, body


@pytest.mark.requirement("http.chunked-parse")
def test_chunked_both_ways(case):
    """The server parses a chunked request body (RFC 9112 7.1: a recipient MUST), and a chunked response it sends
    (closeafter=state) is chunked once and ends with the zero-size last chunk (RFC 9112 6.1, 7.1)."""
    rid = "http.chunked-parse"
    budget = case.param("max_latency", requirement="jmap.eventsource.closeafter-state")
    c = client(case)
    w = writer(case)
    data = f"lemonade chunked upload {uuid.uuid4().hex}\r\n".encode() * 64
    problems, notes = [], []
    status, body = chunked_upload(case, c, data)
    try:
        info = json.loads(body)
    except ValueError:
        info = {}
    if status not in (200, 201) or not isinstance(info, dict) or info.get("size") != len(data):
        problems.append(f"a {len(data)}-octet upload sent in 3 chunks was answered {status} {body[:160]!r} "
                        "(RFC 9112 7.1: a recipient MUST be able to parse the chunked coding)")
    else:
        down = c.download(info["blobId"])
        if down.content != data:
            problems.append(f"the chunked upload was stored as {len(down.content)} other octets")
    try:
        stream = event_stream(case, c, types="*", closeafter="state", ping=0)
    except (h11.RemoteProtocolError, ProtocolViolation) as e:
        problems.append(f"the closeafter=state response head is not valid HTTP/1.1: {e}")
        case.require(rid, False, "; ".join(problems))
        return
    require_eventsource_200(stream, "GET eventSourceUrl closeafter=state")
    coding = [t.strip().lower() for t in stream.header("transfer-encoding").split(",") if t.strip()]
    ended, broke = None, ""
    try:
        time.sleep(0.3)
        imported(case, w, "chunked response")
        for item in stream.events(time.monotonic() + budget + 2):
            if item.kind == "eof":
                ended = item
    except (h11.RemoteProtocolError, ProtocolViolation, ServerClosed) as e:
        broke = str(e)
    # how TLS ends a response (close_notify or not) is no matter of the chunked coding: closeafter-state judges it
    tls_end = "TLS" in broke
    if coding.count("chunked") > 1:
        problems.append(f"Transfer-Encoding {', '.join(coding)} applies chunked twice (RFC 9112 6.1: MUST NOT)")
    elif "chunked" in coding and broke and not tls_end:
        problems.append(f"the chunked closeafter=state response is not valid chunked framing: {broke}")
    elif "chunked" in coding and ended is None:
        notes.append(f"the chunked closeafter=state response did not end within {budget + 2:.0f} s "
                     f"{'(' + broke + ') ' if broke else ''}(judged by jmap.eventsource.closeafter-state)")
    elif "chunked" in coding:
        notes.append("chunked response ended with the last chunk")
    else:
        framing = "Content-Length" if stream.header("content-length") else "close-delimited"
        notes.append(f"the event stream is not chunked ({framing}): only the request side applies"
                     + (f" (its end: {broke}; judged by jmap.eventsource.closeafter-state)" if broke else ""))
    case.require(rid, not problems, "; ".join(problems))
    case.passed("chunked upload parsed and stored intact; " + "; ".join(notes))


@pytest.mark.requirement("http.idle-timeout")
@pytest.mark.scenarios("read-timeout")
def test_stream_outlives_idle_timeout(case):
    """Behind a proxy that ends a response after T idle seconds, a stream with ping below T stays open past T and
    still delivers a change made after it (RFC 9112 9.5: any hop may drop idle connections)."""
    rid = "http.idle-timeout"
    element = case.scenario.element("read-timeout")
    if element is None:
        case.requirement_not_applicable(rid, f"needs an idle-timeout proxy (read-timeout), the scenario is {case.scenario}")
        return
    idle = float(element.get("timeout"))
    ping = max(1, int(idle / 2))
    budget = case.param("max_latency", requirement="jmap.eventsource.state-event")
    c = client(case)
    w = writer(case)
    stream = event_stream(case, c, types="*", ping=ping)
    require_eventsource_200(stream, f"GET eventSourceUrl ping={ping}")
    mark = len(case.transcript.entries)
    cut = _watch(stream, idle + ping + 1)
    ended = next((x for x in stream.log if x.kind == "eof"), None) or cut
    got = None
    if ended is None:
        t_change = case.transcript.now()
        imported(case, w, "after the idle timeout")
        try:
            got = next((x for x in stream.events(time.monotonic() + budget + ping) if state_change(x)), None)
        except (ProtocolViolation, ServerClosed) as e:
            ended = Cut(stream.transcript.now(), str(e))
    else:
        t_change = ended.t
    cuts = [x.text for x in case.transcript.entries[mark:] if x.direction == "I"]
    case.attach("timeline", timeline(stream, [(t_change, "Email/import")], title=f"ping={ping} behind {case.scenario}",
                                     end=case.transcript.now(), thresholds=[("idle timeout", idle)]))
    if ended is not None:
        cut = f": {cuts[0]}" if cuts else (f": {ended.why}" if isinstance(ended, Cut) else "")
        case.require(rid, False, f"the stream (ping={ping}) ended at t={ended.t:.2f}, before it had lived "
                                 f"{idle + ping:.0f} s behind a {idle:.0f} s idle timeout{cut}")
        return
    if not case.require(rid, got is not None, f"the stream stayed open past the {idle:.0f} s idle timeout but no state "
                                              f"event came within {budget + ping:.0f} s of a change made after it"):
        return
    case.passed(f"ping={ping} kept the stream open past a {idle:.0f} s idle timeout; a later change arrived "
                f"{got.t - t_change:.2f} s after it was made")


@pytest.mark.requirement("http.intermediary-buffering")
@pytest.mark.scenarios("buffering")
def test_events_framed_in_payload(case):
    """Through a hop that holds the response until it is complete (RFC 9110 7.6 lets any hop buffer), push still
    works: closeafter=state ends the response after the state event, so the hop releases it, and the event arrives
    whole, framed by its blank line and not by where the server's writes or chunks ended."""
    rid = "http.intermediary-buffering"
    budget = case.param("max_latency", requirement="jmap.eventsource.closeafter-state")
    c = client(case)
    w = writer(case)
    problems = []
    stream = event_stream(case, c, types="*", closeafter="state", ping=0, head=False)  # the hop holds the head too
    time.sleep(0.3)
    t_change = case.transcript.now()
    imported(case, w, "through a buffering hop")
    state = eof = None
    try:
        for item in stream.events(time.monotonic() + budget + 1):
            if state is None and state_change(item):
                state = item
            if item.kind == "eof":
                eof = item
    except ServerTimeout:
        case.require(rid, False, f"nothing, not even the response head, came through the buffering hop within "
                                 f"{budget + 1:.0f} s of the change: a hop that holds a response releases it only once "
                                 "it is complete, so the closeafter=state response never completed as the hop saw it")
        return
    require_eventsource_200(stream, "GET eventSourceUrl closeafter=state")
    case.attach("timeline", timeline(stream, [(t_change, "Email/import")], title=f"closeafter=state through {case.scenario}",
                                     end=case.transcript.now()))
    if state is None:
        seen = [x.event.data[:80] if x.event else x.kind for x in stream.log]
        problems.append(f"no whole state event (a StateChange in its data) within {budget + 1:.0f} s of the change through "
                        f"the buffering hop (seen: {seen})")
    elif eof is None:
        problems.append("the closeafter=state response did not end, so a buffering hop never releases it")
    if stream.parser.pending:
        problems.append("the response ended inside an event (no blank line after it): events must be framed by blank "
                        "lines in the payload, not by chunk or write boundaries a hop may change")
    if not case.require(rid, not problems, "; ".join(problems)):
        return
    case.passed(f"a whole state event {state.t - t_change:.2f} s after the change, then the end, through {case.scenario}")


@pytest.mark.requirement("proxy.nginx-buffering")
@pytest.mark.scenarios("real-nginx")
def test_eventsource_through_default_nginx(case):
    """Behind Debian's nginx with its defaults (proxy_buffering on, proxy_read_timeout), a change reaches the client
    within the push budget (the server says X-Accel-Buffering: no) and a stream whose pings come more often than the
    read timeout outlives it."""
    rid = "proxy.nginx-buffering"
    real = case.scenario.real
    if real is None or real.name != "real-nginx":
        case.requirement_not_applicable(rid, f"judged behind Debian's nginx (real-nginx), the scenario is {case.scenario}")
        return
    read_timeout = float(real.get("read_timeout"))
    ping = max(1, int(read_timeout / 2))
    budget = case.param("max_latency", requirement="jmap.eventsource.state-event")
    c = client(case)
    w = writer(case)
    accel = _accel_header(case)
    case.measure("x_accel_buffering", accel or "(absent)")
    problems = []
    try:
        stream = event_stream(case, c, types="*", ping=ping)
    except ServerTimeout as e:
        raise ConformanceFailure(f"{e} through Debian's nginx: it held the whole response, header included, as "
                                 f"proxy_buffering does when the server does not send X-Accel-Buffering: no "
                                 f"(the server sent {accel or 'no X-Accel-Buffering'})", requirement=rid) from e
    require_eventsource_200(stream, f"GET eventSourceUrl ping={ping} through nginx")
    time.sleep(0.3)
    t_change = case.transcript.now()
    imported(case, w, "through nginx")
    try:
        got = next((x for x in stream.events(time.monotonic() + budget + 1) if state_change(x)), None)
    except (ProtocolViolation, ServerClosed) as e:
        got, cut = None, Cut(stream.transcript.now(), str(e))
    else:
        cut = None
    if got is None:
        problems.append(f"no state event within {budget + 1:.0f} s of the change through nginx (server sent "
                        f"{accel and 'X-Accel-Buffering: ' + accel or 'no X-Accel-Buffering'})")
    ended = cut or _watch(stream, read_timeout + 1) or next((x for x in stream.log if x.kind == "eof"), None)
    if ended is not None:
        problems.append(f"nginx ended the stream at t={ended.t:.2f} (proxy_read_timeout {read_timeout:.0f} s, "
                        f"ping={ping}){': ' + ended.why if getattr(ended, 'why', '') else ''}")
    case.attach("timeline", timeline(stream, [(t_change, "Email/import")], title=f"EventSource through {case.scenario}",
                                     end=case.transcript.now(), thresholds=[("proxy_read_timeout", read_timeout)]))
    if not case.require(rid, not problems, "; ".join(problems)):
        return
    case.passed(f"change through nginx in {got.t - t_change:.2f} s; stream outlived proxy_read_timeout "
                f"{read_timeout:.0f} s with ping={ping}")


@dataclass
class Cut:
    """How a watched stream ended when its framing broke off (a hop closing it mid-body)."""

    t: float
    why: str = ""


def _watch(stream, seconds: float) -> Cut | None:
    """Read ``stream`` for ``seconds``; a Cut when it broke off mid-body (a normal end shows as an eof in its log)."""
    try:
        list(stream.events(time.monotonic() + seconds))
    except (ProtocolViolation, ServerClosed) as e:
        return Cut(stream.transcript.now(), str(e))
    return None


def _accel_header(case) -> str:
    """The X-Accel-Buffering the server itself sends on its event stream (read straight from the target: nginx
    consumes the header and never forwards it)."""
    d = client(case, label="jmap#direct", via_path=False)
    url = event_source_url(d, "*", "no", 0)
    ep = case.target.endpoint("jmap")
    try:
        sock = socket.create_connection((ep.host, ep.port), timeout=case.deadline)
        conn = stream_connection(sock, ep.scheme, ep.host, case.target.tls.client_context(), transcript=case.transcript,
                                 label="eventsource#direct", timeout=case.deadline)
        stream = case.adopt(EventStream(conn, f"{ep.host}:{ep.port}", split_url(url)[3], d.auth, case.transcript,
                                        label="eventsource#direct"))
        stream.read_head(10.0)
    except (ConformanceFailure, HarnessError, OSError) as e:  # evidence only: the judgement is what reaches the
        case.note(f"could not read the server's own EventSource headers: {e}")  # client through nginx
        return ""
    try:
        value = stream.header("x-accel-buffering")
        case.note(f"the server's own EventSource response: {stream.status}, X-Accel-Buffering {value or '(absent)'}")
        return value
    finally:
        stream.close()
