"""JMAP over HTTP (RFC 8620/8621): session discovery, API requests, upload and download, with capture.

``JmapClient`` talks to the JMAP endpoint through ``http.HttpClient`` (the captured connection: deadlines,
transcript with Basic credentials redacted, the fail-vs-error rule, bounds). ``parse_session`` and
``parse_api_response`` read the JSON the checks rely on, sans-IO: what does not have the shape RFC 8620 gives
it is ``ProtocolViolation``. EventSource streams live in ``eventsource.py``, JMAP over WebSocket in
``websocket.py`` (names re-exported here for the checks that import them from this module).
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from ..errors import ConformanceFailure, HarnessError, ProtocolViolation
from ..transcript import Transcript
from .connection import scrub_faults
from .eventsource import EventStream, Timed, split_url, stream_connection, wrap_tls
from .http import HttpClient, HttpResponse, parse_json
from .members import RESPONSE, SESSION, UPLOAD, Obj, method_response, read_object
from .websocket import JmapWebSocket, WsMessage

CORE = "urn:ietf:params:jmap:core"
MAIL = "urn:ietf:params:jmap:mail"
WEBSOCKET = "urn:ietf:params:jmap:websocket"

__all__ = ["CORE", "MAIL", "WEBSOCKET", "EventStream", "JmapClient", "JmapWebSocket", "Timed", "WsMessage", "basic",
           "parse_api_response", "parse_session", "sample_message", "split_url", "stream_connection", "wrap_tls"]


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def parse_session(body: bytes) -> Obj:
    """The Session resource (RFC 8620 2): a JSON object read through ``Obj``; ``ProtocolViolation`` otherwise."""
    return read_object(parse_json(body, "the Session resource"), "Session resource", "RFC 8620 2", SESSION)


def parse_api_response(body: bytes) -> Obj:
    """A Response object (RFC 8620 3.4): a JSON object whose methodResponses is a list of
    [name, arguments, call id] invocations; ``ProtocolViolation`` otherwise."""
    data = read_object(parse_json(body, "the API response"), "API Response object", "RFC 8620 3.4", RESPONSE)
    for inv in data.list("methodResponses"):
        if not (isinstance(inv, list) and len(inv) == 3 and isinstance(inv[0], str) and isinstance(inv[1], dict)
                and isinstance(inv[2], str)):
            raise ProtocolViolation(f"API response holds an invocation that is not [name, arguments, call id] "
                                    f"(RFC 8620 3.2): {json.dumps(inv)[:200]}")
    return data


@scrub_faults
class JmapClient:
    """One JMAP user over HTTP. ``base_url`` is scheme://host:port of the JMAP endpoint (or the path's)."""

    def __init__(self, base_url: str, username: str, password: str, transcript: Transcript, *,
                 label: str = "jmap", leg: str = "direct", verify: Any = False, proxy: str | None = None,
                 timeout: float = 10.0, via: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.username = username
        self.auth = basic(username, password)
        self.transcript = transcript
        transcript.secrets.add(password)
        transcript.secrets.add(self.auth.split()[1])
        self.label = label
        self.leg = leg
        self.http = HttpClient(transcript, label=label, leg=leg, verify=verify, proxy=proxy, timeout=timeout, via=via)
        self.redactor = self.http.redactor
        # netloc -> netloc: absolute URLs naming the target's own address are sent to the path's endpoint
        # instead (a reverse proxy that rewrites Host makes the server name itself in redirects)
        self.aliases: dict[str, str] = {}
        self.session: Obj | None = None
        self.session_url: str | None = None
        self.last_response: HttpResponse | None = None
        # called with (methodCalls sent, Response object) after every API request (the case tracks what it creates)
        self.observers: list[Any] = []
        self.uploaded: list[str] = []  # blobIds of this client's uploads (JMAP cannot delete them: RFC 8620 6)

    def close(self) -> None:
        self.http.close()

    def request(self, method: str, url: str, *, auth: bool = True, headers: dict[str, str] | None = None,
                content: bytes | None = None, follow: bool = False) -> HttpResponse:
        """One request (following up to four redirects when ``follow``); faults as the connection layer rules."""
        hdrs = dict(headers or {})
        if auth:
            hdrs["Authorization"] = self.auth
        url = self.route(urljoin(self.base_url + "/", url), f"{method} {url}")
        for _ in range(5 if follow else 1):
            resp = self.http.request(method, url, headers=hdrs, content=content)
            self.last_response = resp
            if follow and resp.status_code in (301, 302, 303, 307, 308) and "location" in resp.headers:
                url = self.route(urljoin(url, resp.headers["location"]),
                                 f"the {resp.status_code} redirect to {resp.headers['location']}")
                if resp.status_code == 303:
                    method, content = "GET", None
                continue
            return resp
        return resp

    def route(self, url: str, why: str = "") -> str:
        """Where to send ``url``: the address this client uses (the path's endpoint for the target's address as the
        user gave it) also when a redirect or a Session URL names another address of the same server (say the
        server's own address behind the user's reverse proxy): the target's address and TLS settings hold, and
        the scenario's path carries the request. Each rewrite is a transcript note. Only a change of scheme (say
        an http endpoint redirecting to https) is followed to where it points, also noted."""
        u = urlsplit(url)
        home = urlsplit(self.base_url)
        if u.netloc == home.netloc or not u.netloc:
            return url
        what = f"{self.label}: {why or url} names {u.netloc}"
        if u.netloc in self.aliases:
            new = u._replace(netloc=self.aliases[u.netloc]).geturl()
            self.transcript.note(f"{what}, the target's address as given; sent through the path as {new}")
            return new
        if u.scheme != home.scheme:
            self.transcript.note(f"{what} with scheme {u.scheme} (this endpoint is {home.scheme}): followed to "
                                 f"{url} itself, not through the scenario's path")
            return url
        new = u._replace(netloc=home.netloc).geturl()
        via = "through the scenario's path" if self.leg != "direct" else "directly"
        self.transcript.note(f"{what}, another address of the same server: followed {via} at {home.netloc}, where "
                             f"this client reaches the target (its address and TLS settings hold): {new}")
        return new

    # -- session ----------------------------------------------------------------------------------
    def discover(self) -> Obj:
        """GET /.well-known/jmap, following redirects; the Session object."""
        resp = self.request("GET", "/.well-known/jmap", follow=True)
        if resp.status_code != 200:
            raise ConformanceFailure(f"/.well-known/jmap: expected 200 with a Session (after redirects), "
                                     f"got {resp.status_code} {resp.reason_phrase}")
        self.session = parse_session(resp.content)
        self.session_url = str(resp.url)
        return self.session

    def ensure_session(self) -> Obj:
        return self.session or self.discover()

    def url(self, key: str) -> str:
        """A Session URL (apiUrl, uploadUrl, ...) made absolute against the session resource."""
        value = self.ensure_session().str(key)
        return urljoin(self.session_url or self.base_url + "/", value)

    @property
    def account_id(self) -> str:
        acc = self.ensure_session().obj("primaryAccounts").get(MAIL)
        if not acc:
            raise ConformanceFailure(f"Session has no primaryAccounts[{MAIL}] (RFC 8620 2)")
        if not isinstance(acc, str):
            raise ProtocolViolation(f"Session primaryAccounts[{MAIL}] is {acc!r}, not an Id string (RFC 8620 2)")
        return acc

    def capabilities(self) -> dict[str, Any]:
        return self.ensure_session().get("capabilities") or {}

    # -- API ------------------------------------------------------------------------------------
    def post_api(self, body: bytes, content_type: str = "application/json") -> HttpResponse:
        return self.request("POST", self.url("apiUrl"), headers={"Content-Type": content_type}, content=body)

    def call(self, method_calls: list, using: list[str] | None = None) -> Obj:
        """A JMAP Request; the Response object (a non-200 answer is a failure), its members read through ``Obj``."""
        req = {"using": using or [CORE, MAIL], "methodCalls": method_calls}
        resp = self.post_api(json.dumps(req).encode())
        if resp.status_code != 200:
            raise ConformanceFailure(f"API request answered {resp.status_code}: {resp.text[:300]}")
        data = parse_api_response(resp.content)
        for observe in self.observers:
            observe(method_calls, data)
        return data

    def one(self, name: str, args: dict[str, Any], using: list[str] | None = None) -> tuple[str, Obj]:
        """A single method call; (response name, arguments as ``Obj``: reading a member a standard method's answer
        must carry, and the server left out, fails naming it and its RFC section)."""
        data = self.call([[name, args, "c0"]], using)
        if not data["methodResponses"]:
            raise ProtocolViolation(f"API response to {name} has an empty methodResponses list")
        return invocation(data["methodResponses"][0])

    def ok(self, name: str, args: dict[str, Any], using: list[str] | None = None) -> Obj:
        rname, rargs = self.one(name, args, using)
        if rname == "error":
            raise HarnessError(f"{name} returned error {dict(rargs)} (the check needed it to work)")
        return rargs

    # -- blobs ----------------------------------------------------------------------------------
    def upload(self, data: bytes, content_type: str = "message/rfc822") -> HttpResponse:
        url = self.url("uploadUrl").replace("{accountId}", quote(self.account_id, safe=""))
        resp = self.request("POST", url, headers={"Content-Type": content_type}, content=data)
        try:
            blob = resp.json().get("blobId") if resp.status_code in (200, 201) else None
        except (ValueError, AttributeError):
            blob = None
        if isinstance(blob, str):
            self.uploaded.append(blob)
        return resp

    def download(self, blob_id: str, name: str = "blob.bin", type_: str = "application/octet-stream") -> HttpResponse:
        tpl = self.url("downloadUrl")
        url = (tpl.replace("{accountId}", quote(self.account_id, safe="")).replace("{blobId}", quote(blob_id, safe=""))
               .replace("{name}", quote(name, safe="")).replace("{type}", quote(type_, safe="")))
        return self.request("GET", url)

    def import_email(self, raw: bytes, mailbox_id: str, keywords: dict | None = None) -> Obj:
        up = self.upload(raw)
        if up.status_code not in (200, 201):
            raise HarnessError(f"upload failed: {up.status_code} {up.text[:200]}")
        try:
            info = up.json()
        except ValueError as e:
            raise ProtocolViolation(f"upload response is not JSON: {up.text[:200]!r}") from e
        blob = read_object(info, "upload response", "RFC 8620 6.1", UPLOAD).str("blobId")
        args = self.ok("Email/import", {"accountId": self.account_id, "emails": {
            "e1": {"blobId": blob, "mailboxIds": {mailbox_id: True}, "keywords": keywords or {}}}})
        created = (args.optional("created", dict) or {}).get("e1")
        if not created:
            raise HarnessError(f"Email/import did not create the message: {args.get('notCreated')}")
        email = read_object(created, "Email/import created 'e1'", "RFC 8621 4.8")
        email.str("id")
        return Obj({"blobId": blob, **email}, email.where, email.section)

    def mailbox_id(self, role: str = "inbox") -> str:
        args = self.ok("Mailbox/get", {"accountId": self.account_id, "ids": None, "properties": ["role", "name"]})
        for mb in args.list("list"):
            if mb.get("role") == role:
                return mb.str("id")
        raise HarnessError(f"no mailbox with role {role}")

    def state(self, type_: str) -> str:
        return self.ok(f"{type_}/get", {"accountId": self.account_id, "ids": []}).str("state")


def invocation(value: Any) -> tuple[str, Obj]:
    """A method response [name, arguments, method call id] (RFC 8620 3.2): the name and the arguments as ``Obj``."""
    if not (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str) and isinstance(value[2], str)):
        raise ProtocolViolation(f"methodResponses element is not [String, Object, String] (RFC 8620 3.2): "
                                f"{str(value)[:200]}")
    name, args, call_id = value[0], value[1], value[2]
    if name == "error":
        return name, read_object(args, f"error response (call {call_id})", "RFC 8620 3.6.2")
    return name, method_response(name, args, call_id)


def sample_message(subject: str = "lemonade test", body: str = "Hello from the lemonade suite.\r\n") -> bytes:
    import email.utils
    import uuid

    return (f"From: Alice <alice@localhost>\r\nTo: Bob <bob@localhost>\r\nSubject: {subject}\r\n"
            f"Date: {email.utils.formatdate()}\r\nMessage-ID: <{uuid.uuid4().hex}@lemonade.test>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}").encode()
