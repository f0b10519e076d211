"""Test-only intermediary whose addon raises on purpose, to prove that a fault of the suite's own intermediary
makes a case ``error`` (with the traceback in its transcript), never a ``fail`` of the target.

``raising:hook=tcp_message`` cuts the connection at the server's first message and then raises (without the
fault rule the client would only see the target close early: a false ``fail``); ``hook=response`` raises in
the HTTP ``response`` hook (``raising-http``, a reverse HTTP proxy), ``hook=stream`` in a response stream
callable (called by mitmproxy's HTTP layer, not by a hook: its crash reaches the path through mitmproxy's
error log); ``hook=timer`` raises in a background task; ``hook=quote`` raises quoting what the client sent;
``hook=none`` is the control.
Importing this module registers the intermediary; it is never part of the product.
"""

from __future__ import annotations

from mitmproxy import http, tcp

from conformance.intermediaries.addons.common import add_options, check_options, cut, spawn, value
from conformance.intermediaries.scenario import ENDPOINTS, REGISTRY, Emulator, Param, register

HOOK = Param("hook", str, "tcp_message", "tcp_message", "where the addon raises",
             choices=("none", "tcp_message", "quote", "response", "stream", "timer"), option="raising_hook")


class Raising:
    OPTIONS = (HOOK,)

    def load(self, loader) -> None:
        add_options(loader, self.OPTIONS)

    def configure(self, updated) -> None:
        check_options(self.OPTIONS, updated)

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        if value(HOOK) == "timer":
            spawn(self._fail_later(), "raising timer")

    async def _fail_later(self) -> None:
        raise RuntimeError("deliberate failure in a timer of the test addon")

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        if value(HOOK) == "quote" and flow.messages[-1].from_client:
            raise RuntimeError(f"deliberate failure quoting the client: {flow.messages[-1].content!r}")
        if value(HOOK) == "tcp_message" and not flow.messages[-1].from_client:
            flow.messages[-1].content = b""
            cut(flow, "fin", "raising test addon")
            raise RuntimeError("deliberate failure in tcp_message of the test addon")

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if value(HOOK) == "stream" and flow.response is not None:
            flow.response.stream = self._failing_stream

    @staticmethod
    def _failing_stream(data: bytes) -> bytes:
        raise RuntimeError("deliberate failure in a response stream of the test addon")

    def response(self, flow: http.HTTPFlow) -> None:
        if value(HOOK) == "response":
            raise RuntimeError("deliberate failure in response of the test addon")


if "raising" not in REGISTRY:
    register(Emulator(name="raising", path="tcp", addon=Raising, endpoints=ENDPOINTS,
                      summary="TEST ONLY: an addon that raises in a hook of its choice (TCP path)."))
    register(Emulator(name="raising-http", path="http-reverse", addon=Raising, endpoints=("jmap",),
                      summary="TEST ONLY: an addon that raises in a hook of its choice (reverse HTTP proxy)."))
