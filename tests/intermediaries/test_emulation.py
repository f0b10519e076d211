"""Honest emulation and parallel fitness: mitmproxy's own timers never fire inside an emulated window,
every case gets its own ports and CA, the registry and `lemonade scenarios list` agree."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conformance.errors import BadInput
from conformance.intermediaries.scenario import REGISTRY, describe_all, parse_scenario

from .conftest import peer_target


def test_mitmproxy_timeouts_are_beyond_every_emulated_window(tcp_peer, open_path):
    import mitmproxy.proxy.server as server

    describe_all()  # loads the registry
    longest = max(p.full for spec in REGISTRY.values() for p in spec.params if p.unit == "s")
    assert server.TCP_TIMEOUT > 2 * longest, "mitmproxy's idle watchdog must never fire first"
    path = open_path("nat-idle:timeout=100000", peer_target(tcp_peer.port))
    assert server.TCP_TIMEOUT > 200000, "an emulated window longer than the default raises mitmproxy's own"
    assert path.host.call(lambda: path.host.master.options.http2_ping_keepalive) == 0, \
        "mitmproxy must not send HTTP/2 PINGs of its own"


def test_each_case_gets_its_own_ports_and_ca_and_starts_fast(tcp_peer, open_path):
    target = peer_target(tcp_peer.port)
    a, b = open_path("kill", target), open_path("kill", target)
    assert a.address("imap") != b.address("imap")
    assert a.host.ca_file != b.host.ca_file and a.host.ca_file.read_bytes() != b.host.ca_file.read_bytes()
    assert a.host.started_in < 2.0 and b.host.started_in < 2.0  # measured in bench/tcp_path.py: ~0.05 s


@pytest.mark.parametrize("text, expect", [
    ("https-only:ports=abc", "must be port numbers"),
    ("https-only:endpoints=pop3", "must be 'none' or endpoint names"),
    ("buffering:limit=-1", "must not be negative"),
    ("link:delay=5", "has no parameter 'delay'"),
    ("read-timeout:timeout=x", "must be float"),
])
def test_bad_parameters_are_clear_errors(text, expect):
    with pytest.raises(BadInput, match=expect):
        parse_scenario(text)


def test_canonical_strings_and_composition():
    assert str(parse_scenario("link")) == "link:latency=100,rate=0"
    assert str(parse_scenario("https-only+inspecting")) == "https-only:ports=443,endpoints=jmap+inspecting"
    assert str(parse_scenario("buffering+read-timeout:timeout=2")) == "buffering:limit=65536+read-timeout:timeout=2"
    assert parse_scenario("buffering").supports("jmap") and not parse_scenario("buffering").supports("imap")


def test_scenarios_list_describes_every_intermediary():
    out = subprocess.run([sys.executable, "-m", "conformance.cli", "scenarios", "list", "--format", "json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    names = {r["name"] for r in json.loads(out.stdout)}
    assert {"direct", "nat-idle", "lifetime", "kill", "link", "https-only", "inspecting", "buffering",
            "read-timeout"} <= names
    # (test-only intermediaries other tests registered in this process are not the product's)
    assert names == {r["name"] for r in describe_all() if not r["summary"].startswith("TEST ONLY")}


def test_unknown_scenario_or_parameter_exits_2(tmp_path):
    for bad, words in (("nat-idel", "unknown intermediary"), ("buffering:lmit=5", "has no parameter 'lmit'"),
                       ("nat-idle:mode=bogus", "parameter 'mode' must be one of rst, fin, silent, got 'bogus'")):
        out = subprocess.run([sys.executable, "-m", "conformance.cli", "run", "--scenario", bad,
                              "--output", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
        assert out.returncode == 2, (bad, out.stdout, out.stderr)
        assert "scenario" in (out.stdout + out.stderr) and words in (out.stdout + out.stderr), (bad, out.stderr)


def test_two_paths_alive_in_one_process_keep_their_own_options_and_state(tcp_peer, open_path):
    """mitmproxy's ctx.options is process-global (the newest master): each path must still use its own."""
    import time

    from .conftest import outcome, recv_until

    target = peer_target(tcp_peer.port)
    short = open_path("nat-idle:timeout=1,mode=fin", target)
    long = open_path("nat-idle:timeout=30,mode=fin+kill", target)  # started last: owns mitmproxy's globals
    a, b = short.open("imap"), long.open("imap")
    recv_until(a, b"* OK")
    recv_until(b, b"* OK")
    t0 = time.monotonic()
    fate, _ = outcome(a, 4)
    assert fate == "eof" and time.monotonic() - t0 < 1.8, "the first path's 1 s window must apply to its connection"
    assert short.kill("rst") == 0 and long.kill("fin") == 1, "each path cuts only its own connections"
    assert outcome(b, 2)[0] == "eof"
    assert not [e for e in long.transcript.entries if e.leg == "nat-idle"], "no action leaks into the other case"


def test_recorder_text_matches_the_transcript_rendering():
    import os

    from conformance.intermediaries.addons.record import text_of
    from conformance.transcript import printable

    for data in (b"a1 NOOP\r\n", bytes(range(256)) * 3, os.urandom(3000), b"x\x00y\x1b\x7f\t", b"\x16\x03\x01abc"):
        assert text_of(data) == printable(data)
    bulk = os.urandom(9000)
    assert text_of(bulk) == printable(bulk, 256) and text_of(bulk).endswith("[8744 more octets]")
