"""real-nginx: Debian's nginx as a reverse proxy in front of the target's JMAP endpoint (http module) and its TCP
endpoints (stream module), from Debian's nginx.conf with the parameters' values changed."""

from __future__ import annotations

import re
from pathlib import Path

from ...errors import NotApplicable
from .base import RealPath
from .program import LogRule, Program, Running, free_port, give_to, make_workdir, service_user
from .render import render
from .tls import server_cert

NGINX = Program("nginx", "nginx", "nginx", ("-v",), r"nginx/(\S+)")
STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")  # Debian package libnginx-mod-stream
TCP_ENDPOINTS = ("imap", "imaps", "submission", "submissions")

RULES = [
    LogRule(re.compile(r"upstream timed out .* while reading response header from upstream.*request: \"(\S+ \S+)"),
            lambda m, _: f"proxy_read_timeout fired before the response header of {m.group(1)}: "
                         "504 Gateway Time-out to the client"),
    LogRule(re.compile(r"upstream timed out .* while reading upstream.*request: \"(\S+ \S+)"),
            lambda m, _: f"proxy_read_timeout fired during the body of {m.group(1)}: client connection closed "
                         "without the terminating chunk"),
    LogRule(re.compile(r"upstream prematurely closed connection.*request: \"(\S+ \S+)"),
            lambda m, _: f"upstream closed the connection early during {m.group(1)} (logged by nginx)", action=False),
    LogRule(re.compile(r"(client|upstream) timed out .* while proxying (?:and reading from|connection)"),
            lambda m, _: f"stream proxy_timeout fired ({m.group(1)} side idle): both connections closed"),
    LogRule(re.compile(r"\*(\d+) (?:upstream|client) timed out"),
            lambda m, line: "timeout: " + line.split("] ", 1)[-1][:200]),
]


class NginxPath(RealPath):
    program = NGINX

    def launch(self) -> None:
        binary = self.program.require()
        user = service_user("www-data")
        self.workdir = make_workdir("nginx", user)
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.workdir / "tmp" / sub).mkdir()
            give_to(user, self.workdir / "tmp" / sub)
        http, stream, ports = None, [], []
        jmap = self.target.endpoint("jmap")
        if jmap is not None:
            tls = jmap.scheme == "https"
            cert = server_cert(self.workdir / "tls") if tls else None
            http = {"listen": free_port(), "tls": tls, "upstream": f"{jmap.scheme}://{jmap.host}:{jmap.port}",
                    "cert": cert.cert if cert else "", "key": cert.key if cert else ""}
            if cert:
                self.tls_ca = cert.ca
                self.intercepts_tls = True
            self.reverse["jmap"] = ("127.0.0.1", http["listen"])
            ports.append(http["listen"])
        stream_module = str(STREAM_MODULE) if STREAM_MODULE.exists() else ""
        for name in TCP_ENDPOINTS:
            ep = self.target.endpoint(name)
            if ep is None or not stream_module:
                continue
            listen = free_port()
            stream.append({"listen": listen, "upstream": f"{ep.host}:{ep.port}"})
            self.reverse[name] = ("127.0.0.1", listen)
            ports.append(listen)
        if not self.reverse:
            raise NotApplicable(f"real-nginx carries none of the endpoints of target {self.target.name}"
                                + ("" if stream_module else " (no stream module: Debian package libnginx-mod-stream)"))
        mime = "/etc/nginx/mime.types" if Path("/etc/nginx/mime.types").exists() else ""
        conf = self.workdir / "nginx.conf"
        conf.write_text(render("nginx.conf.j2", dir=self.workdir, user=user, stream_module=stream_module,
                               mime_types=mime, http=http, stream=stream, **self.params))
        argv = [binary, "-p", str(self.workdir), "-c", str(conf), "-e", str(self.workdir / "log" / "error.log"),
                "-g", "daemon off;"]
        self.running = Running(self.program, self.workdir, argv, self.transcript,
                               [self.workdir / "log" / "error.log", self.workdir / "log" / "access.log"], RULES)
        self.running.start(ports)
        self.record_program({"config": "Debian 12 nginx.conf; changed: " + ", ".join(
            f"{k}={v}" for k, v in self.params.items())})
