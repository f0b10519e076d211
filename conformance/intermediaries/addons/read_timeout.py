"""read-timeout: a reverse proxy that ends a response after T seconds without a byte from upstream.

nginx's proxy_read_timeout (default 60 s): a long poll or an EventSource stream that stays silent longer
than T is ended by the proxy. nginx then closes the client connection mid-response (or answers 504 when no
header arrived yet); this emulation closes the connection in both cases and records which one it was.
Alone: ``mitmdump --mode reverse:http://127.0.0.1:8080@8081 -s read_timeout.py --set read_timeout=60``.
"""

from __future__ import annotations

import asyncio
import time

from mitmproxy import http

from conformance.intermediaries.addons.common import (
    StreamResponses,
    add_options,
    check_options,
    cut,
    shared,
    spawn,
    value,
)
from conformance.intermediaries.scenario import Emulator, Param

TIMEOUT = Param("timeout", float, 5.0, 60.0, "seconds without a byte from upstream", unit="s", option="read_timeout")


def reframe(flow: http.HTTPFlow) -> None:
    """A body of unknown length goes to an HTTP/1.1 client chunked, as nginx sends it: a cut then leaves the
    body without its terminating chunk (a truncation the client can see), not a clean close-delimited end.
    Calibrated against real-nginx (README "Calibration")."""
    r = flow.response
    if (r is not None and flow.request.http_version == "HTTP/1.1" and "content-length" not in r.headers
            and "chunked" not in r.headers.get("transfer-encoding", "").lower()
            and r.status_code >= 200 and r.status_code not in (204, 304) and flow.request.method != "HEAD"):
        r.headers["transfer-encoding"] = "chunked"


class ReadTimeout:
    def __init__(self) -> None:
        self.last: dict[str, float] = {}  # flow id -> last byte from upstream (or request sent)
        self.tasks: dict[str, asyncio.Task] = {}

    OPTIONS = (TIMEOUT,)

    def load(self, loader) -> None:
        add_options(loader, self.OPTIONS)

    def configure(self, updated) -> None:
        check_options(self.OPTIONS, updated)

    def request(self, flow: http.HTTPFlow) -> None:
        self.last[flow.id] = time.monotonic()
        self.tasks[flow.id] = spawn(self._watch(flow), "read-timeout watch")

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self.last[flow.id] = time.monotonic()
        reframe(flow)
        inner = flow.response.stream if flow.response is not None else True
        if inner is False:  # held whole by a buffering proxy: its body is not observed (the header refreshed)
            return

        def tap(data: bytes):
            self.last[flow.id] = time.monotonic()
            if callable(inner):
                return inner(data)
            return [data] if data else []

        if flow.response is not None:
            flow.response.stream = tap

    def response(self, flow: http.HTTPFlow) -> None:
        self._done(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._done(flow)

    def _done(self, flow: http.HTTPFlow) -> None:
        self.last.pop(flow.id, None)
        task = self.tasks.pop(flow.id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _watch(self, flow: http.HTTPFlow) -> None:
        timeout = value(TIMEOUT)
        while flow.id in self.last:
            left = self.last[flow.id] + timeout - time.monotonic()
            if left > 0:
                await asyncio.sleep(left)
                continue
            idle = time.monotonic() - self.last.pop(flow.id)
            label = f"{flow.request.method} {flow.request.path}"
            if flow.response is None:
                what = "no response header yet (nginx would answer 504); client connection closed"
            else:
                what = f"response {flow.response.status_code} ended mid-body; client connection closed"
            shared().record("read-timeout", f"{idle:.3f} s without a byte from upstream: {what}", label)
            self.tasks.pop(flow.id, None)
            cut(flow, "fin", "read-timeout")
            return


SCENARIO = Emulator(
    name="read-timeout", path="http-reverse", addon=ReadTimeout, endpoints=("jmap",),
    summary="Reverse proxy ending a response after `timeout` seconds without a byte from upstream "
            "(nginx proxy_read_timeout).")
addons = [StreamResponses(), ReadTimeout()]
