"""Reachability behind firewalls: for each protocol the target offers, can a client log in, read a message and
be pushed a change through this scenario? The rows become the run-level table (report/figures/reachability.py).

Connections go through ``path.open(endpoint)`` (a CONNECT tunnel behind an explicit proxy); a refusal by the
firewall (``Blocked``) is data, recorded as "blocked", not an error. The writer that seeds messages and makes
changes talks to the target directly.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from conformance.checks.support import Blame, ChangeMaker, untagged, wait_for_untagged
from conformance.checks.support.jmap import (
    client,
    enable_push,
    event_stream,
    import_message,
    state_change,
    tls_context,
    websocket,
    writer,
)
from conformance.errors import ConformanceFailure, NotApplicable
from conformance.intermediaries.path import Blocked
from conformance.protocols.imap import ImapConnection
from conformance.protocols.imapwire import quote
from conformance.protocols.jmap import MAIL, WEBSOCKET, sample_message
from conformance.protocols.smtp import CapturingSMTP

FIREWALLS = ("direct", "https-only", "inspecting")
PROTOCOLS = ("IMAP", "IMAPS", "submission", "JMAP", "JMAP push (EventSource)", "JMAP push (WebSocket)",
             "IMAPS on the HTTPS port")
STEPS = ("login", "read", "push")


def _why(e: Exception) -> str:
    """The first line of an exception, with its type, for a matrix note."""
    return f"{type(e).__name__}: {str(e).splitlines()[0][:160]}" if str(e) else type(e).__name__


class Matrix:
    """The reachability table: per protocol, whether login, read and push worked through the path."""

    def __init__(self, case) -> None:
        self.case = case
        self.rows: dict[str, dict[str, Any]] = {}

    def row(self, protocol: str) -> dict[str, Any]:
        """The row of ``protocol`` (every step 'not offered' until set)."""
        return self.rows.setdefault(protocol, {s: "not offered" for s in STEPS} | {"note": ""})

    def set(self, protocol: str, step: str, value: str, note: str = "") -> None:
        """Record one step's outcome, adding ``note`` to the row's notes."""
        r = self.row(protocol)
        r[step] = value
        if note:
            r["note"] = (r["note"] + "; " if r["note"] else "") + note

    def attempt(self, protocol: str, step: str, fn) -> Any:
        """Run one step; record ok / blocked / failed; the remaining steps of a failed one are 'not reached'.

        What a server or a firewall does is data in this matrix: a refusal by the path (``Blocked``, or a
        connection the intermediary says it cut) is "blocked", a server's failure (``ConformanceFailure``: it
        refused, stalled, closed or answered garbage) is "failed". Trouble on the suite's own side (a HarnessError,
        a bug) is not a cell: it propagates and the case is an error.
        """
        mark = self.case.transcript.mark()
        try:
            out = fn()
        except NotApplicable as e:
            self.set(protocol, step, "not offered", str(e)[:160])
            return None
        except (Blocked, ConformanceFailure, OSError) as e:
            # the firewall refused (403 to CONNECT) or an intermediary said it cut the connection: blocked
            cuts = [x.text for x in self.case.transcript.since(mark) if x.direction == "I"
                    and any(w in x.text.lower() for w in ("cut", "refused", "blocked", "reset", "dropped"))]
            if isinstance(e, Blocked) or cuts:
                self.set(protocol, step, "blocked", cuts[0][:200] if cuts and not isinstance(e, Blocked) else _why(e))
            elif isinstance(e, ConformanceFailure):
                self.set(protocol, step, "failed", _why(e))
            else:
                raise
            self.case.note(f"reachability {protocol} {step}: {_why(e)}")
            return None
        self.set(protocol, step, "ok")
        return out if out is not None else True


def _imap_row(case, m: Matrix, protocol: str, endpoint: str, budget: float, alpn: list[str] | None = None) -> None:
    """IMAP or IMAPS through the path: log in, read the newest message of a mailbox, get a change pushed during IDLE
    (a scratch mailbox: the account's own mail is never touched; ``alpn``: the protocols offered in the TLS
    handshake, for IMAPS on a port shared with HTTPS)."""
    if case.target.endpoint(endpoint) is None:
        m.row(protocol)
        return
    for s in STEPS:
        m.set(protocol, s, "not reached")
    acct = case.account(0)
    changer = ChangeMaker(case, label=f"writer-{endpoint}")
    box = changer.scratch_mailbox("reachability")
    changer.append(box, sample_message(f"reachability {protocol}"))  # set-up: a refusal is the harness's

    def login():
        sock = case.path.open(endpoint)
        ctx = tls_context(case, endpoint)
        if alpn:
            ctx.set_alpn_protocols(alpn)
        conn = case.adopt(ImapConnection.over(sock, transcript=case.transcript, implicit_tls=endpoint == "imaps",
                                              ssl_context=ctx, label=f"{endpoint}-reach" + ("-alpn" if alpn else ""),
                                              leg=case.path.leg, timeout=8.0))
        conn.read_greeting()
        if endpoint == "imap" and "STARTTLS" in conn.capability():
            res = conn.starttls(tls_context(case, endpoint))
            if not res.ok:
                raise ConformanceFailure(f"STARTTLS refused: {res.tagged.first_line}")
        res = conn.login(acct.username, acct.password)
        if not res.ok:
            raise ConformanceFailure(f"LOGIN failed: {res.tagged.first_line}")
        return conn

    conn = m.attempt(protocol, "login", login)
    if not conn:
        return

    def read():
        sel = conn.command(f"SELECT {quote(box)}")
        if not sel.ok:
            raise ConformanceFailure(f"SELECT failed: {sel.tagged.first_line}")
        res = conn.command("FETCH * BODY.PEEK[]")
        if not res.ok or not any("FETCH" in r.first_line.upper() for r in res.untagged):
            raise ConformanceFailure(f"FETCH * BODY[] gave no message: {res.tagged.first_line}")

    if not m.attempt(protocol, "read", read):
        return

    def push():
        tag = conn.idle()
        changer.append(box, sample_message("reachability push"), blame=Blame.SERVER)
        wait_for_untagged(conn, untagged.exists(), budget, blame=Blame.SERVER, expected="EXISTS during IDLE")
        conn.done(tag)

    m.attempt(protocol, "push", push)


def _submission_row(case, m: Matrix) -> None:
    """Submission through the path: EHLO, STARTTLS when offered, AUTH (reading and push do not apply)."""
    protocol = "submission"
    if case.target.endpoint("submission") is None:
        m.row(protocol)
        return
    m.set(protocol, "login", "not reached")
    m.set(protocol, "read", "n/a")
    m.set(protocol, "push", "n/a")
    acct = case.account(0)

    def login():
        sock = case.path.open("submission")
        smtp = CapturingSMTP.over(sock, transcript=case.transcript, label="submission-reach", leg=case.path.leg,
                                  timeout=8.0)
        case.on_cleanup(smtp.close)
        smtp.ehlo("client.test")
        if smtp.has_extn("starttls"):
            ctx = tls_context(case, "submission")
            smtp.starttls(context=ctx)
            smtp.ehlo("client.test")
        smtp.login(acct.username, acct.password)
        case.transcript.add(case.path.leg, "N", "submission: EHLO, STARTTLS, AUTH accepted", conn="submission-reach")

    m.attempt(protocol, "login", login)


def _jmap_rows(case, m: Matrix, budget: float) -> None:
    """JMAP through the path: the Session and a download, then the two push rows."""
    if case.target.endpoint("jmap") is None:
        for p in ("JMAP", "JMAP push (EventSource)", "JMAP push (WebSocket)"):
            m.row(p)
        return
    for p in ("JMAP", "JMAP push (EventSource)", "JMAP push (WebSocket)"):
        for s in STEPS:
            m.set(p, s, "not reached")
    m.set("JMAP", "push", "n/a", "push: see the JMAP push rows")
    w = writer(case)
    inbox = w.mailbox_id()
    seed = import_message(w, "reachability seed", inbox)  # read back below: never the account's own mail
    c = client(case, label="jmap-reach")

    def login():
        s = c.discover()
        if MAIL not in (s.get("capabilities") or {}):
            raise ConformanceFailure("Session lacks the mail capability")
        return s

    if not m.attempt("JMAP", "login", login):
        for p in ("JMAP push (EventSource)", "JMAP push (WebSocket)"):
            m.set(p, "login", "failed", "the Session was not reachable")
        return

    def read():
        got = c.ok("Email/get", {"accountId": c.account_id, "ids": [seed["id"]], "properties": ["blobId"]})["list"]
        down = c.download(got[0]["blobId"], "m.eml", "message/rfc822")
        if down.status_code != 200 or b"Subject:" not in down.content:
            raise ConformanceFailure(f"download of the message answered {down.status_code}")

    m.attempt("JMAP", "read", read)
    _eventsource_row(case, m, c, w, inbox, budget)
    _websocket_row(case, m, c, w, inbox, budget)


def _eventsource_row(case, m: Matrix, c, w, inbox: str, budget: float) -> None:
    """JMAP push over EventSource through the path (the Session is known to be reachable)."""
    p = "JMAP push (EventSource)"
    m.set(p, "login", "ok")
    m.set(p, "read", "n/a")

    def es_push():
        stream = event_stream(case, c, types="*", ping=0, label="es-reach")
        ctype = stream.header("content-type").split(";")[0].strip()
        if stream.status != 200 or ctype != "text/event-stream":
            raise ConformanceFailure(f"eventSourceUrl answered {stream.status} {ctype or '(no Content-Type)'}")
        import_message(w, "reachability es push", inbox)
        for item in stream.events(time.monotonic() + budget):
            if state_change(item):
                return
        raise ConformanceFailure(f"no state event within {budget:.1f} s")

    m.attempt(p, "push", es_push)


def _websocket_row(case, m: Matrix, c, w, inbox: str, budget: float) -> None:
    """JMAP push over WebSocket through the path, where the Session advertises it."""
    p = "JMAP push (WebSocket)"
    if WEBSOCKET not in c.capabilities():
        m.rows[p] = {s: "not offered" for s in STEPS} | {"note": "no websocket capability"}
        return
    m.set(p, "read", "n/a")

    def ws_login():
        ws = websocket(case, c, label="ws-reach")
        if ws.accepted is None:
            raise ConformanceFailure(f"WebSocket upgrade refused ({getattr(ws.rejected, 'status_code', '?')})")
        return ws

    ws = m.attempt(p, "login", ws_login)
    if not ws:
        return

    def ws_push():
        enable_push(ws, ["Email"])
        import_message(w, "reachability ws push", inbox)
        if ws.recv_json(budget, lambda o: isinstance(o, dict) and o.get("@type") == "StateChange") is None:
            raise ConformanceFailure(f"no StateChange within {budget:.1f} s")

    m.attempt(p, "push", ws_push)


def _https_port_row(case, m: Matrix, budget: float) -> None:
    """IMAPS served on the port that also serves HTTPS (the port an HTTPS-only firewall lets through): where the
    target declares it so, the same three steps as IMAPS, with ALPN "imap" in the handshake."""
    protocol = "IMAPS on the HTTPS port"
    imaps, jmap = case.target.endpoint("imaps"), case.target.endpoint("jmap")
    if imaps and jmap and imaps.port == jmap.port and imaps.host == jmap.host:
        _imap_row(case, m, protocol, "imaps", budget, alpn=["imap"])
        m.set(protocol, "login", m.row(protocol)["login"], "same port as HTTPS (ALPN imap)")
    else:
        m.row(protocol)
        m.set(protocol, "login", "not offered", "the target serves IMAPS and HTTPS on different ports")


@pytest.mark.requirement("mobile.http.mail-over-https")
@pytest.mark.scenarios(*FIREWALLS)
def test_reachability(case):
    """Per protocol: log in, read a message, get a change pushed, through this firewall (a table in the report)."""
    budget = case.param("max_latency")
    m = Matrix(case)
    _imap_row(case, m, "IMAP", "imap", budget)
    _imap_row(case, m, "IMAPS", "imaps", budget)
    _submission_row(case, m)
    _jmap_rows(case, m, budget)
    _https_port_row(case, m, budget)
    rows = {p: m.rows.get(p, {s: "not offered" for s in STEPS} | {"note": ""}) for p in PROTOCOLS}
    case.attach("reachability", {"target": case.target.name, "scenario": str(case.scenario), "rows": rows})
    complete = [p for p, r in rows.items() if all(r[s] in ("ok", "n/a") for s in STEPS) and r["push"] == "ok"]
    readable = [p for p, r in rows.items() if r["login"] == "ok" and r["read"] == "ok"]
    case.measure("protocols_complete", len(complete), "protocols")
    summary = "; ".join(f"{p}: " + "/".join(r[s] for s in STEPS) for p, r in rows.items()
                        if any(r[s] != "not offered" for s in STEPS))
    case.note("reachability " + json.dumps(rows))
    assert complete or (readable and any(rows[p]["push"] == "ok" for p in rows)), (
        f"through {case.scenario} no protocol lets a client log in, read a message and get a change pushed "
        f"({summary})")
    case.passed(f"complete over {', '.join(complete)}; {summary}")

