"""The flaky intermediary with real sockets, its seeded schedule, and the resync cost figure."""

from __future__ import annotations

import time
import xml.dom.minidom

from mitmproxy.test import taddons

from conformance.intermediaries.addons import flaky
from conformance.intermediaries.path import NetworkPath
from conformance.intermediaries.scenario import parse_scenario
from conformance.report.figures import resync_cost
from conformance.transcript import Transcript


def test_flaky_resets_a_live_connection_within_its_window(dovecot):
    transcript = Transcript()
    path = NetworkPath(parse_scenario("flaky:reset_every=0.4,seed=3"), dovecot, transcript).start()
    try:
        sock = path.open("imap")
        sock.settimeout(3)
        assert sock.recv(512).startswith(b"* OK")
        start = time.monotonic()
        try:
            while sock.recv(512):
                pass
        except ConnectionResetError:
            pass
        lived = time.monotonic() - start
        sock.close()
        assert lived < 0.4 * 1.5 + 0.5, f"connection lived {lived:.2f} s"
        actions = [e for e in transcript.as_list() if "reset after" in e["text"]]
        assert actions and "seeded lifetime" in actions[0]["text"]
    finally:
        path.stop()


def test_same_seed_same_schedule():
    """The addon alone (mitmproxy's taddons): its lifetimes follow flaky_seed and flaky_reset_every."""
    def lifetimes(seed: int) -> list[float]:
        f = flaky.Flaky()
        with taddons.context(f) as tctx:
            tctx.configure(f, flaky_seed=seed, flaky_reset_every="2")
            return [f.lifetime() for _ in range(5)]

    a, b, c = lifetimes(7), lifetimes(7), lifetimes(8)
    assert a == b and a != c
    assert all(1.0 <= x <= 3.0 for x in a)


def test_scenario_string_parses_with_depth_defaults():
    s = parse_scenario("flaky:seed=4", "full")
    assert str(s) == "flaky:reset_every=3,seed=4"


def test_resync_cost_figure_draws_bars_and_bound():
    result = {"evidence": {"resync_cost": {"sizes": [100, 1000, 10000], "quick": [780, 800, 820],
                                           "full": [4000, 35000, 360000], "bound": 3000}}}
    svg = resync_cost.render(result)
    xml.dom.minidom.parseString(svg)  # well-formed, self-contained
    assert svg.count("<rect") == 6 and "N=10000" in svg and "bound for quick resync: 3000 B" in svg
    assert resync_cost.render({"evidence": {}}) is None
    hostile = {"evidence": {"resync_cost": {"sizes": ["<script>"], "quick": [1], "full": [2], "bound": None}}}
    assert "<script>" not in resync_cost.render(hostile)
