"""JMAP clients bound to the case (path, transcript, cleanup), the writer that makes changes, and push helpers.

HTTP clients honour the scenario path: ``path.endpoint("jmap")`` (the target, or a reverse proxy in front of
it), ``path.proxy_url`` and ``path.ca_file`` for forward and TLS-inspecting proxies; raw streams
(EventSource, WebSocket) use ``path.open("jmap")``, which tunnels through a forward proxy with CONNECT. A URL the
server names with another address of itself is sent to the address the client uses (``JmapClient.route``), noted.

Everything a case's clients create with a /set, /copy or Email/import call is destroyed at the end of the case
(``Creations``), through a direct client; what the server will not destroy, and the uploads (JMAP cannot delete
them), become the result's leftovers.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from conformance.errors import ConformanceFailure, HarnessError, NotApplicable
from conformance.protocols.eventsource import stream_connection
from conformance.protocols.jmap import (
    WEBSOCKET,
    EventStream,
    JmapClient,
    JmapWebSocket,
    Timed,
    sample_message,
    split_url,
)
from conformance.protocols.tls import trusting


def tls_context(case, endpoint: str = "jmap"):
    """The TLS context for a raw connection to ``endpoint`` through the path: the path's own CA where the path
    terminates TLS (an explicit TLS-inspecting proxy: every tunnel; a reverse proxy: only the HTTP endpoint it serves
    over https), else the target's own TLS settings (``verify``, ``ca_file``), which hold on every other leg."""
    ca = getattr(case.path, "ca_file", None)
    if ca and (endpoint == "jmap" or getattr(case.path, "forward_proxy", None) is not None):
        return trusting(ca)
    return case.target.tls.client_context()


def _new_client(case, account: int, label: str, via_path: bool) -> JmapClient:
    case.require_endpoint("jmap")
    ep = case.path.endpoint("jmap") if via_path else case.target.endpoint("jmap")
    acct = case.account(account)
    ca = getattr(case.path, "ca_file", None) if via_path else None
    verify: Any = ca if ca else (case.target.tls.ca_file or case.target.tls.verify)
    c = JmapClient(f"{ep.scheme}://{ep.host}:{ep.port}", acct.username, acct.password, case.transcript,
                   label=label, leg=case.path.leg if via_path else "direct",
                   verify=verify, proxy=getattr(case.path, "proxy_url", None) if via_path else None,
                   timeout=case.deadline, via=case.intermediary_name(via_path))
    own = case.target.endpoint("jmap")
    if via_path and (own.host, own.port) != (ep.host, ep.port):
        c.aliases[f"{own.host}:{own.port}"] = f"{ep.host}:{ep.port}"
    return c


def client(case, account: int = 0, label: str | None = None, via_path: bool = True) -> JmapClient:
    """A JMAP client for an account; ``via_path=False`` goes straight to the target (e.g. the writer that makes
    the changes a push check waits for). What it creates is destroyed at the end of the case."""
    c = _new_client(case, account, label or f"jmap#{len(case.clients) + 1}", via_path)
    made = Creations()
    c.observers.append(made.observe)
    case.remove_at_end("jmap", f"{c.username}: JMAP objects made by {c.label}", lambda: made.remove(case, account, c))
    return case.adopt(c)


REMOVE_LAST = ("Mailbox",)  # destroyed after everything else (with onDestroyRemoveEmails): they may hold the rest


