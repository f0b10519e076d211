"""A scripted JMAP peer (plain HTTP on loopback) whose push misbehaves on purpose.

Just enough JMAP for the push checks: the Session, Core/echo, Mailbox/get, Email/get (state), upload,
Email/import and Email/set (each bumps the Email state), an EventSource endpoint and JMAP over WebSocket.
``behaviour`` picks the push: ``conformant``, ``ignore-ping`` (no ping events, WebSocket pings unanswered),
``never-close`` (closeafter=state never ends the response) or ``extra-types`` (pushes Mailbox and Thread
whatever was asked); ``clamp-ping`` raises any ping below 60 s to 60 (RFC 8620 7.3 allows no minimum above 30);
``late-ping`` announces the requested interval but sends pings twice as far apart; ``silent-push`` accepts
WebSocketPushEnable but never pushes; ``no-push`` answers EventSource with 204 and offers no WebSocket;
``no-wellknown`` answers /.well-known/jmap with 404 (the Session is at /session);
``sloppy`` breaks the other core rules (a template without {name}, wrong sessionState, 500 instead of problem
details, a dropped method call, an Email state that never changes, no /changes, corrupted downloads, a
relative WebSocket url, no requestId echo, an upload response without accountId); ``wrong-ctype`` answers
EventSource with 200 text/plain; ``bad-utf8`` sends an invalid UTF-8 octet in a comment; ``unterminated`` ends a
closeafter=state response with an event that lacks its blank line after the state event; ``quiet-stream`` answers
EventSource with 200 and pings but never sends a
state event; ``clamp-ping-30`` raises any ping below 30 to 30 (the most RFC 8620 7.3 allows: lawful);
``import-fixes`` stores an imported message changed (an added header) under a new blob, yet answers the import with
the uploaded blobId; ``cannot-calculate`` answers every Email/changes with cannotCalculateChanges (lawful).
Used only to prove that the checks can fail and pass.

``omit-state``, ``omit-accountId`` and ``omit-newState`` leave that member out of every method response that must carry
it (/get; every standard method; /changes, /set and Email/import): the checks must fail naming the member, not crash.

``eager_ping=True`` sends the first ping at once (pings are due at the latest N s after the previous event, so an
early one is allowed): the ping-clamp check can then read the interval without waiting 30 s.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import h11

BEHAVIOURS = ("conformant", "ignore-ping", "never-close", "extra-types", "sloppy", "no-push", "clamp-ping", "late-ping",
              "silent-push", "quiet-stream", "clamp-ping-30", "import-fixes", "cannot-calculate", "no-wellknown",
              "wrong-ctype", "bad-utf8", "unterminated", "omit-state", "omit-accountId", "omit-newState")
OMITS = {"omit-state": "state", "omit-accountId": "accountId", "omit-newState": "newState"}
ACCOUNT = "acc1"
USERS = (("alice", "alice-fake-pw1"), ("bob", "bob-fake-pw2"))
CORE = "urn:ietf:params:jmap:core"
WS = "urn:ietf:params:jmap:websocket"


class FakeJmapServer:
    def __init__(self, behaviour: str = "conformant", *, eager_ping: bool = False) -> None:
        assert behaviour in BEHAVIOURS, behaviour
        self.behaviour = behaviour
        self.eager_ping = eager_ping
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.port = self.sock.getsockname()[1]
        self.state = 1
        self.cond = threading.Condition()
        self.blobs: dict[str, bytes] = {}
        self.emails: dict[str, dict] = {}  # id -> {"blobId", "keywords", "mailboxIds"}
        self.mailboxes: dict[str, dict] = {"inbox": {"id": "inbox", "role": "inbox", "name": "Inbox"}}
        self.log: list[tuple[int, str, str]] = []  # (state after, id, created|updated|destroyed)
        self.stopping = False
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)

    # -- lifecycle --------------------------------------------------------------------------------
    def __enter__(self) -> "FakeJmapServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping = True
        with self.cond:
            self.cond.notify_all()
        self.sock.close()
        for c in list(self.conns):
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass
        self.thread.join(2)

    def target_file(self, directory: Path) -> Path:
        p = directory / f"fake-jmap-{self.behaviour}.toml"
        accounts = "".join(f'[[accounts]]\nusername = "{u}"\npassword = "{pw}"\n' for u, pw in USERS)
        p.write_text(f'name = "fake-jmap-{self.behaviour}"\n[endpoints]\njmap = "http://127.0.0.1:{self.port}"\n'
                     f"{accounts}")
        return p

    def _accept(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def bump(self) -> str:
        with self.cond:
            self.state += 1
            self.cond.notify_all()
            return str(self.state)

    # -- HTTP -------------------------------------------------------------------------------------
    def _serve(self, conn: socket.socket) -> None:
        h = h11.Connection(h11.SERVER)
        conn.settimeout(30)
        try:
            while not self.stopping:
                ev = h.next_event()
                if ev is h11.NEED_DATA:
                    data = conn.recv(65536)
                    h.receive_data(data)
                    if not data:
                        return
                    continue
                if isinstance(ev, h11.ConnectionClosed):
                    return
                if isinstance(ev, h11.Request):
                    body = b""
                    while True:
                        e2 = h.next_event()
                        if e2 is h11.NEED_DATA:
                            h.receive_data(conn.recv(65536))
                            continue
                        if isinstance(e2, h11.Data):
                            body += e2.data
                        if isinstance(e2, h11.EndOfMessage):
                            break
                    headers = {k.decode().lower(): v.decode() for k, v in ev.headers}
                    target = ev.target.decode()
                    if headers.get("upgrade", "").lower() == "websocket":
                        self._websocket(conn, ev)
                        return
                    if target.startswith("/eventsource"):
                        self._eventsource(conn, h, target, headers)
                        return
                    status, ctype, out = self._route(ev.method.decode(), target, headers, body)
                    head = h.send(h11.Response(status_code=status, headers=[("Content-Type", ctype),
                                                                             ("Content-Length", str(len(out)))]))
                    conn.sendall(head + (h.send(h11.Data(data=out)) if out else b"") + h.send(h11.EndOfMessage()))
                    if h.our_state is h11.MUST_CLOSE:
                        return
                    h.start_next_cycle()
        except (OSError, h11.ProtocolError):
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _session(self) -> dict:
        return {
            "capabilities": {CORE: {"maxSizeUpload": 10_000_000, "maxConcurrentUpload": 4, "maxSizeRequest": 10_000_000,
                                    "maxConcurrentRequests": 4, "maxCallsInRequest": 16, "maxObjectsInGet": 500,
                                    "maxObjectsInSet": 500, "collationAlgorithms": []},
                             "urn:ietf:params:jmap:mail": {},
                             **({} if self.behaviour == "no-push" else {WS: {
                                 "url": "ws:/ws" if self.behaviour == "sloppy" else f"ws://127.0.0.1:{self.port}/ws",
                                 "supportsPush": True}})},
            "accounts": {ACCOUNT: {"name": "alice", "isPersonal": True, "isReadOnly": False, "accountCapabilities": {}}},
            "primaryAccounts": {"urn:ietf:params:jmap:mail": ACCOUNT},
            "username": "alice", "apiUrl": f"http://127.0.0.1:{self.port}/api",
            "downloadUrl": f"http://127.0.0.1:{self.port}/download/{{accountId}}/{{blobId}}/"
                           + ("file" if self.behaviour == "sloppy" else "{name}") + "?type={type}",
            "uploadUrl": f"http://127.0.0.1:{self.port}/upload/{{accountId}}",
            "eventSourceUrl": f"http://127.0.0.1:{self.port}/eventsource?types={{types}}&closeafter={{closeafter}}&ping={{ping}}",
            "state": "s1",
        }

    def _route(self, method: str, target: str, headers: dict, body: bytes) -> tuple[int, str, bytes]:
        u = urlsplit(target)
        path = u.path
        sloppy = self.behaviour == "sloppy"
        if path == "/.well-known/jmap" and self.behaviour == "no-wellknown":
            return 404, "text/plain", b"not here"
        if path in ("/.well-known/jmap", "/session"):
            return 200, "application/json", json.dumps(self._session()).encode()
        if path.startswith("/upload/"):
            blob = f"B{len(self.blobs) + 1}"
            self.blobs[blob] = body
            info = {"accountId": ACCOUNT, "blobId": blob, "size": len(body), "type": headers.get("content-type", "")}
            if sloppy:
                del info["accountId"]
            return 201, "application/json", json.dumps(info).encode()
        if path.startswith("/download/"):
            blob = path.split("/")[3]
            if blob not in self.blobs:
                return 404, "text/plain", b"no such blob"
            data = self.blobs[blob] + (b"\r\n" if sloppy else b"")
            ctype = parse_qs(u.query).get("type", ["application/octet-stream"])[0]
            return 200, ctype, data
        if path == "/api":
            return self._api(body)
        return 404, "text/plain", b"not found"

    def _api(self, body: bytes) -> tuple[int, str, bytes]:
        problem = "application/problem+json"
        sloppy = self.behaviour == "sloppy"
        try:
            req = json.loads(body)
        except ValueError:
            if sloppy:
                return 500, "text/plain", b"internal error"
            return 400, problem, json.dumps({"type": "urn:ietf:params:jmap:error:notJSON", "status": 400}).encode()
        if not isinstance(req, dict) or not isinstance(req.get("methodCalls"), list) or "using" not in req:
            return 400, problem, json.dumps({"type": "urn:ietf:params:jmap:error:notRequest", "status": 400}).encode()
        unknown = [c for c in req["using"] if c not in (CORE, "urn:ietf:params:jmap:mail")]
        if unknown:
            return 400, problem, json.dumps({"type": "urn:ietf:params:jmap:error:unknownCapability", "status": 400}).encode()
        if len(req["methodCalls"]) > 16:
            return 400, problem, json.dumps({"type": "urn:ietf:params:jmap:error:limit", "status": 400,
                                             "limit": "maxCallsInRequest"}).encode()
        out = [self._omit(self._method(*c)) for c in req["methodCalls"]]
        if sloppy:
            out = [r for r in out if r[0] != "error"]
        return 200, "application/json", json.dumps(
            {"methodResponses": out, "sessionState": "s2" if sloppy else "s1"}).encode()

    def _record(self, email_id: str, kind: str) -> str:
        with self.cond:
            self.state += 1
            self.log.append((self.state, email_id, kind))
            self.cond.notify_all()
            return str(self.state)

    def _omit(self, response: list) -> list:
        """The member this peer leaves out, removed from the answers that must carry it."""
        member = OMITS.get(self.behaviour)
        name, args = response[0], response[1]
        kinds = {"state": ("/get",), "accountId": ("/get", "/changes", "/set", "/query", "/import"),
                 "newState": ("/changes", "/set", "/import")}
        if member and name != "error" and any(name.endswith(k) for k in kinds[member]):
            args.pop(member, None)
        return response

    def _method(self, name: str, args: dict, cid: str) -> list:
        sloppy = self.behaviour == "sloppy"
        if name == "Core/echo":
            return [name, args, cid]
        if name == "Mailbox/get":
            return [name, {"accountId": ACCOUNT, "state": f"m{self.state}", "list": list(self.mailboxes.values()),
                           "notFound": []}, cid]
        if name == "Mailbox/set":
            return self._mailbox_set(args, cid)
        if name == "Email/get":
            ids = args.get("ids")
            ids = list(self.emails) if ids is None else ids
            found = [{"id": i, "blobId": self.emails[i]["blobId"], "size": len(self.blobs[self.emails[i]["blobId"]]),
                      "mailboxIds": {m: True for m in self.emails[i]["mailboxIds"]}}
                     for i in ids if i in self.emails]
            return [name, {"accountId": ACCOUNT, "state": "1" if sloppy else str(self.state), "list": found,
                           "notFound": [i for i in ids if i not in self.emails]}, cid]
        if name == "Email/query":
            box = (args.get("filter") or {}).get("inMailbox")
            ids = [i for i in reversed(self.emails) if box is None or box in self.emails[i]["mailboxIds"]]
            return [name, {"accountId": ACCOUNT, "ids": ids, "position": 0,
                           "queryState": str(self.state), "canCalculateChanges": False}, cid]
        if name == "Email/import":
            old = str(self.state)
            created = {}
            for k, v in args["emails"].items():
                eid = f"M{len(self.emails) + len(self.log) + 1}"
                blob = v["blobId"]
                if self.behaviour == "import-fixes":  # a "fixed" copy under a new blob; the answer names the old one
                    fixed = f"B{len(self.blobs) + 1}"
                    self.blobs[fixed] = b"X-Fixed-By: fake\r\n" + self.blobs[blob]
                    blob = fixed
                self.emails[eid] = {"blobId": blob, "keywords": dict(v.get("keywords") or {}),
                                    "mailboxIds": set(v.get("mailboxIds") or {})}
                self._record(eid, "created")
                created[k] = {"id": eid, "blobId": v["blobId"], "threadId": "T" + eid, "size": len(self.blobs[blob])}
            return [name, {"accountId": ACCOUNT, "oldState": old, "newState": str(self.state), "created": created}, cid]
        if name == "Email/set":
            old = str(self.state)
            updated, destroyed = {}, []
            for eid, patch in (args.get("update") or {}).items():
                if eid in self.emails:
                    for k, v in patch.items():
                        if k.startswith("keywords/"):
                            self.emails[eid]["keywords"][k.split("/", 1)[1]] = v
                    self._record(eid, "updated")
                    updated[eid] = None
            for eid in args.get("destroy") or []:
                if self.emails.pop(eid, None) is not None:
                    self._record(eid, "destroyed")
                    destroyed.append(eid)
            return [name, {"accountId": ACCOUNT, "oldState": old, "newState": str(self.state), "updated": updated,
                           "destroyed": destroyed}, cid]
        if name == "Email/changes" and self.behaviour == "cannot-calculate":
            if args.get("maxChanges") is not None and args["maxChanges"] <= 0:
                return ["error", {"type": "invalidArguments"}, cid]
            return ["error", {"type": "cannotCalculateChanges"}, cid]
        if name == "Email/changes" and not sloppy:
            return self._changes(args, cid)
        return ["error", {"type": "unknownMethod"}, cid]

    def _mailbox_set(self, args: dict, cid: str) -> list:
        old = f"m{self.state}"
        created, destroyed, not_destroyed = {}, [], {}
        for k, v in (args.get("create") or {}).items():
            mid = f"mb{len(self.mailboxes) + 1}"
            self.mailboxes[mid] = {"id": mid, "role": None, "name": v.get("name", "")}
            created[k] = {"id": mid}
        for mid in args.get("destroy") or []:
            if mid not in self.mailboxes or mid == "inbox":
                not_destroyed[mid] = {"type": "notFound" if mid not in self.mailboxes else "forbidden"}
                continue
            inside = [e for e, m in self.emails.items() if mid in m["mailboxIds"]]
            if inside and not args.get("onDestroyRemoveEmails"):
                not_destroyed[mid] = {"type": "mailboxHasEmail"}
                continue
            for e in inside:
                self.emails.pop(e)
                self._record(e, "destroyed")
            self.mailboxes.pop(mid)
            destroyed.append(mid)
        if created or destroyed:
            self.bump()  # a mailbox change is pushed as a Mailbox StateChange
        return ["Mailbox/set", {"accountId": ACCOUNT, "oldState": old, "newState": f"m{self.state}", "created": created,
                                "destroyed": destroyed, "notDestroyed": not_destroyed or None}, cid]

    def _changes(self, args: dict, cid: str) -> list:
        since = args.get("sinceState")
        max_changes = args.get("maxChanges")
        if max_changes is not None and max_changes <= 0:
            return ["error", {"type": "invalidArguments"}, cid]
        if not str(since).isdigit() or int(since) > self.state:
            return ["error", {"type": "cannotCalculateChanges"}, cid]
        entries = [e for e in self.log if e[0] > int(since)]
        more = False
        if max_changes and len({e[1] for e in entries}) > max_changes:
            cut, ids = [], set()
            for e in entries:
                if e[1] not in ids and len(ids) == max_changes:
                    break
                ids.add(e[1])
                cut.append(e)
            entries, more = cut, True
        created, updated, destroyed = [], [], []
        for _, eid, kind in entries:
            if kind == "created":
                created.append(eid)
            elif kind == "updated" and eid not in created and eid not in updated:
                updated.append(eid)
            elif kind == "destroyed":
                if eid in created:
                    created.remove(eid)
                else:
                    destroyed.append(eid)
                if eid in updated:
                    updated.remove(eid)
        new_state = str(entries[-1][0]) if entries else str(self.state)
        return ["Email/changes", {"accountId": ACCOUNT, "oldState": since, "newState": new_state,
                                  "hasMoreChanges": more, "created": created, "updated": updated,
                                  "destroyed": destroyed}, cid]

    def _changed(self, types: list[str] | None) -> dict:
        if self.behaviour == "extra-types" or types is None or "*" in types:
            return {ACCOUNT: {"Email": str(self.state), "Mailbox": f"m{self.state}", "Thread": f"t{self.state}"}}
        out = {}
        if "Email" in types:
            out["Email"] = str(self.state)
        if "Mailbox" in types:
            out["Mailbox"] = f"m{self.state}"  # every change here moves a count or a mailbox
        return {ACCOUNT: out} if out else {}

    # -- EventSource --------------------------------------------------------------------------------
    def _eventsource(self, conn: socket.socket, h: h11.Connection, target: str, headers: dict) -> None:
        if self.behaviour == "no-push":
            conn.sendall(h.send(h11.Response(status_code=204, headers=[("Content-Length", "0")]))
                         + h.send(h11.EndOfMessage()))
            return
        q = {k: v[0] for k, v in parse_qs(urlsplit(target).query, keep_blank_values=True).items()}
        types = q.get("types", "*").split(",")
        ping = int(q.get("ping") or 0)
        if self.behaviour == "clamp-ping" and ping > 0:
            ping = max(ping, 60)  # the minimum is 60: ping=30 becomes 60, which RFC 8620 7.3 forbids
        if self.behaviour == "clamp-ping-30" and ping > 0:
            ping = max(ping, 30)  # the minimum is 30: as high as RFC 8620 7.3 allows
        every = 2 * ping if self.behaviour == "late-ping" else ping  # late-ping: announces ping, sends at 2 x ping
        closeafter = q.get("closeafter") == "state"
        ctype = "text/plain" if self.behaviour == "wrong-ctype" else "text/event-stream"
        conn.sendall(h.send(h11.Response(status_code=200, headers=[
            ("Content-Type", ctype), ("Cache-Control", "no-cache"), ("Connection", "close")])))
        if self.behaviour == "bad-utf8":
            conn.sendall(h.send(h11.Data(data=b": not \xff UTF-8\n\n")))
        seen = self.state
        last = headers.get("last-event-id")

        def state_event() -> bytes:
            changed = self._changed(types)
            if not changed or self.behaviour == "quiet-stream":
                return b""
            data = json.dumps({"@type": "StateChange", "changed": changed})
            return f"id: {self.state}\nevent: state\ndata: {data}\n\n".encode()

        try:
            if self.behaviour == "sloppy":
                ping = ping or 1  # pings although ping=0 asked for none; and Last-Event-ID is ignored
                last = None
            if last is not None and last != str(self.state):
                conn.sendall(h.send(h11.Data(data=state_event() or b": resume\n\n")))
                seen = self.state
            if self.eager_ping and ping > 0:
                conn.sendall(h.send(h11.Data(data=f'event: ping\ndata: {{"interval":{ping}}}\n\n'.encode())))
            last_sent = time.monotonic()
            while not self.stopping:
                with self.cond:
                    wait = every - (time.monotonic() - last_sent) if ping > 0 else 1.0
                    self.cond.wait(max(0.01, wait))
                    changed = self.state != seen
                    seen = self.state
                if changed:
                    ev = state_event()
                    if ev:
                        if self.behaviour == "unterminated" and closeafter:
                            ev += b"event: extra\ndata: {}\n"  # no blank line: clients discard it
                        conn.sendall(h.send(h11.Data(data=ev)))
                        last_sent = time.monotonic()
                        if closeafter and self.behaviour != "never-close":
                            conn.sendall(h.send(h11.EndOfMessage()))
                            return
                        continue
                if ping > 0 and time.monotonic() - last_sent >= every - 0.005:
                    last_sent = time.monotonic()
                    if self.behaviour != "ignore-ping":
                        conn.sendall(h.send(h11.Data(data=f'event: ping\ndata: {{"interval":{ping}}}\n\n'.encode())))
        except OSError:
            return

    # -- WebSocket ----------------------------------------------------------------------------------
    def _websocket(self, conn: socket.socket, req: h11.Request) -> None:
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import AcceptConnection, CloseConnection, Ping, Request, TextMessage

        ws = WSConnection(ConnectionType.SERVER)
        raw = f"{req.method.decode()} {req.target.decode()} HTTP/1.1\r\n".encode()
        raw += b"".join(k + b": " + v + b"\r\n" for k, v in req.headers) + b"\r\n"
        ws.receive_data(raw)
        push_types: list[str] | None = None
        pushing = False
        seen = self.state
        lock = threading.Lock()

        def send(data: bytes) -> None:
            with lock:
                conn.sendall(data)

        done = threading.Event()

        def pusher() -> None:
            try:
                push_loop()
            except Exception:  # noqa: BLE001 - the connection ended under us
                return

        def push_loop() -> None:
            nonlocal seen
            while not self.stopping and not done.is_set():
                with self.cond:
                    self.cond.wait(1.0)
                    changed = self.state != seen
                    seen = self.state
                if changed and pushing:
                    c = self._changed(push_types)
                    if c:
                        send(ws.send(TextMessage(data=json.dumps(
                            {"@type": "StateChange", "changed": c, "pushState": str(self.state)}))))

        threading.Thread(target=pusher, daemon=True).start()
        text = ""
        conn.settimeout(30)
        try:
            while not self.stopping:
                for ev in ws.events():
                    if isinstance(ev, Request):
                        send(ws.send(AcceptConnection(subprotocol="jmap" if "jmap" in ev.subprotocols else None)))
                    elif isinstance(ev, Ping):
                        if self.behaviour != "ignore-ping":
                            send(ws.send(ev.response()))
                    elif isinstance(ev, CloseConnection):
                        send(ws.send(ev.response()))
                        return
                    elif isinstance(ev, TextMessage):
                        text += ev.data
                        if not ev.message_finished:
                            if self.behaviour == "sloppy":
                                text = ""  # fragments are not reassembled: the message is lost
                            continue
                        msg, text = text, ""
                        try:
                            obj = json.loads(msg)
                        except ValueError:
                            send(ws.send(TextMessage(data=json.dumps(
                                {"@type": "RequestError", "type": "urn:ietf:params:jmap:error:notJSON", "status": 400}))))
                            continue
                        kind = obj.get("@type")
                        if kind == "Request":
                            out = {"@type": "Response", "sessionState": "s1",
                                   "methodResponses": [self._omit(self._method(*c)) for c in obj["methodCalls"]]}
                            if "id" in obj and self.behaviour != "sloppy":
                                out["requestId"] = obj["id"]
                            send(ws.send(TextMessage(data=json.dumps(out))))
                        elif kind == "WebSocketPushEnable":
                            dt = obj.get("dataTypes")
                            push_types = None if dt is None else list(dt)
                            # sloppy takes null as "nothing"; silent-push accepts the enable and never pushes
                            pushing = not (self.behaviour == "sloppy" and dt is None) and self.behaviour != "silent-push"
                            ps = obj.get("pushState") if self.behaviour not in ("sloppy", "silent-push") else None
                            if ps is not None and ps != str(self.state):
                                c = self._changed(push_types)
                                if c:
                                    send(ws.send(TextMessage(data=json.dumps(
                                        {"@type": "StateChange", "changed": c, "pushState": str(self.state)}))))
                        elif kind == "WebSocketPushDisable":
                            pushing = self.behaviour == "sloppy" and pushing  # sloppy: keeps pushing
                data = conn.recv(65536)
                if not data:
                    return
                ws.receive_data(data)
        except OSError:
            return
        finally:
            done.set()
