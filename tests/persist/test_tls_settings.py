"""The target's TLS settings hold on the intermediary's own leg too: an emulated reverse proxy (mitmproxy), real nginx
and real haproxy in front of an https server verify its certificate with the target's ``ca_file`` (or the system's
CAs for ``verify = true``), refuse it when that trust does not cover it, and leave it unverified for ``verify = false``
(the default, as before)."""

from __future__ import annotations

import shutil
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from conformance.intermediaries.path import NetworkPath
from conformance.intermediaries.scenario import parse_scenario
from conformance.providers.dovecot import make_certificate
from conformance.targets import Account, Endpoint, Target, TlsPolicy
from conformance.transcript import Transcript


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802
        body = b"hello from the https server\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def https_server(tmp_path):
    (tmp_path / "server").mkdir()
    make_certificate(tmp_path / "server")  # self-signed for localhost and 127.0.0.1
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "server" / "cert.pem", tmp_path / "server" / "key.pem")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    server.daemon_threads = True
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server, tmp_path / "server" / "cert.pem"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("scenario", ["read-timeout:timeout=30", "real-nginx:buffering=off", "real-haproxy"])
def test_the_targets_tls_settings_hold_on_the_intermediarys_leg(https_server, tmp_path, scenario):
    program = {"real-nginx": "nginx", "real-haproxy": "haproxy"}.get(scenario.split(":")[0])
    if program and shutil.which(program) is None and not (shutil.which(f"/usr/sbin/{program}")):
        pytest.skip(f"{program} is not installed (scripts/apt.d/intermediaries.txt)")
    server, server_cert = https_server
    (tmp_path / "other").mkdir()
    make_certificate(tmp_path / "other")  # a CA that did not sign the server's certificate
    got = {}
    for trust, tls in (("ca_file of the server", TlsPolicy(verify=True, ca_file=str(server_cert))),
                       ("ca_file of another CA", TlsPolicy(verify=True, ca_file=str(tmp_path / "other" / "cert.pem"))),
                       ("verify = false", TlsPolicy(verify=False))):
        target = Target("https", {"jmap": Endpoint("jmap", "https", "127.0.0.1", server.server_address[1])},
                        [Account("u", "pw")], tls=tls)
        path = NetworkPath.for_scenario(parse_scenario(scenario), target, Transcript()).start()
        try:
            ep = path.endpoint("jmap")
            r = httpx.get(f"https://{ep.host}:{ep.port}/", verify=path.ca_file, timeout=10)  # the path's own CA
            got[trust] = r.status_code, r.text
        finally:
            path.stop()
    assert got["ca_file of the server"] == (200, "hello from the https server\n"), got
    assert got["verify = false"][0] == 200, got
    assert got["ca_file of another CA"][0] in (502, 503), got  # the intermediary refused the server's certificate
