"""real-nginx: Debian's nginx as a reverse proxy in front of the target's JMAP endpoint (http module) and its TCP
endpoints (stream module), from Debian's nginx.conf with the parameters' values changed."""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
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

    def upstream_name(self, host: str, port: int) -> str:
        """The name nginx checks the target's certificate against (``proxy_ssl_name``): the host itself, or, for an
        IP address (nginx matches only DNS names, never a certificate's iPAddress entries), the first DNS name the
        certificate carries; the chain is verified with the target's trust either way. A certificate with no DNS
        name leaves nginx unable to verify it: then nginx does not, and the transcript says so."""
        if not _is_ip(host):
            return host
        names = _dns_names(host, port)
        if names:
            return names[0]
        self.transcript.note(f"real-nginx: the target's certificate at {host}:{port} names no DNS host, which nginx "
                             "needs to verify it: nginx's leg to the target is not verified (the suite's own clients "
                             "verify the target with its TLS settings under direct)")
        return ""
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
                    "cert": cert.cert if cert else "", "key": cert.key if cert else "",
                    "trust": self.upstream_trust(user) if tls else {"verify": False}}
            if http["trust"]["verify"]:
                http["trust"]["name"] = self.upstream_name(jmap.host, jmap.port)
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


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _dns_names(host: str, port: int) -> list[str]:
    """The DNS names of the certificate the server at host:port presents (read without verifying it; nginx verifies)."""
    from cryptography import x509

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=5) as raw, ctx.wrap_socket(raw) as s:
            der = s.getpeercert(binary_form=True)
        cert = x509.load_der_x509_certificate(der)
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName))
    except (OSError, ValueError, x509.ExtensionNotFound):
        return []