@dataclass
class Creations:
    """What one client made with /set, /copy and Email/import calls: (accountId, type) -> ids in creation order,
    less what it destroyed itself; read from every Response it got (``JmapClient.observers``)."""

    made: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def observe(self, calls: list, response: dict) -> None:
        responses = dict.get(response, "methodResponses")
        for r in responses if isinstance(responses, list) else []:
            if not (isinstance(r, list) and len(r) == 3 and isinstance(r[0], str) and isinstance(r[1], dict)):
                continue  # a malformed answer is the check's to judge; nothing was made that we can name
            type_, _, method = r[0].partition("/")
            acc = r[1].get("accountId")
            if method not in ("set", "copy", "import") or not isinstance(acc, str):
                continue
            ids = self.made.setdefault((acc, type_), [])
            created = r[1].get("created")
            for obj in (created.values() if isinstance(created, dict) else []):
                if isinstance(obj, dict) and isinstance(obj.get("id"), str) and obj["id"] not in ids:
                    ids.append(obj["id"])
            destroyed = r[1].get("destroyed")
            for i in destroyed if isinstance(destroyed, list) else []:
                if i in ids:
                    ids.remove(i)

    def remove(self, case, account: int, c: JmapClient) -> None:
        """Destroy what is left through a direct client; what the server keeps, and the uploads, are leftovers."""
        if c.uploaded:
            case.leftover("upload", f"{c.username}: {len(c.uploaded)} blob(s) uploaded by {c.label}: "
                          + ", ".join(c.uploaded[:5]) + (", ..." if len(c.uploaded) > 5 else ""),
                          "JMAP has no way to delete an upload (RFC 8620 6); the server removes unreferenced blobs itself")
        todo = sorted(((k, v) for k, v in self.made.items() if v), key=lambda kv: kv[0][1] in REMOVE_LAST)
        if not todo:
            return
        w = _new_client(case, account, "cleanup", via_path=False)
        try:
            for (acc, type_), ids in todo:
                args: dict[str, Any] = {"accountId": acc, "destroy": list(reversed(ids))}
                if type_ == "Mailbox":
                    args["onDestroyRemoveEmails"] = True
                name, out = w.one(f"{type_}/set", args)
                if name == "error":
                    for i in ids:
                        case.leftover("jmap", f"{w.username}: {type_} {i} (account {acc})",
                                      f"{type_}/set destroy answered error {out.get('type')}")
                    continue
                kept = out.get("notDestroyed")
                for i, err in (kept.items() if isinstance(kept, dict) else []):
                    kind = err.get("type") if isinstance(err, dict) else err
                    if kind != "notFound":  # already gone: destroyed by another client of the case
                        case.leftover("jmap", f"{w.username}: {type_} {i} (account {acc})",
                                      f"{type_}/set destroy answered notDestroyed {kind}")
        finally:
            w.close()


def writer(case, account: int = 0) -> JmapClient:
    """The second, undisturbed client that makes the changes a push check waits for: straight to the target,
    its Session already fetched."""
    w = client(case, account, label="writer", via_path=False)
    w.ensure_session()
    return w


def scratch_mailbox(case, c: JmapClient, prefix: str = "lemonade") -> str:
    """A new top-level Mailbox only this case uses (Mailbox/set create; destroyed with its messages at the end of the
    case, like everything the client creates): its id. A set-up step: the server refusing it is the harness's."""
    name = case.unique(prefix).replace(".", "-")
    args = c.ok("Mailbox/set", {"accountId": c.account_id, "create": {"box": {"name": name, "parentId": None}}})
    made = (args.optional("created", dict) or {}).get("box")
    if not isinstance(made, dict) or not isinstance(made.get("id"), str):
        raise HarnessError(f"Mailbox/set could not create the scratch mailbox {name}: {args.get('notCreated')}")
    return made["id"]


def ids_in(c: JmapClient, mailbox_id: str, limit: int = 1000) -> list[str]:
    """Email/query of one mailbox: the ids of its messages (at most ``limit``)."""
    return list(c.ok("Email/query", {"accountId": c.account_id, "filter": {"inMailbox": mailbox_id},
                                     "limit": limit}).list("ids"))


def import_message(c: JmapClient, subject: str, mailbox_id: str | None = None) -> dict:
    """Email/import of a small sample message into ``mailbox_id`` (default: the account's Inbox, looked up with
    Mailbox/get); the created Email (id, blobId, ...)."""
    return c.import_email(sample_message(subject), mailbox_id or c.mailbox_id())


