"""https-only: an explicit HTTP proxy (a corporate firewall) that allows CONNECT only to ports declared HTTPS.

CONNECT to any other port is answered with 403; plain HTTP requests pass; allowed tunnels are relayed
untouched (no TLS interception), so IMAPS on a port declared HTTPS goes through.
Alone: ``mitmdump --mode regular@3128 -s https_only.py --set https_only_ports=443,8443``.
"""

from __future__ import annotations

from mitmproxy import http

from conformance.intermediaries.addons.common import (
    InlineTCPLayer,
    RawTcp,
    StreamResponses,
    current_master,
    in_connect_tunnel,
    options,
    replace_layer,
    shared,
)


def parse_ports(text: str) -> set[int]:
    """'443/8443' or '443,8443' -> {443, 8443}."""
    return {int(p) for p in text.replace("/", ",").split(",") if p.strip()}


class HttpsOnly:
    def load(self, loader) -> None:
        loader.add_option("https_only_ports", str, "443",
                          "Ports declared HTTPS, separated by ',' or '/': CONNECT is allowed only to these.")

    def http_connect(self, flow: http.HTTPFlow) -> None:
        s = shared()
        host, port = flow.request.host, flow.request.port
        ports = parse_ports(options().https_only_ports)
        if port in ports:
            s.record("https-only", f"CONNECT {host}:{port} allowed (port declared HTTPS)", "")
            return
        flow.response = http.Response.make(
            403, f"CONNECT to port {port} refused: only ports {', '.join(map(str, sorted(ports)))} are allowed\n".encode(),
            {"Content-Type": "text/plain"})
        s.record("https-only", f"CONNECT {host}:{port} refused with 403 (port not declared HTTPS; "
                               f"declared: {', '.join(map(str, sorted(ports)))})", "")

    def next_layer(self, nextlayer) -> None:
        # an allowed tunnel is opaque: relay the bytes, never intercept TLS (unless an inspecting proxy is
        # composed with this one: https-only+inspecting, as a corporate proxy does both)
        if current_master().addons.get("inspecting") is not None:
            return
        if in_connect_tunnel(nextlayer) and not isinstance(nextlayer.layer, InlineTCPLayer):
            replace_layer(nextlayer, InlineTCPLayer)


addons = [StreamResponses(), RawTcp(), HttpsOnly()]
