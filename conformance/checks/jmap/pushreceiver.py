"""The push receiver of the PushSubscription checks: an HTTPS endpoint on loopback the server under test POSTs to.

RFC 8620 7.2 makes the JMAP server an application server in the sense of RFC 8030: it POSTs each push to the
subscription's ``url``. The receiver plays the push service: one HTTPS listener (a certificate made for this
case; the server must not verify it against a public CA, which a server configured for such a test allows), one
plain-HTTP listener, so a server that contacts an ``http://`` URL is caught in the act, and an HTTPS listener on
another loopback address (127.0.0.2): a server configured to push to the receiver (127.0.0.1) for the test must still
keep away from the other internal addresses (RFC 8620 8.7). Every request is
recorded with its time on the case clock, its headers and its body, and goes into the transcript (leg
``push``); the answer to each request is scripted (``answer``: 201 by default, e.g. 429 with Retry-After).
A TLS handshake that fails (the server refusing the certificate) is recorded too, never hidden.
"""

from __future__ import annotations

import http.server
import secrets
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from conformance.providers.base import make_certificate
from conformance.transcript import Transcript, printable

LEG = "push"
INTERNAL = "127.0.0.2"  # an internal address other than the receiver's own
BODY_LIMIT = 1 << 20  # a push body is small (RFC 8030 suggests 4096 octets); more is refused, not stored


@dataclass
class Delivery:
    """One request the server made to the receiver."""

    t: float  # case clock
    scheme: str  # https or http (the listener it reached)
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes = field(repr=False)
    status: int = 0  # what the receiver answered

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


@dataclass
class Answer:
    status: int = 201
    headers: dict[str, str] = field(default_factory=dict)


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "lemonade-push-receiver"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # the transcript is the log
        pass

    def _any(self) -> None:
        rx: PushReceiver = self.server.receiver  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, BODY_LIMIT)) if length else b""
        delivery = Delivery(rx.transcript.now(), self.server.scheme, self.command, self.path,  # type: ignore[attr-defined]
                            {k.lower(): v for k, v in self.headers.items()}, body)
        answer = rx.answer(delivery)
        delivery.status = answer.status
        rx._record(delivery)
        self.send_response(answer.status)
        for k, v in answer.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET = do_PUT = _any


class _Listener(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, receiver: "PushReceiver", scheme: str, ctx: ssl.SSLContext | None, host: str = "127.0.0.1") -> None:
        super().__init__((host, 0), _Handler)
        self.receiver, self.scheme, self.ctx = receiver, scheme, ctx

    def finish_request(self, request, client_address) -> None:
        if self.ctx is not None:  # the handshake runs in the request's thread, never in the accept loop
            request.settimeout(5)
            try:
                request = self.ctx.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as e:
                self.receiver._tls_failure(f"{type(e).__name__}: {e}")
                return
        super().finish_request(request, client_address)


class PushReceiver:
    """An HTTPS (and a plain HTTP) push endpoint on 127.0.0.1 for one case; close() stops both."""

    def __init__(self, transcript: Transcript, label: str = "push-receiver") -> None:
        self.transcript = transcript
        self.label = label
        self.token = secrets.token_hex(6)  # unique per case: pushes meant for another case are not counted
        self.deliveries: list[Delivery] = []
        self.tls_failures: list[tuple[float, str]] = []
        self.answer: Callable[[Delivery], Answer] = lambda d: Answer()
        self._cond = threading.Condition()
        self._dir = tempfile.TemporaryDirectory(prefix="lemonade-push-")
        make_certificate(Path(self._dir.name))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(Path(self._dir.name) / "cert.pem", Path(self._dir.name) / "key.pem")
        self.https = _Listener(self, "https", ctx)
        self.http = _Listener(self, "http", None)
        self.listeners = [self.https, self.http]
        try:
            self.internal: _Listener | None = _Listener(self, "https", ctx, INTERNAL)
            self.listeners.append(self.internal)
        except OSError as e:  # a loopback without 127.0.0.2: the internal-address probe is left out
            self.internal = None
            transcript.note(f"{label}: no listener on {INTERNAL} ({e})")
        self._threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                                          name=f"{label}-{s.scheme}") for s in self.listeners]
        for t in self._threads:
            t.start()
        transcript.note(f"{label}: listening on " + ", ".join(
            f"{s.scheme}://{s.server_address[0]}:{s.server_address[1]}" for s in self.listeners))

    @property
    def ca_file(self) -> Path:
        """The receiver's self-signed certificate (a server that verifies push URLs must be told to trust it)."""
        return Path(self._dir.name) / "cert.pem"

    def url(self, name: str, scheme: str = "https", internal: bool = False) -> str:
        """A push URL on this receiver whose path says which subscription it belongs to (``internal``: on the
        listener at 127.0.0.2)."""
        listener = self.internal if internal else (self.https if scheme == "https" else self.http)
        if listener is None:
            raise ValueError(f"no listener on {INTERNAL}")
        host, port = listener.server_address[:2]
        return f"{scheme}://{host}:{port}/push/{self.token}/{name}"

    def _record(self, d: Delivery) -> None:
        shown = "\n".join(f"{k}: {v}" for k, v in d.headers.items() if k != "authorization")
        self.transcript.add(LEG, "S", f"{d.method} {d.scheme}://...{d.path}\n{shown}\n\n{printable(d.body, 600)}",
                            len(d.body), self.label)
        self.transcript.add(LEG, "C", f"{d.status}", 0, self.label)
        with self._cond:
            self.deliveries.append(d)
            self._cond.notify_all()

    def _tls_failure(self, reason: str) -> None:
        self.transcript.add(LEG, "N", f"{self.label}: a TLS handshake from the server failed ({reason})", 0, self.label)
        with self._cond:
            self.tls_failures.append((self.transcript.now(), reason))
            self._cond.notify_all()

    def to(self, name: str) -> list[Delivery]:
        """What reached the URL ``url(name)`` (either scheme), oldest first."""
        with self._cond:
            return [d for d in self.deliveries if d.path == f"/push/{self.token}/{name}"]

    def wait(self, name: str, count: int, timeout: float) -> list[Delivery]:
        """Wait until ``count`` requests reached ``url(name)`` or ``timeout`` passes; what arrived by then."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [d for d in self.deliveries if d.path == f"/push/{self.token}/{name}"]
                left = deadline - time.monotonic()
                if len(got) >= count or left <= 0:
                    return got
                self._cond.wait(left)

    def close(self) -> None:
        for s in self.listeners:
            s.shutdown()
            s.server_close()
        for t in self._threads:
            t.join(2)
        self._dir.cleanup()