def _open(case, scheme: str, label: str):
    """A captured connection for a raw stream to the JMAP endpoint through the path (TLS for https); and its
    authority."""
    ep = case.path.endpoint("jmap")
    sock = case.path.open("jmap")
    conn = stream_connection(sock, scheme, ep.host, tls_context(case), transcript=case.transcript, label=label,
                             leg=case.path.leg, timeout=case.deadline)
    return conn, f"{ep.host}:{ep.port}"


def event_source_url(c: JmapClient, types: str = "*", closeafter: str = "no", ping: int = 0) -> str:
    """The Session's eventSourceUrl template filled in (not-applicable when the Session has none)."""
    tpl = c.ensure_session().get("eventSourceUrl")
    if not isinstance(tpl, str):
        raise NotApplicable("the Session has no eventSourceUrl")
    url = tpl.replace("{types}", types).replace("{closeafter}", closeafter).replace("{ping}", str(ping))
    return c.url("eventSourceUrl") if url == tpl else _absolute(c, url)


def _absolute(c: JmapClient, url: str) -> str:
    """A URL the Session gave, resolved against the Session URL."""
    return urljoin(c.session_url or c.base_url + "/", url)


def event_stream(case, c: JmapClient, *, types: str = "*", closeafter: str = "no", ping: int = 0,
                 last_event_id: str | None = None, label: str = "eventsource", head_timeout: float = 10.0) -> EventStream:
    """GET eventSourceUrl through the path (Last-Event-ID when given); the stream with its response head read."""
    url = event_source_url(c, types, closeafter, ping)
    # the stream goes where this client reaches the target; a URL naming another address of it is noted (route)
    c.route(urlsplit(url)._replace(scheme=urlsplit(c.base_url).scheme).geturl(), f"eventSourceUrl {url}")
    scheme, _, _, target = split_url(url)
    sock, host = _open(case, urlsplit(c.base_url).scheme, label)
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else None
    stream = EventStream(sock, host, target, c.auth, case.transcript, label=label, leg=case.path.leg, headers=headers)
    case.adopt(stream)
    stream.read_head(head_timeout)
    return stream


def require_eventsource_200(stream: EventStream, what: str, requirement: str | tuple[str, ...] | None = None) -> None:
    """The EventSource response must be 200 text/event-stream (sse.content-type); else the check fails (for
    ``requirement`` only, when given: the check's other requirements are then not judged)."""
    ctype = stream.header("content-type").split(";")[0].strip().lower()
    if stream.status != 200 or ctype != "text/event-stream":
        reason = stream.response.reason.decode(errors="replace") if stream.response else ""
        raise ConformanceFailure(f"{what}: expected 200 with Content-Type text/event-stream, got {stream.status} "
                                 f"{reason} (Content-Type {ctype or 'none'}): no push over EventSource",
                                 requirement=requirement)


def websocket_url(c: JmapClient) -> str:
    """The websocket capability's URL, made absolute (not-applicable when the Session does not advertise it)."""
    caps = c.capabilities()
    ws = caps.get(WEBSOCKET)
    if not isinstance(ws, dict) or not isinstance(ws.get("url"), str):
        raise NotApplicable(f"the Session does not advertise {WEBSOCKET}")
    url = ws["url"]
    u = urlsplit(url)
    if not u.netloc:  # e.g. Cyrus 3.6's "wss:/jmap/ws/": a scheme and a path, no authority
        base = urlsplit(c.session_url or c.base_url)
        url = f"{u.scheme or 'wss'}://{base.netloc}{u.path}" + (f"?{u.query}" if u.query else "")
    return url


