"""The timeline figure: valid standalone SVG, every server string escaped, junk input tolerated."""

import xml.etree.ElementTree as ET

from conformance.report.figures.timeline import TimelineBuilder, render


def test_render_escapes_server_text_and_is_valid_svg():
    b = TimelineBuilder("IDLE <script>alert(1)</script>", start=0, end=10)
    b.event(1, "client", "L1 IDLE", 9)
    b.event(2, "keepalive", '* OK <img src=x onerror="1"> & more', 30)
    b.event(4, "intermediary", "nat-idle: dropped")
    b.event(5, "change", "append")
    b.span(2, 4, "gap", "longest silence 2 s")
    b.span(4, 10, "blackhole", "black hole")
    b.threshold("idle timeout", 3)
    svg = render({"evidence": {"timeline": b.as_dict("fail")}})
    assert svg and "<script>" not in svg and "<img" not in svg and "&lt;img" in svg
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")


def test_render_ignores_missing_or_broken_data():
    assert render({"evidence": {}}) is None
    svg = render({"evidence": {"timeline": {"events": [{"t": "nan?", "kind": 3}, "junk"], "spans": [None],
                                            "start": 5, "end": 1}}})
    ET.fromstring(svg)
