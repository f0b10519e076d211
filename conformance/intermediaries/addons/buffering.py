"""buffering: a reverse proxy that holds a response until it is complete or ``limit`` octets are buffered.

This is nginx's default (proxy_buffering on): a streamed response such as EventSource reaches the client
only in blocks of ``limit`` octets or when the upstream ends it, so small events sit in the proxy.
Alone: ``mitmdump --mode reverse:http://127.0.0.1:8080@8081 -s buffering.py --set buffering_limit=65536``.
"""

from __future__ import annotations

import time

from mitmproxy import http

from conformance.intermediaries.addons.common import StreamResponses, add_options, check_options, shared, value
from conformance.intermediaries.scenario import Emulator, Param

LIMIT = Param("limit", int, 65536, 65536, "octets held before they are sent on", unit="B", option="buffering_limit")


class Holder:
    """The response stream callable: collects chunks, releases them in blocks of ``limit`` or at the end."""

    def __init__(self, limit: int, label: str) -> None:
        self.limit = limit
        self.label = label
        self.buf: list[bytes] = []
        self.size = 0
        self.since: float | None = None

    def __call__(self, data: bytes) -> list[bytes]:
        s = shared()
        if data:
            if self.since is None:
                self.since = time.monotonic()
            self.buf.append(data)
            self.size += len(data)
            if self.size < self.limit:
                return []
            why = f"buffer limit of {self.limit} octets reached"
        elif not self.buf:
            return []
        else:
            why = "response complete"
        out = b"".join(self.buf)
        held = time.monotonic() - (self.since or time.monotonic())
        s.record("buffering", f"released {len(out)} octets held for {held:.3f} s ({why})", self.label)
        self.buf, self.size, self.since = [], 0, None
        return [out]


class Buffering:
    OPTIONS = (LIMIT,)

    def load(self, loader) -> None:
        add_options(loader, self.OPTIONS)

    def configure(self, updated) -> None:
        check_options(self.OPTIONS, updated)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is None:
            return
        label = f"{flow.request.method} {flow.request.path}"
        flow.response.stream = Holder(value(LIMIT), label)
        shared().record("buffering", f"response {flow.response.status_code} to {label}: body held until complete "
                                     f"or {value(LIMIT)} octets", label)


SCENARIO = Emulator(
    name="buffering", path="http-reverse", addon=Buffering, endpoints=("jmap",),
    summary="Reverse proxy holding each response until complete or `limit` octets are buffered "
            "(nginx proxy_buffering: breaks EventSource).")
addons = [StreamResponses(), Buffering()]
