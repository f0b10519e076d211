"""Each addon is a plain mitmproxy addon: mitmdump runs nat_idle.py alone in front of the real Dovecot."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

from conformance.intermediaries.host import free_port

from .conftest import outcome, recv_until

ROOT = Path(__file__).resolve().parents[2]
MITMDUMP = ROOT / ".venv" / "bin" / "mitmdump"


def test_mitmdump_runs_nat_idle_alone_and_cuts_an_idle_connection(dovecot, tmp_path):
    imap = dovecot.endpoint("imap")
    port = free_port()
    cmd = [str(MITMDUMP), "--mode", f"reverse:tcp://{imap.host}:{imap.port}@127.0.0.1:{port}",
           "--set", f"confdir={tmp_path / 'confdir'}", "-s", str(ROOT / "conformance/intermediaries/addons/nat_idle.py"),
           "--set", "nat_idle_timeout=1", "--set", "nat_idle_mode=fin"]
    log = open(tmp_path / "mitmdump.log", "w+")
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        sock = None
        while sock is None:
            assert proc.poll() is None, f"mitmdump exited: {(tmp_path / 'mitmdump.log').read_text()[-2000:]}"
            assert time.monotonic() < deadline, "mitmdump did not listen within 60 s"
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                time.sleep(0.1)
        recv_until(sock, b"* OK")
        t0 = time.monotonic()
        fate, _ = outcome(sock, 5)
        waited = time.monotonic() - t0
        assert fate == "eof" and 0.9 <= waited < 1.8, f"expected EOF ~1 s after the greeting, saw {fate} after {waited:.3f} s"
        sock.close()
        deadline = time.monotonic() + 5
        while "nat-idle:" not in (tmp_path / "mitmdump.log").read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "s without traffic, connection closed with FIN" in (tmp_path / "mitmdump.log").read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
