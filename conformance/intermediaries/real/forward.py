"""real-squid and real-tinyproxy: Debian's explicit HTTP proxies, reached with CONNECT like https-only."""

from __future__ import annotations

import re

from ..addons.https_only import parse_ports
from .base import RealPath
from .program import LogRule, Program, Running, free_port, give_to, make_workdir, service_user
from .render import render

SQUID = Program("squid", "squid", "squid", ("-v",), r"Version (\S+)")
TINYPROXY = Program("tinyproxy", "tinyproxy", "tinyproxy", ("-v",), r"tinyproxy (\S+)")

SQUID_RULES = [
    LogRule(re.compile(r"\s(\d+) \S+ TCP_DENIED/403 \d+ CONNECT (\S+)"),
            lambda m, _: f"CONNECT {m.group(2)} refused with 403 (http_access deny CONNECT !SSL_ports)"),
    LogRule(re.compile(r"\s(\d+) \S+ TCP_TUNNEL/(\d+) (\d+) CONNECT (\S+)"),
            lambda m, _: f"CONNECT tunnel to {m.group(4)} ended after {int(m.group(1)) / 1000:.3f} s "
                         f"({m.group(3)} octets to the client; access.log)", action=False),
]
TINYPROXY_RULES = [
    LogRule(re.compile(r"(Refused CONNECT method on port \d+|Proxying refused on filtered|Access denied)"),
            lambda m, _: f"{m.group(1)}: 403 to the client"),
    LogRule(re.compile(r"(Idle Timeout.*|.*[Tt]imed? ?out.*)$"),
            lambda m, _: f"Timeout fired: {m.group(1).strip()[:160]}"),
    LogRule(re.compile(r"Closed connection between local client \(fd:\s*\d+\) and remote client \(fd:\s*\d+\)"),
            lambda m, _: "tunnel closed (both sockets)", action=False),
]


def allowed_ports(path: RealPath, ports: str, endpoints: str) -> list[int]:
    """The declared ports plus the target's ports of the named endpoints (as https-only counts them)."""
    out = set(parse_ports(ports))
    if endpoints != "none":
        for name in endpoints.split("/"):
            ep = path.target.endpoint(name)
            if ep is not None and (name != "jmap" or ep.scheme == "https"):
                out.add(ep.port)
    return sorted(out)


class SquidPath(RealPath):
    program = SQUID

    def launch(self) -> None:
        binary = self.program.require()
        user = service_user("proxy")
        self.workdir = make_workdir("squid", user)
        give_to(user, self.workdir)
        port = free_port()
        ssl_ports = allowed_ports(self, self.params["ports"], self.params["endpoints"])
        conf = self.workdir / "squid.conf"
        conf.write_text(render("squid.conf.j2", dir=self.workdir, user=user, port=port,
                               ssl_ports=" ".join(map(str, ssl_ports)), read_timeout=self.params["read_timeout"]))
        self.running = Running(self.program, self.workdir, [binary, "-N", "-f", str(conf)], self.transcript,
                               [self.workdir / "log" / "access.log", self.workdir / "log" / "cache.log"], SQUID_RULES)
        self.running.start([port], timeout=20.0)
        self.forward_proxy = ("127.0.0.1", port)
        self.record_program({"config": f"Debian 12 squid.conf; changed: SSL_ports {' '.join(map(str, ssl_ports))}, "
                                       f"read_timeout {self.params['read_timeout']:g} s"})


class TinyproxyPath(RealPath):
    program = TINYPROXY

    def launch(self) -> None:
        binary = self.program.require()
        user = service_user("tinyproxy")
        self.workdir = make_workdir("tinyproxy", user)
        port = free_port()
        cp = self.params["connect_ports"]
        connect = [] if cp == "any" else allowed_ports(self, cp, self.params["endpoints"])
        conf = self.workdir / "tinyproxy.conf"
        conf.write_text(render("tinyproxy.conf.j2", dir=self.workdir, user=user, port=port, connect_ports=connect,
                               timeout=self.params["timeout"]))
        self.running = Running(self.program, self.workdir, [binary, "-d", "-c", str(conf)], self.transcript,
                               [self.workdir / "log" / "tinyproxy.log"], TINYPROXY_RULES)
        self.running.start([port])
        self.forward_proxy = ("127.0.0.1", port)
        self.record_program({"config": "Debian 12 tinyproxy.conf; changed: "
                                       + (f"ConnectPort {' '.join(map(str, connect))}, " if connect else "")
                                       + f"Timeout {max(int(self.params['timeout']), 1)}"})
