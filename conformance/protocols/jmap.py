"""JMAP over HTTP (RFC 8620/8621), EventSource streams and JMAP over WebSocket (RFC 8887), with capture.

``JmapClient`` (httpx) does session discovery, API requests, upload and download, recording every request
and response (headers and body, Basic credentials redacted) into the case transcript. Long-lived streams
use a raw socket from the scenario path (so they work through reverse proxies and CONNECT tunnels) with
h11 (``EventStream``) or wsproto (``JmapWebSocket``), with a deadline on every read.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Iterator
from urllib.parse import quote, urljoin, urlsplit

import h11
import httpx

from ..errors import ConformanceFailure, HarnessError, ProtocolViolation, ServerClosed, ServerTimeout
from ..transcript import Transcript, printable
from .sse import SseEvent, SseParser

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
WEBSOCKET = "urn:ietf:params:jmap:websocket"
BODY_LIMIT = 3000


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _head_text(start: str, headers) -> str:
    return start + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)


class JmapClient:
    """One JMAP user over HTTP. ``base_url`` is scheme://host:port of the JMAP endpoint (or the path's)."""

    def __init__(self, base_url: str, username: str, password: str, transcript: Transcript, *,
                 label: str = "jmap", leg: str = "direct", verify: Any = False, proxy: str | None = None,
                 timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.auth = basic(username, password)
        self.transcript = transcript
        transcript.secrets.add(password)
        transcript.secrets.add(self.auth.split()[1])
        self.label = label
        self.leg = leg
        self.redactor = transcript.redactor()
        kw: dict[str, Any] = {"verify": verify, "timeout": timeout}
        if proxy:
            kw["proxy"] = proxy
        self.http = httpx.Client(**kw)
        # netloc -> netloc: absolute URLs naming the target's own address are sent to the path's endpoint
        # instead (a reverse proxy that rewrites Host makes the server name itself in redirects)
        self.aliases: dict[str, str] = {}
        self.session: dict[str, Any] | None = None
        self.session_url: str | None = None
        self.last_response: httpx.Response | None = None

    def close(self) -> None:
        self.http.close()

    # -- capture ----------------------------------------------------------------------------------
    def _record_request(self, req: httpx.Request) -> None:
        body = req.content or b""
        text = _head_text(f"{req.method} {req.url.raw_path.decode()} HTTP/1.1", req.headers.multi_items())
        text += "\r\n" + printable(body, BODY_LIMIT)
        self.transcript.add(self.leg, "C", self.redactor.client(text), len(body), self.label)

    def _record_response(self, resp: httpx.Response) -> None:
        body = resp.content
        text = _head_text(f"{resp.http_version} {resp.status_code} {resp.reason_phrase}", resp.headers.multi_items())
        text += "\r\n" + printable(body, BODY_LIMIT)
        self.transcript.add(self.leg, "S", self.redactor.server(text), len(body), self.label)

    def request(self, method: str, url: str, *, auth: bool = True, headers: dict[str, str] | None = None,
                content: bytes | None = None, follow: bool = False) -> httpx.Response:
        hdrs = dict(headers or {})
        if auth:
            hdrs["Authorization"] = self.auth
        url = self._alias(urljoin(self.base_url + "/", url))
        for _ in range(5 if follow else 1):
            req = self.http.build_request(method, url, headers=hdrs, content=content)
            self._record_request(req)
            try:
                resp = self.http.send(req)
            except httpx.TimeoutException as e:
                raise ServerTimeout(f"no HTTP response to {method} {url} before the deadline ({e})") from e
            except httpx.ProxyError as e:
                raise HarnessError(f"proxy refused {method} {url}: {e}") from e
            except httpx.ConnectError as e:
                if "CERTIFICATE_VERIFY_FAILED" in str(e):
                    raise HarnessError(f"TLS verification of {url} failed with the path's trust settings: {e}") from e
                raise ServerClosed(f"HTTP {method} {url} failed: {type(e).__name__}: {e}") from e
            except httpx.TransportError as e:
                raise ServerClosed(f"HTTP {method} {url} failed: {type(e).__name__}: {e}") from e
            self._record_response(resp)
            self.last_response = resp
            if follow and resp.status_code in (301, 302, 303, 307, 308) and "location" in resp.headers:
                url = self._alias(urljoin(str(resp.url), resp.headers["location"]))
                if resp.status_code == 303:
                    method, content = "GET", None
                continue
            return resp
        return resp

    def _alias(self, url: str) -> str:
        u = urlsplit(url)
        if u.netloc in self.aliases:
            new = u._replace(netloc=self.aliases[u.netloc]).geturl()
            self.transcript.note(f"{self.label}: {url} names the target's own address; sent through the path as {new}")
            return new
        return url

    # -- session ----------------------------------------------------------------------------------
    def discover(self) -> dict[str, Any]:
        """GET /.well-known/jmap, following redirects; the Session object."""
        resp = self.request("GET", "/.well-known/jmap", follow=True)
        if resp.status_code != 200:
            raise ConformanceFailure(f"/.well-known/jmap: expected 200 with a Session (after redirects), "
                                     f"got {resp.status_code} {resp.reason_phrase}")
        try:
            self.session = resp.json()
        except ValueError as e:
            raise ProtocolViolation(f"Session resource is not JSON: {resp.text[:200]!r}") from e
        self.session_url = str(resp.url)
        return self.session

    def ensure_session(self) -> dict[str, Any]:
        return self.session or self.discover()

    def url(self, key: str) -> str:
        """A Session URL (apiUrl, uploadUrl, ...) made absolute against the session resource."""
        s = self.ensure_session()
        value = s.get(key)
        if not isinstance(value, str):
            raise ConformanceFailure(f"Session has no string {key} (got {value!r})")
        return urljoin(self.session_url or self.base_url + "/", value)

    @property
    def account_id(self) -> str:
        s = self.ensure_session()
        acc = (s.get("primaryAccounts") or {}).get(MAIL)
        if not acc:
            raise ConformanceFailure(f"Session has no primaryAccounts[{MAIL}]")
        return acc

    def capabilities(self) -> dict[str, Any]:
        return self.ensure_session().get("capabilities") or {}

    # -- API ------------------------------------------------------------------------------------
    def post_api(self, body: bytes, content_type: str = "application/json") -> httpx.Response:
        return self.request("POST", self.url("apiUrl"), headers={"Content-Type": content_type}, content=body)

    def call(self, method_calls: list, using: list[str] | None = None) -> dict[str, Any]:
        """A JMAP Request; the Response object (a non-200 answer is a failure)."""
        req = {"using": using or [CORE, MAIL], "methodCalls": method_calls}
        resp = self.post_api(json.dumps(req).encode())
        if resp.status_code != 200:
            raise ConformanceFailure(f"API request answered {resp.status_code}: {resp.text[:300]}")
        try:
            data = resp.json()
        except ValueError as e:
            raise ProtocolViolation(f"API response is not JSON: {resp.text[:200]!r}") from e
        if not isinstance(data, dict) or not isinstance(data.get("methodResponses"), list):
            raise ProtocolViolation(f"API response has no methodResponses list: {str(data)[:200]}")
        return data

    def one(self, name: str, args: dict[str, Any], using: list[str] | None = None) -> tuple[str, dict[str, Any]]:
        """A single method call; (response name, arguments)."""
        data = self.call([[name, args, "c0"]], using)
        responses = data["methodResponses"]
        r = responses[0] if responses else None
        if not (isinstance(r, list) and len(r) == 3 and isinstance(r[0], str) and isinstance(r[1], dict)):
            raise ProtocolViolation(f"the response to {name} is missing or not [name, arguments, id]: "
                                    f"methodResponses {str(responses)[:200]}")
        return r[0], r[1]

    def ok(self, name: str, args: dict[str, Any], using: list[str] | None = None) -> dict[str, Any]:
        rname, rargs = self.one(name, args, using)
        if rname == "error":
            raise HarnessError(f"{name} returned error {rargs} (the check needed it to work)")
        return rargs

    # -- blobs ----------------------------------------------------------------------------------
    def upload(self, data: bytes, content_type: str = "message/rfc822") -> httpx.Response:
        url = self.url("uploadUrl").replace("{accountId}", quote(self.account_id, safe=""))
        return self.request("POST", url, headers={"Content-Type": content_type}, content=data)

    def download(self, blob_id: str, name: str = "blob.bin", type_: str = "application/octet-stream") -> httpx.Response:
        tpl = self.url("downloadUrl")
        url = (tpl.replace("{accountId}", quote(self.account_id, safe="")).replace("{blobId}", quote(blob_id, safe=""))
               .replace("{name}", quote(name, safe="")).replace("{type}", quote(type_, safe="")))
        return self.request("GET", url)

    def import_email(self, raw: bytes, mailbox_id: str, keywords: dict | None = None) -> dict[str, Any]:
        up = self.upload(raw)
        if up.status_code not in (200, 201):
            raise HarnessError(f"upload failed: {up.status_code} {up.text[:200]}")
        blob = up.json()["blobId"]
        args = self.ok("Email/import", {"accountId": self.account_id, "emails": {
            "e1": {"blobId": blob, "mailboxIds": {mailbox_id: True}, "keywords": keywords or {}}}})
        created = (args.get("created") or {}).get("e1")
        if not created:
            raise HarnessError(f"Email/import did not create the message: {args.get('notCreated')}")
        return {"blobId": blob, **created}

    def mailbox_id(self, role: str = "inbox") -> str:
        args = self.ok("Mailbox/get", {"accountId": self.account_id, "ids": None, "properties": ["role", "name"]})
        for mb in args.get("list", []):
            if mb.get("role") == role:
                return mb["id"]
        raise HarnessError(f"no mailbox with role {role}")

    def state(self, type_: str) -> str:
        args = self.ok(f"{type_}/get", {"accountId": self.account_id, "ids": []})
        if not isinstance(args.get("state"), str):
            raise ProtocolViolation(f"{type_}/get answered without a state string (RFC 8620 5.1): {str(args)[:200]}")
        return args["state"]


def sample_message(subject: str = "lemonade test", body: str = "Hello from the lemonade suite.\r\n") -> bytes:
    import email.utils
    import uuid

    return (f"From: Alice <alice@localhost>\r\nTo: Bob <bob@localhost>\r\nSubject: {subject}\r\n"
            f"Date: {email.utils.formatdate()}\r\nMessage-ID: <{uuid.uuid4().hex}@lemonade.test>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}").encode()


# -- raw streams ------------------------------------------------------------------------------------
def wrap_tls(sock: socket.socket, scheme: str, host: str, ctx: ssl.SSLContext | None) -> socket.socket:
    if scheme not in ("https", "wss"):
        return sock
    if ctx is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    try:  # ragged EOFs are reported, not hidden: a close-delimited body needs close_notify (RFC 9112 9.8)
        return ctx.wrap_socket(sock, server_hostname=host, suppress_ragged_eofs=False)
    except (ssl.SSLError, OSError) as e:
        sock.close()
        raise ConformanceFailure(f"TLS handshake with the JMAP endpoint failed: {e}") from e


@dataclass
class Timed:
    t: float  # transcript clock
    kind: str  # "event", "comment", "data", "eof"
    event: SseEvent | None = None
    nbytes: int = 0


class EventStream:
    """GET eventSourceUrl over one raw HTTP/1.1 connection; events as they arrive, each with its time."""

    def __init__(self, sock: socket.socket, host: str, target: str, auth: str | None, transcript: Transcript, *,
                 label: str = "eventsource", leg: str = "direct", headers: dict[str, str] | None = None) -> None:
        self.sock = sock
        self.transcript = transcript
        self.label = label
        self.leg = leg
        self.redactor = transcript.redactor()
        self.h11 = h11.Connection(h11.CLIENT)
        self.parser = SseParser()
        self.response: h11.Response | None = None
        self.ended = False
        self.eof_at: float | None = None
        self.unclean_close: str | None = None  # how the TLS layer ended, when it was not a close_notify
        self.log: list[Timed] = []
        self.opened_at = transcript.now()
        hdrs = [("Host", host), ("Accept", "text/event-stream"), ("Cache-Control", "no-cache")]
        if auth:
            hdrs.append(("Authorization", auth))
        hdrs += list((headers or {}).items())
        data = self.h11.send(h11.Request(method="GET", target=target, headers=hdrs)) + self.h11.send(h11.EndOfMessage())
        self._send(data)

    def _send(self, data: bytes) -> None:
        self.transcript.add(self.leg, "C", self.redactor.client(printable(data)), len(data), self.label)
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise ServerClosed(f"connection closed while sending the EventSource request: {e}") from e

    def _recv(self, deadline: float) -> bool:
        """Read once (until ``deadline``); False on timeout."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return False
        except ssl.SSLError as e:
            data = b""
            self.unclean_close = f"{type(e).__name__}: {e}"
            self.transcript.note(f"{self.label}: TLS ended without close_notify ({self.unclean_close})")
        except OSError as e:
            data = b""
            self.unclean_close = f"{type(e).__name__}: {e}"
            self.transcript.note(f"{self.label}: read error {e}")
        if data:
            self.transcript.add(self.leg, "S", self.redactor.server(printable(data)), len(data), self.label)
        self.h11.receive_data(data)
        return True

    def read_head(self, timeout: float = 10.0) -> h11.Response:
        deadline = time.monotonic() + timeout
        while self.response is None:
            ev = self.h11.next_event()
            if ev is h11.NEED_DATA:
                if not self._recv(deadline):
                    raise ServerTimeout(f"no EventSource response head within {timeout:.1f} s")
                continue
            if isinstance(ev, h11.Response):
                self.response = ev
            elif isinstance(ev, h11.InformationalResponse):
                continue
            elif isinstance(ev, h11.ConnectionClosed):
                raise ServerClosed("connection closed before the EventSource response head")
        return self.response

    @property
    def status(self) -> int:
        return self.response.status_code if self.response else 0

    def header(self, name: str) -> str:
        if not self.response:
            return ""
        for k, v in self.response.headers:
            if k.decode().lower() == name.lower():
                return v.decode("latin-1")
        return ""

    def next(self, timeout: float) -> Timed | None:
        """The next event, comment or end of stream within ``timeout`` seconds; None when nothing came."""
        if self.response is None:
            self.read_head(timeout)
        deadline = time.monotonic() + timeout
        while True:
            pending = [x for x in self.log if x.kind in ("event", "comment") and not getattr(x, "_taken", False)]
            if pending:
                setattr(pending[0], "_taken", True)
                return pending[0]
            if self.ended:
                return None if any(x.kind == "eof" and getattr(x, "_taken", False) for x in self.log) else self._take_eof()
            try:
                ev = self.h11.next_event()
            except h11.RemoteProtocolError as e:
                raise ProtocolViolation(f"EventSource body is not valid HTTP/1.1 framing: {e}") from e
            if ev is h11.NEED_DATA:
                if not self._recv(deadline):
                    return None
                continue
            now = self.transcript.now()
            if isinstance(ev, h11.Data):
                for sse in self.parser.feed(bytes(ev.data)):
                    self.log.append(Timed(now, "comment" if sse.type == "comment" else "event", sse, len(sse.raw)))
            elif isinstance(ev, (h11.EndOfMessage, h11.ConnectionClosed)):
                self.ended = True
                self.eof_at = now
                self.log.append(Timed(now, "eof"))

    def _take_eof(self) -> Timed | None:
        for x in self.log:
            if x.kind == "eof" and not getattr(x, "_taken", False):
                setattr(x, "_taken", True)
                return x
        return None

    def events(self, until: float) -> Iterator[Timed]:
        """Everything that arrives until ``until`` (a monotonic deadline) or the end of the stream."""
        while time.monotonic() < until:
            item = self.next(until - time.monotonic())
            if item is None:
                return
            yield item
            if item.kind == "eof":
                return

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# -- WebSocket (RFC 8887) ---------------------------------------------------------------------------
@dataclass
class WsMessage:
    t: float
    kind: str  # "text", "bytes", "pong", "ping", "close"
    data: Any = None
    json: Any = None
    fragments: int = 1


@dataclass
class JmapWebSocket:
    sock: socket.socket
    host: str
    target: str
    auth: str | None
    transcript: Transcript
    label: str = "ws"
    leg: str = "direct"
    subprotocols: list[str] = field(default_factory=lambda: ["jmap"])
    accepted: Any = None
    rejected: Any = None
    inbox: list[WsMessage] = field(default_factory=list)

    def __post_init__(self) -> None:
        from wsproto import ConnectionType, WSConnection

        self.redactor = self.transcript.redactor()
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.closed = False
        self._text: list[str] = []
        self._frames = 0

    def handshake(self, timeout: float = 10.0) -> Any:
        from wsproto.events import AcceptConnection, RejectConnection, RejectData, Request

        extra = [("Authorization", self.auth)] if self.auth else []
        self._send(self.ws.send(Request(host=self.host, target=self.target, subprotocols=self.subprotocols,
                                        extra_headers=extra)), "handshake")
        deadline = time.monotonic() + timeout
        while self.accepted is None and self.rejected is None:
            for ev in self._events(deadline):
                if isinstance(ev, AcceptConnection):
                    self.accepted = ev
                elif isinstance(ev, RejectConnection):
                    self.rejected = ev
                elif isinstance(ev, RejectData):
                    pass
            if time.monotonic() >= deadline and self.accepted is None and self.rejected is None:
                raise ServerTimeout(f"no WebSocket handshake answer within {timeout:.1f} s")
        return self.accepted or self.rejected

    def _send(self, data: bytes, what: str) -> None:
        shown = self.redactor.client(printable(data)) if what == "handshake" else what
        self.transcript.add(self.leg, "C", shown, len(data), self.label)
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise ServerClosed(f"WebSocket connection closed while sending: {e}") from e

    def _events(self, deadline: float):
        left = deadline - time.monotonic()
        if left <= 0:
            return []
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            return []
        except OSError:
            data = b""
        if not data:
            self.closed = True
            self.transcript.add(self.leg, "S", "[connection closed]", 0, self.label)
        elif self.accepted is None and self.rejected is None:
            self.transcript.add(self.leg, "S", self.redactor.server(printable(data)), len(data), self.label)
        self.ws.receive_data(data or None)
        try:
            return list(self.ws.events())
        except Exception as e:  # noqa: BLE001 - wsproto raises on invalid frames
            raise ProtocolViolation(f"invalid WebSocket data from the server: {e}") from e

    def send_text(self, text: str, fragments: int = 1) -> None:
        from wsproto.events import TextMessage

        if fragments <= 1:
            self._send(self.ws.send(TextMessage(data=text)), f"[text] {printable(text.encode(), 1500)}")
            return
        step = max(1, len(text) // fragments)
        parts = [text[i:i + step] for i in range(0, len(text), step)]
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            self._send(self.ws.send(TextMessage(data=part, message_finished=last)),
                       f"[text fragment {i + 1}/{len(parts)}] {printable(part.encode(), 600)}")

    def send_json(self, obj: Any) -> None:
        self.send_text(json.dumps(obj))

    def ping(self, payload: bytes) -> None:
        from wsproto.events import Ping

        self._send(self.ws.send(Ping(payload=payload)), f"[ping] {payload!r}")

    def recv(self, timeout: float) -> WsMessage | None:
        from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

        if self.inbox:
            return self.inbox.pop(0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.closed:
            for ev in self._events(deadline):
                now = self.transcript.now()
                if isinstance(ev, TextMessage):
                    self._text.append(ev.data)
                    self._frames += 1
                    if ev.message_finished:
                        text = "".join(self._text)
                        self._text = []
                        try:
                            obj = json.loads(text)
                        except ValueError:
                            obj = None
                        self.transcript.add(self.leg, "S", f"[text] {printable(text.encode(), 1500)}",
                                            len(text.encode()), self.label)
                        self.inbox.append(WsMessage(now, "text", text, obj, self._frames))
                        self._frames = 0
                elif isinstance(ev, BytesMessage):
                    self.transcript.add(self.leg, "S", f"[binary] {len(ev.data)} octets", len(ev.data), self.label)
                    self.inbox.append(WsMessage(now, "bytes", bytes(ev.data)))
                elif isinstance(ev, Pong):
                    self.transcript.add(self.leg, "S", f"[pong] {bytes(ev.payload)!r}", len(ev.payload), self.label)
                    self.inbox.append(WsMessage(now, "pong", bytes(ev.payload)))
                elif isinstance(ev, Ping):
                    self.transcript.add(self.leg, "S", f"[ping] {bytes(ev.payload)!r}", 0, self.label)
                    self.sock.sendall(self.ws.send(ev.response()))
                elif isinstance(ev, CloseConnection):
                    self.transcript.add(self.leg, "S", f"[close] {ev.code} {ev.reason}", 0, self.label)
                    self.inbox.append(WsMessage(now, "close", (ev.code, ev.reason)))
                    self.closed = True
            if self.inbox:
                return self.inbox.pop(0)
        return self.inbox.pop(0) if self.inbox else None

    def recv_json(self, timeout: float, want=lambda obj: True) -> WsMessage | None:
        """The next text message whose JSON satisfies ``want`` (others are kept in ``skipped``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.recv(deadline - time.monotonic())
            if msg is None:
                return None
            if msg.kind == "text" and want(msg.json):
                return msg
            self.skipped.append(msg)
            if msg.kind == "close":
                return None
        return None

    @property
    def skipped(self) -> list[WsMessage]:
        if not hasattr(self, "_skipped"):
            self._skipped: list[WsMessage] = []
        return self._skipped

    def close(self) -> None:
        from wsproto.events import CloseConnection

        try:
            if not self.closed and self.accepted is not None:
                self.sock.sendall(self.ws.send(CloseConnection(code=1000)))
        except Exception:  # noqa: BLE001
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def split_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path?query) of an absolute URL."""
    u = urlsplit(url)
    port = u.port or (443 if u.scheme in ("https", "wss") else 80)
    target = u.path or "/"
    if u.query:
        target += "?" + u.query
    return u.scheme, u.hostname or "", port, target
