"""inspecting: a TLS-intercepting explicit HTTP proxy that lets only HTTP through.

It terminates TLS inside every CONNECT tunnel with a certificate from its own CA (``mitmproxy-ca-cert.pem``
in its confdir; only clients told to trust that file accept it), and passes what it can parse as HTTP.
Anything else inside a tunnel (IMAP inside TLS, or a plain non-HTTP tunnel) is cut.
Alone: ``mitmdump --mode regular@3128 -s inspecting.py`` (clients trust ~/.mitmproxy/mitmproxy-ca-cert.pem).
"""

from __future__ import annotations

from mitmproxy import tcp

from conformance.intermediaries.addons.common import StreamResponses, add_options, check_options, cut, shared, value
from conformance.intermediaries.scenario import ENDPOINTS, Emulator, Param

CUT = Param("cut", str, "fin", "fin", "How non-HTTP inside a tunnel is cut.", choices=("fin", "rst"),
            option="inspecting_cut", scenario=False)


class Inspecting:
    OPTIONS = (CUT,)

    def load(self, loader) -> None:
        add_options(loader, self.OPTIONS)

    def configure(self, updated) -> None:
        check_options(self.OPTIONS, updated)

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        # mitmproxy decides HTTP or raw TCP from the first bytes (after its own TLS termination); on an
        # explicit proxy a raw TCP flow means the tunnel carries something that is not HTTP
        if flow.client_conn.proxy_mode.type_name != "regular":
            return
        s = shared()
        s.open(flow)
        addr = flow.server_conn.address
        inside = "inside TLS" if flow.client_conn.tls_established else "in a plain tunnel"
        s.record("inspecting", f"non-HTTP traffic {inside} to {addr[0]}:{addr[1]}: connection cut with "
                               f"{value(CUT).upper()}", s.label(flow))
        cut(flow, value(CUT), "inspecting proxy: not HTTP")

    def tls_failed_client(self, data) -> None:
        s = shared()
        s.record("inspecting", f"client refused the proxy's certificate: {data.conn.error}", "")


SCENARIO = Emulator(
    name="inspecting", path="http-forward", addon=Inspecting, endpoints=ENDPOINTS,
    summary="TLS-intercepting explicit HTTP proxy with its own CA (trusted only by the suite's clients): "
            "passes HTTP, cuts anything else inside a tunnel.")
addons = [StreamResponses(), Inspecting()]