def websocket(case, c: JmapClient, *, label: str = "ws", subprotocols: list[str] | None = None,
              handshake: bool = True) -> JmapWebSocket:
    """A WebSocket to the JMAP endpoint through the path, asking for ``subprotocols`` (jmap), upgraded unless
    ``handshake`` is False; see ``require_accepted``."""
    url = websocket_url(c)
    home = urlsplit(c.base_url)
    # the stream goes where this client reaches the target; a URL naming another address of it is noted (route)
    c.route(urlsplit(url)._replace(scheme=home.scheme).geturl(), f"the websocket url {url}")
    _, _, _, target = split_url(url)
    sock, host = _open(case, urlsplit(c.base_url).scheme, label)
    ws = JmapWebSocket(sock, host, target, c.auth, case.transcript, label=label, leg=case.path.leg,
                       subprotocols=["jmap"] if subprotocols is None else subprotocols)
    case.adopt(ws)
    if handshake:
        ws.handshake()
    return ws


def require_accepted(ws: JmapWebSocket) -> None:
    """The upgrade must have been accepted (101 with the jmap subprotocol); else the check fails."""
    if ws.accepted is None:
        rej = ws.rejected
        raise ConformanceFailure(f"WebSocket upgrade refused: {getattr(rej, 'status_code', '?')} "
                                 f"(expected 101 Switching Protocols with Sec-WebSocket-Protocol: jmap)")


def enable_push(ws: JmapWebSocket, data_types: list[str] | None, push_state: str | None = None,
                settle: float = 0.3) -> None:
    """Send WebSocketPushEnable (RFC 8887 4.3.5.2) and give the server ``settle`` seconds to act on it: it sends no
    acknowledgement, and a change made before it registered the socket would never be pushed."""
    msg: dict[str, Any] = {"@type": "WebSocketPushEnable", "dataTypes": data_types}
    if push_state is not None:
        msg["pushState"] = push_state
    ws.send_json(msg)
    time.sleep(settle)


def state_change(ev: Timed) -> dict | None:
    """The StateChange object a `state` event carries (None for other events or data that is no JSON object)."""
    if ev.kind != "event" or ev.event is None or ev.event.type != "state":
        return None
    try:
        data = json.loads(ev.event.data)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def timeline(stream: EventStream, changes: list[tuple[float, str]], *, title: str, end: float | None = None,
             thresholds: list[tuple[str, float]] | None = None, verdict: str | None = None) -> dict:
    """Attachment 'timeline' in the push helper's format (report/figures/timeline.py, version 1)."""
    events: list[dict[str, Any]] = [{"t": stream.opened_at, "kind": "client", "label": "GET eventSourceUrl"}]
    for t, label in changes:
        events.append({"t": t, "kind": "change", "label": label})
    last = stream.opened_at
    gap = (0.0, stream.opened_at, stream.opened_at)
    for x in stream.log:
        if x.kind == "eof":
            events.append({"t": x.t, "kind": "closed", "label": "server ended the response"})
            continue
        ev = x.event
        kind = "keepalive" if (x.kind == "comment" or (ev and ev.type == "ping")) else (
            "notification" if ev and ev.type == "state" else "server")
        label = (ev.type if ev else x.kind) + (f" {ev.data[:80]}" if ev and ev.type != "comment" else "")
        events.append({"t": x.t, "kind": kind, "bytes": x.nbytes, "label": label})
        if x.t - last > gap[0]:
            gap = (x.t - last, last, x.t)
        last = x.t
    stop = end if end is not None else max([e["t"] for e in events] + [stream.opened_at])
    spans = [{"start": stream.opened_at, "end": stop, "kind": "idle", "label": "EventSource response open"}]
    if gap[0] > 0:
        spans.append({"start": gap[1], "end": gap[2], "kind": "gap", "label": f"longest silence {gap[0]:.2f} s"})
    out: dict[str, Any] = {"version": 1, "title": title, "start": max(0.0, stream.opened_at - 0.2), "end": stop,
                           "events": events, "spans": spans,
                           "thresholds": [{"name": n, "seconds": s} for n, s in (thresholds or [])]}
    if verdict:
        out["verdict"] = verdict
    return out
