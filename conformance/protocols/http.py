"""HTTP/1.1 client on the captured connection: requests with one deadline each, keep-alive, forward proxies.

``HttpReader`` is sans-IO (h11 underneath): feed octets, get the response head, body chunks and its end, within
bounds. ``HttpClient`` sends requests on captured connections (one kept alive per origin), through an explicit
HTTP proxy when asked (absolute-form for http, a CONNECT tunnel for https), and records every request and
response in the case transcript (Authorization redacted). ``open_tunnel`` is the CONNECT exchange the scenario
path uses too. JSON bodies are read by ``parse_json``: anything that is not JSON is ``JsonInvalid``.

The rule is the connection layer's: a target that stalls, resets, closes before the response is complete or
sends what does not parse as HTTP/1.1 is a fail; the suite's own proxy refusing or breaking a CONNECT is an error
(``Blocked`` for a 403 answer: a firewall decision).

Bounds: MAX_HEAD octets of a response head, MAX_BODY octets of a body (an endless chunked body is a ``Flood``),
MAX_JSON_DEPTH nested JSON values; a request and its whole response share one deadline.
"""

from __future__ import annotations

import json
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import urlsplit

import h11

from ..errors import Blocked, Flood, HarnessError, ProtocolViolation, ServerClosed, TargetUnreachable
from ..transcript import Transcript, printable
from .connection import DEFAULT_TIMEOUT, CapturedConnection, scrub_faults
from .tls import client_context

MAX_HEAD = 64 << 10  # octets of a response head (status line and header fields)
MAX_BODY = 64 << 20  # octets of one response body (the checks move 1 MiB at most)
MAX_JSON_DEPTH = 200  # nested arrays and objects in one JSON text
BODY_SHOWN = 3000  # octets of a body the transcript shows
USER_AGENT = "lemonade-conformance"


class JsonInvalid(ProtocolViolation, ValueError):
    """A body that should be JSON is not (also a ValueError, as json.loads would raise)."""


def parse_json(data: bytes | str, what: str = "body") -> Any:
    """RFC 8259 JSON from ``data``: UTF-8, no NaN/Infinity, at most MAX_JSON_DEPTH deep; else ``JsonInvalid``."""
    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    except UnicodeDecodeError as e:
        raise JsonInvalid(f"{what} is not UTF-8: {e}") from e
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:  # a bound on nesting before the recursive decoder sees it
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                raise JsonInvalid(f"{what} nests JSON deeper than {MAX_JSON_DEPTH} levels")
        elif ch in "]}":
            depth -= 1

    def no_constant(name: str) -> Any:
        raise JsonInvalid(f"{what} uses {name}, which JSON does not have")

    try:
        return json.loads(text, parse_constant=no_constant)
    except JsonInvalid:
        raise
    except (ValueError, RecursionError) as e:
        raise JsonInvalid(f"{what} is not JSON: {e}: {text[:200]!r}") from e


