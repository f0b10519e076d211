"""Each addon is a plain mitmproxy addon: mitmdump runs nat_idle.py alone in front of the real Dovecot."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

from conformance.providers.base import free_port

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
        assert fate == "eof" and 0.9 <= waited < 1.8, (f"expected EOF ~1 s after the greeting, "
                                                       f"saw {fate} after {waited:.3f} s")
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


def test_mitmdump_refuses_a_mode_outside_the_choices_as_the_scenario_grammar_does(tmp_path):
    """``--set nat_idle_mode=bogus`` stops mitmdump with the same words as ``--scenario nat-idle:mode=bogus``
    (mitmproxy itself does not check ``choices`` on ``--set``: the addon's configure does)."""
    cmd = [str(MITMDUMP), "--mode", f"reverse:tcp://127.0.0.1:1@127.0.0.1:{free_port()}",
           "--set", f"confdir={tmp_path / 'confdir'}", "-s", str(ROOT / "conformance/intermediaries/addons/nat_idle.py"),
           "--set", "nat_idle_mode=bogus"]
    p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert p.returncode != 0, "mitmdump must not run with an invalid mode"
    assert "nat_idle_mode must be one of rst, fin, silent, got 'bogus'" in p.stdout + p.stderr, p.stdout + p.stderr


ADDON_FILES = sorted(p.name for p in (ROOT / "conformance/intermediaries/addons").glob("*.py")
                     if p.name not in ("__init__.py", "common.py", "record.py"))


def test_every_addon_file_loads_the_way_mitmdump_loads_it_with_settable_options():
    """mitmdump execs the file as a script (a dataclass defined there fails) and ``--set`` parses only
    str, int and bool options: check both for every addon file."""
    from mitmproxy import optmanager
    from mitmproxy.addons.script import load_script

    assert {"nat_idle.py", "lifetime.py", "kill.py", "link.py", "https_only.py", "inspecting.py", "buffering.py",
            "read_timeout.py"} <= set(ADDON_FILES)
    for name in ADDON_FILES:
        module = load_script(str(ROOT / "conformance/intermediaries/addons" / name))
        assert module is not None and module.addons, f"{name} does not load as a mitmdump script"
        opts = optmanager.OptManager()
        for addon in module.addons:
            if hasattr(addon, "load"):
                addon.load(_Loader(opts))
        for option in opts._options.values():
            assert option.typespec in (str, int, bool), f"{name}: option {option.name} cannot be set with --set"


class _Loader:
    def __init__(self, opts) -> None:
        self.opts = opts

    def add_option(self, name, typespec, default, help, choices=None) -> None:
        self.opts.add_option(name, typespec, default, help, choices)
