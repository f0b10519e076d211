"""A scripted JMAP peer (plain HTTP on loopback, https for two faults) whose push misbehaves on purpose.

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

``faults`` (a set, any of ``FAULTS``) breaks one more rule each, for the checks of PushSubscription, blobs, imports,
EmailDelivery and HTTP behaviour; without them the peer keeps those rules. Its PushSubscription plays the application
server of RFC 8030: it POSTs a PushVerification on create (RFC 8291-encrypted when keys were given), pushes a
StateChange for each change once verified, honours 429 Retry-After and expires, allows exactly 127.0.0.1 as an
internal push target (the suite's receiver; other internal addresses are refused) and 64 subscriptions per user.
``close-delimited`` and ``tls-unclean-close`` serve https (a self-signed certificate) and frame EventSource bodies by the
close, ended with a TLS close_notify or with a bare TCP close (http.tls-closure).

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

from tests.fakes.jmap_pushsub import PushSubscriptions

FAULTS = (
    "no-pushsub",         # PushSubscription/* answer unknownMethod
    "refuse-loopback",    # production policy: 127.0.0.1 refused too (nothing reaches the suite's receiver)
    "no-verification",    # never POSTs the PushVerification
    "push-before-verify", # pushes StateChange to subscriptions not yet verified
    "accept-any-code",    # any verificationCode is accepted
    "no-ttl",             # POSTs without the TTL header
    "ignore-429",         # keeps pushing at the same rate after a 429
    "plaintext-push",     # ignores keys: pushes in plaintext
    "get-shows-url",      # PushSubscription/get returns url and keys, and asking for them is allowed
    "short-expiry-cap",   # caps expires at 24 h
    "push-after-expiry",  # ignores expires
    "accept-http",        # accepts http:// push URLs and pushes to them
    "allow-internal",     # pushes to any internal address (127.0.0.2, localhost ...)
    "no-sub-limit",       # no limit on the number of subscriptions
    "leaky-blobs",        # any user downloads any blob with any accountId
    "blob-ttl",           # unreferenced blobs vanish 2 s after upload
    "sloppy-import",      # Email/import creates messages from unknown blobs/mailboxes and bad keywords
    "no-eai",             # Email/import refuses raw UTF-8 header values (invalidEmail)
    "short-changes-log",  # /changes only from the last 50 changes (cannotCalculateChanges before)
    "no-delivery-type",   # EmailDelivery is never pushed
    "delivery-on-flags",  # the EmailDelivery state also changes on flag changes and deletes
    "cacheable",          # no Cache-Control on the Session and the EventSource response
    "no-chunked-requests",  # a chunked request body is answered 411 Length Required
    "unterminated-chunked",  # closeafter=state closes the connection without the last (0-size) chunk
    "comments",           # a ": keepalive" comment every second on every EventSource stream
    "no-accel",           # no X-Accel-Buffering: no on EventSource responses
    "unframed-events",    # a state event ends with its last line, without the blank line that dispatches it
    "close-delimited",    # serves https; EventSource bodies are framed by the close, which sends close_notify
    "tls-unclean-close",  # as close-delimited, but the close is a bare TCP close: no TLS close_notify
)
CLOSE_DELIMITED = frozenset({"close-delimited", "tls-unclean-close"})  # faults that serve https
SUB_LIMIT = 64
BEHAVIOURS = ("conformant", "ignore-ping", "never-close", "extra-types", "sloppy", "no-push", "clamp-ping", "late-ping",
              "silent-push", "quiet-stream", "clamp-ping-30", "import-fixes", "cannot-calculate", "no-wellknown",
              "wrong-ctype", "bad-utf8", "unterminated", "omit-state", "omit-accountId", "omit-newState")
OMITS = {"omit-state": "state", "omit-accountId": "accountId", "omit-newState": "newState"}
ACCOUNT = "acc1"
USERS = (("alice", "alice-fake-pw1"), ("bob", "bob-fake-pw2"))
ACCOUNTS = {"alice": ACCOUNT, "bob": "acc2"}  # each user's own account
CORE = "urn:ietf:params:jmap:core"
WS = "urn:ietf:params:jmap:websocket"


def _subject(raw: bytes) -> str | None:
    """The Subject header of a message, raw UTF-8 decoded (enough for the import checks)."""
    for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"subject:"):
            return line[8:].strip().decode("utf-8", errors="replace")
    return None


class FakeJmapServer:
    def __init__(self, behaviour: str = "conformant", *, eager_ping: bool = False, faults: tuple[str, ...] = ()) -> None:
        assert behaviour in BEHAVIOURS, behaviour
        assert set(faults) <= set(FAULTS), set(faults) - set(FAULTS)
        self.behaviour = behaviour
        self.faults = frozenset(faults)
        self.eager_ping = eager_ping
        self.delivery_state = 1  # EmailDelivery (RFC 8621 1.5): changes when a new Email is added
        self.blob_owner: dict[str, tuple[str, float]] = {}  # blobId -> (accountId, uploaded at)
        self.push = PushSubscriptions(self.faults, SUB_LIMIT)
        self.tls = None
        if self.faults & CLOSE_DELIMITED:
            from tests.fakes.tls import server_context

            self.tls = server_context(rsa=False)
        self.base = f"{'https' if self.tls else 'http'}://127.0.0.1:{{port}}"
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.port = self.sock.getsockname()[1]
        self.base = self.base.format(port=self.port)
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
        try:  # shutdown wakes the accept() of the serving thread (close alone leaves it blocked until the join gives up)
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for c in list(self.conns):
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass
        self.thread.join(2)
        self.push.close()

    def target_file(self, directory: Path, name: str | None = None) -> Path:
        """A target file for this peer, named ``fake-jmap-<name>`` (default: its behaviour)."""
        name = f"fake-jmap-{name or self.behaviour}"
        p = directory / f"{name}.toml"
        accounts = "".join(f'[[accounts]]\nusername = "{u}"\npassword = "{pw}"\n' for u, pw in USERS)
        p.write_text(f'name = "{name}"\n[endpoints]\njmap = "{self.base}"\n'
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
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
                self.conns.append(conn)
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
                    if "chunked" in headers.get("transfer-encoding", "") and "no-chunked-requests" in self.faults:
                        status, ctype, out, extra = 411, "text/plain", b"length required", []
                    else:
                        status, ctype, out, extra = self._route(ev.method.decode(), target, headers, body)
                    head = h.send(h11.Response(status_code=status, headers=[("Content-Type", ctype),
                                                                             ("Content-Length", str(len(out))),
                                                                             *extra]))
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

    @staticmethod
    def _user(headers: dict) -> str:
        """The user of a request (Basic auth; alice when there is none, as the push checks' old peers assumed)."""
        import base64

        auth = headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            try:
                return base64.b64decode(auth.split()[1]).decode().split(":", 1)[0]
            except (ValueError, IndexError):
                return "alice"
        return "alice"

    def _session(self, user: str = "alice") -> dict:
        acc = ACCOUNTS.get(user, ACCOUNT)
        return {
            "capabilities": {CORE: {"maxSizeUpload": 10_000_000, "maxConcurrentUpload": 4, "maxSizeRequest": 10_000_000,
                                    "maxConcurrentRequests": 4, "maxCallsInRequest": 16, "maxObjectsInGet": 500,
                                    "maxObjectsInSet": 500, "collationAlgorithms": []},
                             "urn:ietf:params:jmap:mail": {},
                             **({} if self.behaviour == "no-push" else {WS: {
                                 "url": "ws:/ws" if self.behaviour == "sloppy" else f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}/ws",
                                 "supportsPush": True}})},
            "accounts": {acc: {"name": user, "isPersonal": True, "isReadOnly": False, "accountCapabilities": {}}},
            "primaryAccounts": {"urn:ietf:params:jmap:mail": acc},
            "username": user, "apiUrl": f"{self.base}/api",
            "downloadUrl": f"{self.base}/download/{{accountId}}/{{blobId}}/"
                           + ("file" if self.behaviour == "sloppy" else "{name}") + "?type={type}",
            "uploadUrl": f"{self.base}/upload/{{accountId}}",
            "eventSourceUrl": f"{self.base}/eventsource?types={{types}}&closeafter={{closeafter}}&ping={{ping}}",
            "state": "s1",
        }

    def _route(self, method: str, target: str, headers: dict, body: bytes) -> tuple[int, str, bytes, list]:
        u = urlsplit(target)
        path = u.path
        sloppy = self.behaviour == "sloppy"
        user = self._user(headers)
        nocache = [] if "cacheable" in self.faults else [("Cache-Control", "no-cache, no-store, must-revalidate")]
        if path == "/.well-known/jmap" and self.behaviour == "no-wellknown":
            return 404, "text/plain", b"not here", []
        if path in ("/.well-known/jmap", "/session"):
            return 200, "application/json", json.dumps(self._session(user)).encode(), nocache
        if path.startswith("/upload/"):
            acc = path.split("/")[2]
            if acc != ACCOUNTS.get(user, ACCOUNT):
                return 403, "text/plain", b"not your account", []
            blob = f"B{len(self.blobs) + 1}"
            self.blobs[blob] = body
            self.blob_owner[blob] = (acc, time.monotonic())
            info = {"accountId": acc, "blobId": blob, "size": len(body), "type": headers.get("content-type", "")}
            if sloppy:
                del info["accountId"]
            return 201, "application/json", json.dumps(info).encode(), []
        if path.startswith("/download/"):
            acc, blob = path.split("/")[2], path.split("/")[3]
            if blob not in self.blobs or not self._may_read(user, acc, blob):
                return 404, "text/plain", b"no such blob", []
            data = self.blobs[blob] + (b"\r\n" if sloppy else b"")
            ctype = parse_qs(u.query).get("type", ["application/octet-stream"])[0]
            return 200, ctype, data, []
        if path == "/api":
            return (*self._api(body, user), [])
        return 404, "text/plain", b"not found", []

    def _may_read(self, user: str, acc: str, blob: str) -> bool:
        """Blobs belong to the account they were uploaded to; an unreferenced one vanishes after 2 s with blob-ttl."""
        if "leaky-blobs" in self.faults:
            return True
        owner, at = self.blob_owner.get(blob, (ACCOUNT, 0.0))
        referenced = any(e["blobId"] == blob for e in self.emails.values())
        if "blob-ttl" in self.faults and not referenced and time.monotonic() - at > 2:
            return False
        return acc == ACCOUNTS.get(user, ACCOUNT) and owner == acc

    def _api(self, body: bytes, user: str = "alice") -> tuple[int, str, bytes]:
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
        if any(c[0].startswith("PushSubscription/") for c in req["methodCalls"] if isinstance(c, list) and c):
            out = [self._pushsub(c[0], c[1], c[2], user) for c in req["methodCalls"]]
            return 200, "application/json", json.dumps({"methodResponses": out, "sessionState": "s1"}).encode()
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
            if kind == "created" or "delivery-on-flags" in self.faults:
                self.delivery_state += 1
            self.state += 1
            self.log.append((self.state, email_id, kind))
            self.cond.notify_all()
            state = str(self.state)
            states = {"Email": state, "EmailDelivery": f"d{self.delivery_state}"}
        self.push.changed(ACCOUNT, "alice", states)
        return state

    def _pushsub(self, name: str, args: dict, cid: str, user: str) -> list:
        return self.push.method(name, args, cid, user)

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
            raw = {i: self.blobs.get(self.emails[i]["blobId"], b"") for i in ids if i in self.emails}
            found = [{"id": i, "blobId": self.emails[i]["blobId"], "size": len(raw[i]), "subject": _subject(raw[i]),
                      "mailboxIds": {m: True for m in self.emails[i]["mailboxIds"]}} for i in raw]
            return [name, {"accountId": ACCOUNT, "state": "1" if sloppy else str(self.state), "list": found,
                           "notFound": [i for i in ids if i not in self.emails]}, cid]
        if name == "Email/query":
            box = (args.get("filter") or {}).get("inMailbox")
            ids = [i for i in reversed(self.emails) if box is None or box in self.emails[i]["mailboxIds"]]
            return [name, {"accountId": ACCOUNT, "ids": ids, "position": 0,
                           "queryState": str(self.state), "canCalculateChanges": False}, cid]
        if name == "Email/import":
            old = str(self.state)
            created, not_created = {}, {}
            for k, v in args["emails"].items():
                err = self._import_error(v)
                if err:
                    not_created[k] = err
                    continue
                eid = f"M{len(self.emails) + len(self.log) + 1}"
                blob = v["blobId"]
                if self.behaviour == "import-fixes":  # a "fixed" copy under a new blob; the answer names the old one
                    fixed = f"B{len(self.blobs) + 1}"
                    self.blobs[fixed] = b"X-Fixed-By: fake\r\n" + self.blobs[blob]
                    blob = fixed
                self.emails[eid] = {"blobId": blob, "keywords": dict(v.get("keywords") or {}),
                                    "mailboxIds": dict(v.get("mailboxIds") or {})}
                self._record(eid, "created")
                created[k] = {"id": eid, "blobId": v["blobId"], "threadId": "T" + eid,
                              "size": len(self.blobs.get(blob, b""))}
            return [name, {"accountId": ACCOUNT, "oldState": old, "newState": str(self.state), "created": created,
                           "notCreated": not_created or None}, cid]
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

    def _import_error(self, v: dict) -> dict | None:
        """The SetError Email/import gives (RFC 8621 4.8), or None: bad references and keywords are invalidProperties,
        the same blob twice in one mailbox alreadyExists with existingId, and raw UTF-8 headers are accepted."""
        import re

        if "sloppy-import" in self.faults:
            return None
        bad = []
        if v.get("blobId") not in self.blobs:
            bad.append("blobId")
        boxes = v.get("mailboxIds")
        if not isinstance(boxes, dict) or not boxes or any(b not in self.mailboxes or t is not True
                                                           for b, t in boxes.items()):
            bad.append("mailboxIds")
        kws = v.get("keywords") or {}
        if not isinstance(kws, dict) or any(not re.fullmatch(r"[\x21-\x7e]+", k) or re.search(r'[(){\]%*"\\]', k)
                                            or t is not True for k, t in kws.items()):
            bad.append("keywords")
        if bad:
            return {"type": "invalidProperties", "properties": bad}
        raw = self.blobs[v["blobId"]]
        if "no-eai" in self.faults and any(b > 0x7f for b in raw.split(b"\r\n\r\n", 1)[0]):
            return {"type": "invalidEmail", "description": "8-bit header"}
        for eid, e in self.emails.items():
            if e["blobId"] == v["blobId"] and e.get("mailboxIds") == boxes:
                return {"type": "alreadyExists", "existingId": eid}
        return None

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
        if "short-changes-log" in self.faults and int(since) < self.state - 50:
            return ["error", {"type": "cannotCalculateChanges", "description": "only the last 50 changes are kept"}, cid]
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

    def _changed(self, types: list[str] | None, sent: dict[str, str] | None = None) -> dict:
        """The StateChange.changed for a stream asking for ``types``; ``sent`` (the states this stream already
        pushed, updated here) keeps a type whose state did not move (EmailDelivery on a flag change) out of it."""
        if self.behaviour == "extra-types" or types is None or "*" in types:
            out = {"Email": str(self.state), "Mailbox": f"m{self.state}", "Thread": f"t{self.state}"}
        else:
            out = {"Email": str(self.state)} if "Email" in types else {}
            if "Mailbox" in types:
                out["Mailbox"] = f"m{self.state}"  # every change here moves a count or a mailbox
        if (types is None or "*" in types or "EmailDelivery" in types) and "no-delivery-type" not in self.faults:
            out["EmailDelivery"] = f"d{self.delivery_state}"
        if sent is not None:
            out = {k: v for k, v in out.items() if sent.get(k) != v}
            sent.update(out)
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
        head = [("Content-Type", ctype), ("Connection", "close")]
        head += [] if "cacheable" in self.faults else [("Cache-Control", "no-cache")]
        head += [] if "no-accel" in self.faults else [("X-Accel-Buffering", "no")]
        by_close = bool(self.faults & CLOSE_DELIMITED)  # no chunks, no length: the body ends with the connection
        if by_close:
            conn.sendall(b"HTTP/1.1 200 OK\r\n" + b"".join(f"{k}: {v}\r\n".encode() for k, v in head) + b"\r\n")
        else:
            conn.sendall(h.send(h11.Response(status_code=200, headers=head)))

        def send(data: bytes) -> None:
            conn.sendall(data if by_close else h.send(h11.Data(data=data)))

        if self.behaviour == "bad-utf8":
            send(b": not \xff UTF-8\n\n")
        seen = self.state
        last = headers.get("last-event-id")
        sent = {"EmailDelivery": f"d{self.delivery_state}"}
        last_comment = time.monotonic()

        def state_event() -> bytes:
            changed = self._changed(types, sent)
            if not changed or self.behaviour == "quiet-stream":
                return b""
            data = json.dumps({"@type": "StateChange", "changed": changed})
            end = "\n" if "unframed-events" in self.faults else "\n\n"
            return f"id: {self.state}\nevent: state\ndata: {data}{end}".encode()

        try:
            if self.behaviour == "sloppy":
                ping = ping or 1  # pings although ping=0 asked for none; and Last-Event-ID is ignored
                last = None
            if last is not None and last != str(self.state):
                send(state_event() or b": resume\n\n")
                seen = self.state
            if self.eager_ping and ping > 0:
                send(f'event: ping\ndata: {{"interval":{ping}}}\n\n'.encode())
            last_sent = time.monotonic()
            while not self.stopping:
                with self.cond:
                    wait = every - (time.monotonic() - last_sent) if ping > 0 else 1.0
                    if "comments" in self.faults:
                        wait = min(wait, 1.0 - (time.monotonic() - last_comment))
                    self.cond.wait(max(0.01, wait))
                    changed = self.state != seen
                    seen = self.state
                if "comments" in self.faults and time.monotonic() - last_comment >= 0.995:
                    last_comment = time.monotonic()
                    send(b": keepalive\n\n")
                if changed:
                    ev = state_event()
                    if ev:
                        if self.behaviour == "unterminated" and closeafter:
                            ev += b"event: extra\ndata: {}\n"  # no blank line: clients discard it
                        send(ev)
                        last_sent = time.monotonic()
                        if closeafter and self.behaviour != "never-close":
                            if by_close:
                                self._close_delimited_end(conn)
                                return
                            if "unterminated-chunked" in self.faults:
                                conn.close()  # the body ends without its last (0-size) chunk
                                return
                            conn.sendall(h.send(h11.EndOfMessage()))
                            return
                        continue
                if ping > 0 and time.monotonic() - last_sent >= every - 0.005:
                    last_sent = time.monotonic()
                    if self.behaviour != "ignore-ping":
                        send(f'event: ping\ndata: {{"interval":{ping}}}\n\n'.encode())
        except OSError:
            return

    def _close_delimited_end(self, conn: socket.socket) -> None:
        """End a close-delimited body: with a TLS close_notify (``close-delimited``), or a bare TCP close without one
        (``tls-unclean-close``: the client cannot tell the end from a truncation, RFC 9112 9.8)."""
        if "tls-unclean-close" in self.faults:
            conn.shutdown(socket.SHUT_RDWR)  # below TLS: no close_notify goes out
            return
        conn.settimeout(2)
        try:
            conn.unwrap()  # sends close_notify (and waits a little for the client's)
        except (OSError, ValueError):
            pass

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
        ws_sent: dict[str, str] = {}
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
                    c = self._changed(push_types, ws_sent)
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
