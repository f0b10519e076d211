"""Real intermediaries as scenarios: Debian's nginx, haproxy, squid and tinyproxy, and the kernel's own NAT.

Each runs as a private process (or, for real-nat, in network namespaces) of one case, from Debian's default
configuration with only the values its parameters name changed. Each names the emulated elements it
corresponds to (``emulates``), which is how checks pinned to an emulator also run under its real counterpart,
how ``scenario.element("nat-idle")`` answers under real-nat, and how ``lemonade calibrate`` pairs them.
Without the program (or, for real-nat, without root) a case is not-applicable with the reason.
"""

from __future__ import annotations

from typing import Any

from ..scenario import Intermediary, Param, register

TCP_AND_JMAP = ("imap", "imaps", "submission", "submissions", "jmap")


def _path(module: str, cls: str):
    def make(scenario, target, transcript):
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{module}"), cls)(scenario, target, transcript)
    return make


def _ports_ok(value: str) -> str | None:
    from ..addons.https_only import ports_problem

    return ports_problem(value)


def _connect_ports_ok(value: str) -> str | None:
    return None if value == "any" else _ports_ok(value)


def _endpoints_ok(value: str) -> str | None:
    from ..addons.https_only import endpoints_problem

    return endpoints_problem(value)


def _nginx_emulates(p: dict[str, Any]):
    out = [("read-timeout", {"timeout": float(p["read_timeout"])})]
    if p["buffering"] == "on":
        out.append(("buffering", {"limit": NGINX_BUFFERED_OCTETS}))
    return tuple(out)


# what nginx 1.22 holds of a streamed response with proxy_buffering on before it writes to the client: it
# sends each buffer when it is full (proxy_buffer_size / proxy_buffers: one memory page, 4 KiB here), so the
# equivalent emulated buffering holds 4096 octets (measured: see README "Calibration")
NGINX_BUFFERED_OCTETS = 4096

register(Intermediary(
    name="real-nginx", path="http-reverse",
    summary="Debian's nginx as a reverse proxy: http in front of JMAP (proxy_buffering, proxy_read_timeout: "
            "504 before the header, close mid-body after it), stream in front of IMAP/submission.",
    params=(
        Param("read_timeout", float, 5.0, 60.0, "proxy_read_timeout: seconds between two reads from upstream "
              "(nginx default 60)", unit="s"),
        Param("buffering", str, "on", "on", "proxy_buffering (nginx default on; a response header "
              "X-Accel-Buffering: no turns it off for that response)", choices=("on", "off")),
        Param("websocket", str, "off", "off", "on: proxy_http_version 1.1 with Upgrade/Connection headers "
              "(nginx default: HTTP/1.0 upstream, no WebSocket)", choices=("off", "on")),
        Param("stream_timeout", float, 5.0, 600.0, "stream proxy_timeout for TCP endpoints (nginx default 10m)",
              unit="s"),
    ),
    endpoints=TCP_AND_JMAP, real=_path("nginx", "NginxPath"), emulates=_nginx_emulates,
))

register(Intermediary(
    name="real-haproxy", path="http-reverse",
    summary="Debian's haproxy (haproxy.cfg: timeout client/server 50 s, no timeout tunnel): http mode in front "
            "of JMAP, tcp mode in front of IMAP/submission.",
    params=(
        Param("timeout", float, 5.0, 50.0, "timeout client and timeout server (Debian's haproxy.cfg: 50000 ms)",
              unit="s"),
    ),
    endpoints=TCP_AND_JMAP, real=_path("haproxy", "HaproxyPath"),
    emulates=lambda p: (("read-timeout", {"timeout": float(p["timeout"])}),
                        ("nat-idle", {"timeout": float(p["timeout"]), "mode": "fin"})),
))

register(Intermediary(
    name="real-squid", path="http-forward",
    summary="Debian's squid as an explicit proxy: CONNECT only to SSL_ports (403 otherwise), idle tunnels closed "
            "after read_timeout (15 min).",
    params=(
        Param("ports", str, "443", "443", "SSL_ports, separated by '/' (Debian: 443)", check=_ports_ok),
        Param("endpoints", str, "jmap", "jmap", "target endpoints whose own ports also count as SSL_ports "
              "(the target's JMAP port stands in for 443), separated by '/', or none", check=_endpoints_ok),
        Param("read_timeout", float, 5.0, 900.0, "read_timeout (squid default 15 minutes)", unit="s"),
    ),
    endpoints=TCP_AND_JMAP, real=_path("forward", "SquidPath"),
    emulates=lambda p: (("https-only", {"ports": p["ports"], "endpoints": p["endpoints"]}),),
))

register(Intermediary(
    name="real-tinyproxy", path="http-forward",
    summary="Debian's tinyproxy as an explicit proxy: Timeout 600 s idle, CONNECT to any port unless ConnectPort "
            "lines restrict it.",
    params=(
        Param("connect_ports", str, "any", "any", "ConnectPort lines, separated by '/', or any (Debian: none, so "
              "every port)", check=_connect_ports_ok),
        Param("endpoints", str, "jmap", "jmap", "with connect_ports: target endpoints whose own ports are also "
              "allowed (the target's JMAP port stands in for 443), separated by '/', or none", check=_endpoints_ok),
        Param("timeout", float, 5.0, 600.0, "Timeout: idle seconds in either direction (Debian: 600)", unit="s"),
    ),
    endpoints=TCP_AND_JMAP, real=_path("forward", "TinyproxyPath"),
    emulates=lambda p: (("https-only", {"ports": "443" if p["connect_ports"] == "any" else p["connect_ports"],
                                        "endpoints": "imap/imaps/submission/submissions/jmap"
                                        if p["connect_ports"] == "any" else p["endpoints"]}),),
))

register(Intermediary(
    name="real-nat", path="tcp",
    summary="Linux NAT between network namespaces (veth, MASQUERADE, conntrack with a short established "
            "timeout): default = the kernel's own behaviour on expiry, strict = loose 0 and INVALID dropped "
            "(a silent black hole). Needs root.",
    params=(
        Param("timeout", int, 3, 30, "nf_conntrack_tcp_timeout_established in the router's namespace (kernel "
              "default 432000)", unit="s", check=lambda v: "must be at least 1" if v < 1 else None),
        Param("mode", str, "default", "default", "default: nf_conntrack_tcp_loose=1, nothing dropped; strict: "
              "loose=0 and packets of a forgotten mapping dropped", choices=("default", "strict")),
    ),
    endpoints=TCP_AND_JMAP, real=_path("nat", "NatPath"),
    emulates=lambda p: (("nat-idle", {"timeout": float(p["timeout"]),
                                      "mode": "silent" if p["mode"] == "strict" else "rst"}),),
))
