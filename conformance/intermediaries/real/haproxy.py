"""real-haproxy: Debian's haproxy, http mode in front of the target's JMAP endpoint and tcp mode in front of its
TCP endpoints, from Debian's haproxy.cfg with the parameter's value changed."""

from __future__ import annotations

import re
from pathlib import Path

from .base import RealPath
from .program import LogRule, Program, Running, free_port, make_workdir, service_user
from .render import render
from .tls import server_cert

HAPROXY = Program("haproxy", "haproxy", "haproxy", ("-v",), r"HA-?Proxy version (\S+)")
TCP_ENDPOINTS = ("imap", "imaps", "submission", "submissions")
FLAGS = {
    "sH": "timeout server fired before the response header: 504 to the client",
    "sD": "timeout server fired during the data phase: both connections closed",
    "cD": "timeout client fired during the data phase: both connections closed",
    "cH": "timeout client fired while waiting for the request: connection closed",
    "cR": "timeout client fired while waiting for the request (408)",
    "SD": "the server closed or reset the connection during the data phase",
    "SH": "the server closed the connection before the response header",
    "CD": "the client closed the connection during the data phase",
}
# httplog ends the termination state with two more characters ("sD--"), tcplog has just two ("sD ")
def _describe(m: re.Match[str], line: str) -> str:
    return f"{FLAGS.get(m.group('flags'), m.group('flags'))} (log: {line.split('] ', 1)[-1][:160]})"


# lower-case c/s: haproxy's own timer fired (its action); upper-case C/S: a peer closed (a note)
RULES = [LogRule(re.compile(r" (?P<flags>[cs][DHR])(?:--| )"), _describe),
         LogRule(re.compile(r" (?P<flags>[CS][DHR])(?:--| )"), _describe, action=False)]


class HaproxyPath(RealPath):
    program = HAPROXY

    def launch(self) -> None:
        binary = self.program.require()
        user = service_user("haproxy")
        self.workdir = make_workdir("haproxy", None)
        http, tcp, ports = None, [], []
        jmap = self.target.endpoint("jmap")
        if jmap is not None:
            tls = jmap.scheme == "https"
            cert = server_cert(self.workdir / "tls") if tls else None
            http = {"listen": free_port(), "tls": tls, "host": jmap.host, "port": jmap.port,
                    "bundle": cert.bundle if cert else "",
                    "trust": self.upstream_trust(None) if tls else {"verify": False}}
            if cert:
                self.tls_ca, self.intercepts_tls = cert.ca, True
            self.reverse["jmap"] = ("127.0.0.1", http["listen"])
            ports.append(http["listen"])
        for name in TCP_ENDPOINTS:
            ep = self.target.endpoint(name)
            if ep is None:
                continue
            tcp.append({"name": name, "listen": free_port(), "upstream": f"{ep.host}:{ep.port}"})
            self.reverse[name] = ("127.0.0.1", tcp[-1]["listen"])
            ports.append(tcp[-1]["listen"])
        conf = self.workdir / "haproxy.cfg"
        conf.write_text(render("haproxy.cfg.j2", dir=self.workdir, user=user, http=http, tcp=tcp,
                               errorfiles=Path("/etc/haproxy/errors/504.http").exists(), **self.params))
        self.running = Running(self.program, self.workdir, [binary, "-db", "-f", str(conf)], self.transcript, [],
                               RULES)
        self.running.start(ports)
        timeout = self.params["timeout"]
        self.record_program({"config": f"Debian 12 haproxy.cfg; changed: timeout client/server {timeout:g} s"})
