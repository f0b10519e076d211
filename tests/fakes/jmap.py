"""A scripted JMAP peer (plain HTTP on loopback) whose push misbehaves on purpose.

Just enough JMAP for the push checks: the Session, Core/echo, Mailbox/get, Email/get (state), upload,
Email/import and Email/set (each bumps the Email state), an EventSource endpoint and JMAP over WebSocket.
``behaviour`` picks the push: ``conformant``, ``ignore-ping`` (no ping events, WebSocket pings unanswered),
``never-close`` (closeafter=state never ends the response) or ``extra-types`` (pushes Mailbox and Thread
whatever was asked). Used only to prove that the push checks can fail and pass.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import h11

BEHAVIOURS = ("conformant", "ignore-ping", "never-close", "extra-types")
ACCOUNT = "acc1"
USERS = (("alice", "alice-fake-pw1"), ("bob", "bob-fake-pw2"))
CORE = "urn:ietf:params:jmap:core"
WS = "urn:ietf:params:jmap:websocket"


class FakeJmapServer:
    def __init__(self, behaviour: str = "conformant") -> None:
        assert behaviour in BEHAVIOURS, behaviour
        self.behaviour = behaviour
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.port = self.sock.getsockname()[1]
        self.state = 1
        self.cond = threading.Condition()
        self.blobs: dict[str, bytes] = {}
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
                             WS: {"url": f"ws://127.0.0.1:{self.port}/ws", "supportsPush": True}},
            "accounts": {ACCOUNT: {"name": "alice", "isPersonal": True, "isReadOnly": False, "accountCapabilities": {}}},
            "primaryAccounts": {"urn:ietf:params:jmap:mail": ACCOUNT},
            "username": "alice", "apiUrl": f"http://127.0.0.1:{self.port}/api",
            "downloadUrl": f"http://127.0.0.1:{self.port}/download/{{accountId}}/{{blobId}}/{{name}}?type={{type}}",
            "uploadUrl": f"http://127.0.0.1:{self.port}/upload/{{accountId}}",
            "eventSourceUrl": f"http://127.0.0.1:{self.port}/eventsource?types={{types}}&closeafter={{closeafter}}&ping={{ping}}",
            "state": "s1",
        }

    def _route(self, method: str, target: str, headers: dict, body: bytes) -> tuple[int, str, bytes]:
        path = urlsplit(target).path
        if path in ("/.well-known/jmap", "/session"):
            return 200, "application/json", json.dumps(self._session()).encode()
        if path.startswith("/upload/"):
            blob = f"B{len(self.blobs) + 1}"
            self.blobs[blob] = body
            return 201, "application/json", json.dumps({"accountId": ACCOUNT, "blobId": blob,
                                                         "type": headers.get("content-type", ""), "size": len(body)}).encode()
        if path == "/api":
            req = json.loads(body)
            return 200, "application/json", json.dumps(
                {"methodResponses": [self._method(*c) for c in req["methodCalls"]], "sessionState": "s1"}).encode()
        return 404, "text/plain", b"not found"

    def _method(self, name: str, args: dict, cid: str) -> list:
        if name == "Core/echo":
            return [name, args, cid]
        if name == "Mailbox/get":
            return [name, {"accountId": ACCOUNT, "state": "m1", "list": [{"id": "inbox", "role": "inbox", "name": "Inbox"}],
                           "notFound": []}, cid]
        if name == "Email/get":
            return [name, {"accountId": ACCOUNT, "state": str(self.state), "list": [], "notFound": []}, cid]
        if name == "Email/import":
            created = {k: {"id": f"M{self.state + 1}", "blobId": v["blobId"], "threadId": "T1", "size": 10}
                       for k, v in args["emails"].items()}
            old = str(self.state)
            return [name, {"accountId": ACCOUNT, "oldState": old, "newState": self.bump(), "created": created}, cid]
        if name == "Email/set":
            old = str(self.state)
            return [name, {"accountId": ACCOUNT, "oldState": old, "newState": self.bump(),
                           "updated": {k: None for k in (args.get("update") or {})}}, cid]
        return ["error", {"type": "unknownMethod"}, cid]

    def _changed(self, types: list[str] | None) -> dict:
        if self.behaviour == "extra-types" or types is None or "*" in types:
            return {ACCOUNT: {"Email": str(self.state), "Mailbox": f"m{self.state}", "Thread": f"t{self.state}"}}
        out = {}
        if "Email" in types:
            out["Email"] = str(self.state)
        return {ACCOUNT: out} if out else {}

    # -- EventSource --------------------------------------------------------------------------------
    def _eventsource(self, conn: socket.socket, h: h11.Connection, target: str, headers: dict) -> None:
        q = {k: v[0] for k, v in parse_qs(urlsplit(target).query, keep_blank_values=True).items()}
        types = q.get("types", "*").split(",")
        ping = int(q.get("ping") or 0)
        closeafter = q.get("closeafter") == "state"
        conn.sendall(h.send(h11.Response(status_code=200, headers=[
            ("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"), ("Connection", "close")])))
        seen = self.state
        last = headers.get("last-event-id")

        def state_event() -> bytes:
            changed = self._changed(types)
            if not changed:
                return b""
            data = json.dumps({"@type": "StateChange", "changed": changed})
            return f"id: {self.state}\nevent: state\ndata: {data}\n\n".encode()

        try:
            if last is not None and last != str(self.state):
                conn.sendall(h.send(h11.Data(data=state_event() or b": resume\n\n")))
                seen = self.state
            last_sent = time.monotonic()
            while not self.stopping:
                with self.cond:
                    wait = ping - (time.monotonic() - last_sent) if ping > 0 else 1.0
                    self.cond.wait(max(0.01, wait))
                    changed = self.state != seen
                    seen = self.state
                if changed:
                    ev = state_event()
                    if ev:
                        conn.sendall(h.send(h11.Data(data=ev)))
                        last_sent = time.monotonic()
                        if closeafter and self.behaviour != "never-close":
                            conn.sendall(h.send(h11.EndOfMessage()))
                            return
                        continue
                if ping > 0 and time.monotonic() - last_sent >= ping - 0.005:
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
                                   "methodResponses": [self._method(*c) for c in obj["methodCalls"]]}
                            if "id" in obj:
                                out["requestId"] = obj["id"]
                            send(ws.send(TextMessage(data=json.dumps(out))))
                        elif kind == "WebSocketPushEnable":
                            dt = obj.get("dataTypes")
                            push_types = None if dt is None else list(dt)
                            pushing = True
                            ps = obj.get("pushState")
                            if ps is not None and ps != str(self.state):
                                c = self._changed(push_types)
                                if c:
                                    send(ws.send(TextMessage(data=json.dumps(
                                        {"@type": "StateChange", "changed": c, "pushState": str(self.state)}))))
                        elif kind == "WebSocketPushDisable":
                            pushing = False
                data = conn.recv(65536)
                if not data:
                    return
                ws.receive_data(data)
        except OSError:
            return
        finally:
            done.set()
