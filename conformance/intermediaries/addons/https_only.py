"""https-only: an explicit HTTP proxy (a corporate firewall) that allows CONNECT only to ports declared HTTPS.

CONNECT to any other port is answered with 403; plain HTTP requests pass; allowed tunnels are relayed
untouched (no TLS interception), so IMAPS on a port declared HTTPS goes through.
Alone: ``mitmdump --mode regular@3128 -s https_only.py --set https_only_ports=443,8443``.
"""

from __future__ import annotations

from typing import Any

from mitmproxy import http

from conformance.intermediaries.addons.common import (
    InlineTCPLayer,
    RawTcp,
    StreamResponses,
    add_options,
    check_options,
    current_master,
    in_connect_tunnel,
    replace_layer,
    shared,
    value,
)
from conformance.intermediaries.scenario import ENDPOINTS, Emulator, Param


def parse_ports(text: str) -> set[int]:
    """'443/8443' or '443,8443' -> {443, 8443}."""
    return {int(p) for p in text.replace("/", ",").split(",") if p.strip()}


def ports_problem(text: str) -> str | None:
    parts = [p for p in text.replace("/", ",").split(",") if p.strip()]
    if not parts or not all(p.strip().isdigit() and 0 < int(p) < 65536 for p in parts):
        return "must be port numbers separated by '/', e.g. 443/8443"
    return None


def endpoints_problem(text: str) -> str | None:
    names = [n for n in text.split("/") if n]
    if text != "none" and (not names or any(n not in ENDPOINTS for n in names)):
        return f"must be 'none' or endpoint names separated by '/' ({', '.join(ENDPOINTS)})"
    return None


PORTS = Param("ports", str, "443", "443", "ports declared HTTPS, separated by '/'", check=ports_problem,
              option="https_only_ports")
# a scenario parameter only: it names the target's endpoints, which a standalone mitmdump does not know
HTTPS_ENDPOINTS = Param("endpoints", str, "jmap", "jmap", "target endpoints whose own ports also count as HTTPS "
                        "(e.g. jmap/imaps), separated by '/', or none", check=endpoints_problem)


def https_ports(values: dict[str, Any], target: dict[str, tuple[str, int]]) -> dict[str, Any]:
    """The declared HTTPS ports: the `ports` parameter plus the target's ports of the named endpoints
    (jmap only when the target serves it over https)."""
    ports = set(parse_ports(values["ports"]))
    if values["endpoints"] != "none":
        ports |= {target[n][1] for n in values["endpoints"].split("/")
                  if n in target and (n != "jmap" or target[n][0] == "https")}
    return {PORTS.option: ",".join(str(x) for x in sorted(ports))}


class HttpsOnly:
    OPTIONS = (PORTS, HTTPS_ENDPOINTS)

    def load(self, loader) -> None:
        add_options(loader, self.OPTIONS)

    def configure(self, updated) -> None:
        check_options(self.OPTIONS, updated)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        s = shared()
        host, port = flow.request.host, flow.request.port
        ports = parse_ports(value(PORTS))
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


SCENARIO = Emulator(
    name="https-only", path="http-forward", addon=HttpsOnly, endpoints=ENDPOINTS, resolve=https_ports,
    summary="Corporate firewall: explicit HTTP proxy, CONNECT only to ports declared HTTPS (403 otherwise), "
            "plain HTTP passes, tunnels are not inspected.")
addons = [StreamResponses(), RawTcp(), HttpsOnly()]
