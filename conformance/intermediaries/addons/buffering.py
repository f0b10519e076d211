"""buffering: a reverse proxy that holds a response, header included, until it is complete or more than ``limit``
octets have arrived (then the rest passes as it comes).

This is nginx's default (proxy_buffering on): nginx writes nothing to the client, not even the response
header, before a buffer is full or the upstream ends the response, so a small EventSource stream reaches the
client only when it ends (measured against real-nginx, README "Calibration"). The holding is mitmproxy's own
``stream_large_bodies``: a body is buffered until it exceeds the threshold, then streamed.
Alone: ``mitmdump --mode reverse:http://127.0.0.1:8080@8081 -s buffering.py --set buffering_limit=65536``.
"""

from __future__ import annotations

import time

from mitmproxy import http

from conformance.intermediaries.addons.common import (
    StreamResponses,
    add_options,
    check_options,
    options,
    shared,
    value,
)
from conformance.intermediaries.scenario import Emulator, Param

LIMIT = Param("limit", int, 65536, 65536, "octets held before they are sent on", unit="B", option="buffering_limit")


class Buffering:
    OPTIONS = (LIMIT,)

    def __init__(self) -> None:
        self.held: dict[str, float] = {}  # flow id -> when its response header arrived

    def load(self, loader) -> None:
        add_options(loader, self.OPTIONS)

    def configure(self, updated) -> None:
        check_options(self.OPTIONS, updated)
        if LIMIT.option in updated:
            options().update(stream_large_bodies=f"{max(value(LIMIT), 1)}b")

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is None:
            return
        flow.response.stream = False  # held by mitmproxy until complete or past stream_large_bodies
        label = f"{flow.request.method} {flow.request.path}"
        self.held[flow.id] = time.monotonic()
        shared().record("buffering", f"response {flow.response.status_code} to {label}: header and body held until "
                                     f"complete or more than {value(LIMIT)} octets", label)

    def response(self, flow: http.HTTPFlow) -> None:
        since = self.held.pop(flow.id, None)
        if since is None or flow.response is None or flow.response.stream:
            return  # streamed: the limit was passed and mitmproxy sent what it held
        label = f"{flow.request.method} {flow.request.path}"
        size = len(flow.response.raw_content or b"")
        shared().record("buffering", f"released {size} octets held for {time.monotonic() - since:.3f} s "
                                     "(response complete)", label)

    def error(self, flow: http.HTTPFlow) -> None:
        self.held.pop(flow.id, None)


SCENARIO = Emulator(
    name="buffering", path="http-reverse", addon=Buffering, endpoints=("jmap",),
    summary="Reverse proxy holding each response until complete or `limit` octets are buffered "
            "(nginx proxy_buffering: breaks EventSource).")
addons = [StreamResponses(), Buffering()]