class Headers:
    """Response header fields: case-insensitive ``get``/``in``/``[]`` (repeated fields joined by ', ')."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items = list(items)

    def get(self, name: str, default: str | None = None) -> str | None:
        values = [v for k, v in self._items if k.lower() == name.lower()]
        return ", ".join(values) if values else default

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(k.lower() == name.lower() for k, _ in self._items)

    def multi_items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass
class HttpResponse:
    """A complete response, with the names httpx uses for what checks read."""

    status_code: int
    reason_phrase: str
    http_version: str
    headers: Headers
    content: bytes
    url: str
    history: list["HttpResponse"] = field(default_factory=list)

    @property
    def text(self) -> str:
        ctype = self.headers.get("content-type", "") or ""
        charset = "utf-8"
        for part in ctype.split(";")[1:]:
            k, _, v = part.strip().partition("=")
            if k.lower() == "charset" and v:
                charset = v.strip('"')
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return parse_json(self.content, f"the body of {self.status_code} from {self.url}")


def head_text(start: str, headers: Iterable[tuple[str, str]]) -> str:
    return start + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)


def _text(value: bytes | bytearray | str) -> str:
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else value


class HttpReader:
    """Sans-IO reader of HTTP/1.1 responses on one connection (h11 with bounds).

    ``request(...)`` gives the octets of a request; ``feed(data)`` (``b""`` at EOF) gives the h11 events that data
    completes: ``h11.InformationalResponse``, ``h11.Response``, ``h11.Data``, ``h11.EndOfMessage``,
    ``h11.ConnectionClosed``. Garbage is ``ProtocolViolation``, a close before the response is complete
    ``ServerClosed``, a body past ``max_body`` ``Flood``.
    """

    def __init__(self, max_head: int = MAX_HEAD, max_body: int = MAX_BODY) -> None:
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head)
        self.max_body = max_body
        self.body_octets = 0
        self.received = 0  # octets fed since the last request
        self.head: h11.Response | None = None  # the response head of the current cycle
        self.eof = False

    def request(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None = None) -> bytes:
        if body is not None and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
            headers = [*headers, ("Content-Length", str(len(body)))]
        data = self.h11.send(h11.Request(method=method, target=target, headers=headers))
        if body:
            data += self.h11.send(h11.Data(data=body))
        return data + self.h11.send(h11.EndOfMessage())

    @property
    def response_started(self) -> bool:
        return self.received > 0

    def feed(self, data: bytes) -> list[Any]:
        if self.eof:
            return [h11.ConnectionClosed()] if data == b"" else []
        self.eof = data == b""
        self.received += len(data)
        try:
            self.h11.receive_data(data)
        except RuntimeError as e:  # h11 refuses data after EOF: the caller fed on after the end
            raise HarnessError(f"HTTP reader fed after the end of the connection: {e}") from e
        out: list[Any] = []
        while True:
            try:
                ev = self.h11.next_event()
            except h11.RemoteProtocolError as e:
                if self.eof:
                    raise ServerClosed(f"the server closed the connection before the response was complete ({e})",
                                       how="eof") from e
                raise ProtocolViolation(f"the response is not valid HTTP/1.1: {e}") from e
            if ev is h11.NEED_DATA or ev is h11.PAUSED:
                break
            if isinstance(ev, h11.Response):
                self.head = ev
            elif isinstance(ev, h11.Data):
                self.body_octets += len(ev.data)
                if self.body_octets > self.max_body:
                    raise Flood(f"flood: a response body past {self.max_body} octets")
            out.append(ev)
            if isinstance(ev, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
        return out

    def next_cycle(self) -> bool:
        """Ready the connection for the next request (keep-alive); False when it must be closed instead."""
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            self.body_octets = self.received = 0
            self.head = None
            return True
        return False


def open_tunnel(conn: CapturedConnection, authority: str, deadline: float, who: str) -> tuple[int, str]:
    """CONNECT ``authority`` through ``conn``, a connection to the suite's own HTTP proxy; (status, status line).

    The answer's head is read one octet at a time: what follows it belongs to the tunnel. The proxy misbehaving
    (silence, a close, garbage) is the harness's fault: ``HarnessError`` naming ``who``.
    """
    request = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: {USER_AGENT}\r\n\r\n".encode()
    head = bytearray()
    with conn.talking_to_own(who):
        conn.send(request)
        while not head.endswith(b"\r\n\r\n"):
            if len(head) > MAX_HEAD:
                raise ProtocolViolation(f"no end of the answer to CONNECT {authority} within {MAX_HEAD} octets")
            head += conn.recv(deadline, f"to CONNECT {authority}", limit=1)
    conn.record_server(bytes(head))
    status_line = bytes(head).split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise HarnessError(f"{who} answered CONNECT {authority} with {status_line[:120]!r}")
    return int(parts[1]), status_line


@dataclass
class _Origin:
    conn: CapturedConnection
    reader: HttpReader


@scrub_faults
class HttpClient:
    """HTTP/1.1 requests on captured connections, one kept alive per origin. ``close()`` closes them all.

    ``verify``: False (no verification), True (system trust), a CA file, or an ``ssl.SSLContext``.
    ``proxy``: the suite's explicit HTTP proxy (``http://host:port``). ``via``: name of the suite's intermediary
    when the origins this client is pointed at are its listeners (a refusal there is the harness's).
    """

    def __init__(self, transcript: Transcript, *, label: str = "http", leg: str = "direct", verify: Any = False,
                 proxy: str | None = None, timeout: float = DEFAULT_TIMEOUT, via: str | None = None) -> None:
        self.transcript = transcript
        self.label = label
        self.leg = leg
        self.timeout = timeout
        self.via = via
        self.redactor = transcript.redactor()
        self.proxy = urlsplit(proxy) if proxy else None
        if isinstance(verify, ssl.SSLContext):
            self.ssl_context = verify
        elif isinstance(verify, str):
            self.ssl_context = client_context(ca_file=verify)
        else:
            self.ssl_context = client_context(verify=bool(verify))
        self._origins: dict[tuple[str, str, int], _Origin] = {}

    def close(self) -> None:
        for origin in self._origins.values():
            origin.conn.close()
        self._origins.clear()

    # -- connections ----------------------------------------------------------------------------
    def _open(self, scheme: str, host: str, port: int, deadline: float) -> _Origin:
        left = max(0.001, deadline - time.monotonic())
        if self.proxy is not None:
            phost, pport = self.proxy.hostname or "127.0.0.1", self.proxy.port or 80
            conn = CapturedConnection.connect(phost, pport, transcript=self.transcript, label=self.label, leg=self.leg,
                                              timeout=left, via="HTTP proxy", redactor=self.redactor)
            if scheme == "https":
                authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                try:
                    status, line = open_tunnel(conn, authority, deadline,
                                               f"the suite's HTTP proxy {self.proxy.geturl()}")
                except BaseException:
                    conn.close()
                    raise
                if status != 200:
                    conn.close()
                    if status == 403:
                        raise Blocked(authority, status, line.split(" ", 2)[-1], f"HTTP proxy {self.proxy.geturl()}")
                    raise TargetUnreachable(f"CONNECT {authority} through {self.proxy.geturl()} answered {line!r}")
        else:
            conn = CapturedConnection.connect(host, port, transcript=self.transcript, label=self.label, leg=self.leg,
                                              timeout=left, what=f"HTTP at {host}:{port}", via=self.via,
                                              redactor=self.redactor)
        conn.timeout = self.timeout
        if scheme == "https":
            try:
                self.ssl_context.set_alpn_protocols(["http/1.1"])
            except NotImplementedError:  # pragma: no cover - every OpenSSL the suite supports has ALPN
                pass
            conn.start_tls(self.ssl_context, host, timeout=left)
        return _Origin(conn, HttpReader())

    # -- requests -------------------------------------------------------------------------------
    def request(self, method: str, url: str, *, headers: dict[str, str] | list[tuple[str, str]] | None = None,
                content: bytes | None = None, timeout: float | None = None) -> HttpResponse:
        """One request and its complete response within ``timeout`` (the client's by default)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise HarnessError(f"{self.label}: not an absolute http(s) URL: {url!r}")
        port = u.port or (443 if u.scheme == "https" else 80)
        key = (u.scheme, u.hostname, port)
        origin_form = (u.path or "/") + (f"?{u.query}" if u.query else "")
        target = url if (self.proxy is not None and u.scheme == "http") else origin_form
        authority = u.netloc.rsplit("@", 1)[-1]
        given = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        hdrs = [("Host", authority), ("User-Agent", USER_AGENT), ("Accept", "*/*"), ("Accept-Encoding", "identity")]
        hdrs = [h for h in hdrs if h[0].lower() not in {k.lower() for k, _ in given}] + given
        for attempt in (1, 2):
            reused = key in self._origins
            origin = self._origins.get(key) or self._open(u.scheme, u.hostname, port, deadline)
            self._origins[key] = origin
            try:
                return self._exchange(origin, key, method, url, target, hdrs, content, deadline)
            except ServerClosed:
                # a kept-alive connection the server closed while idle: once, on a fresh connection
                self._drop(key)
                if not (reused and attempt == 1 and not origin.reader.response_started):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _drop(self, key: tuple[str, str, int]) -> None:
        origin = self._origins.pop(key, None)
        if origin is not None:
            origin.conn.close()

    def _exchange(self, origin: _Origin, key: tuple[str, str, int], method: str, url: str, target: str,
                  hdrs: list[tuple[str, str]], content: bytes | None, deadline: float) -> HttpResponse:
        conn, reader = origin.conn, origin.reader
        try:
            data = reader.request(method, target, hdrs, content)
        except h11.LocalProtocolError as e:
            raise HarnessError(f"{self.label}: cannot send {method} {url}: {e}") from e
        shown_head = head_text(f"{method} {target} HTTP/1.1", hdrs)
        conn.send(data, text=shown_head + "\r\n" + printable(content or b"", BODY_SHOWN),
                  timeout=max(0.001, deadline - time.monotonic()))
        waiting_for = f"to {method} {url}"
        since = time.monotonic()
        body = bytearray()
        try:
            self._receive(conn, reader, deadline, waiting_for, since, body)
        except BaseException:
            head = reader.head
            conn.note("the response was incomplete when the exchange ended: "
                      + (f"{head.status_code} {_text(head.reason)}, {len(body)} body octets" if head else "no head"))
            body.clear()  # a failure's traceback keeps this frame: not what an endless body filled it with
            raise
        head = reader.head
        if head is None:
            raise ServerClosed(f"{self.label}: server closed the connection without a response {waiting_for}",
                               how="eof")
        headers = Headers((_text(k), _text(v)) for k, v in head.headers.raw_items())
        resp = HttpResponse(head.status_code, _text(head.reason), f"HTTP/{_text(head.http_version)}", headers,
                            bytes(body), url)
        text = head_text(f"{resp.http_version} {resp.status_code} {resp.reason_phrase}", headers.multi_items())
        conn.record_server(text + "\r\n" + printable(resp.content, BODY_SHOWN), len(resp.content))
        if not reader.next_cycle():
            self._drop(key)
        return resp

    def _receive(self, conn: CapturedConnection, reader: HttpReader, deadline: float, waiting_for: str,
                 since: float, body: bytearray) -> None:
        """Read until the response is complete (its head in ``reader.head``, its body into ``body``)."""
        while True:
            try:
                chunk = conn.recv(deadline, waiting_for, since=since)
            except ServerClosed as e:
                if e.how != "eof":
                    raise
                chunk = b""
            try:
                events = reader.feed(chunk)
            except ProtocolViolation as e:
                conn.record_server(chunk)  # the evidence: what did not parse
                raise type(e)(f"{self.label}: {e} ({waiting_for})") from e
            except ServerClosed as e:
                raise ServerClosed(f"{self.label}: {e} ({waiting_for})", how="eof") from e
            for ev in events:
                if isinstance(ev, h11.Data):
                    body += ev.data
                elif isinstance(ev, (h11.EndOfMessage, h11.ConnectionClosed)):
                    return
            if not chunk:
                raise ServerClosed(f"{self.label}: server closed the connection {waiting_for}", how="eof")
