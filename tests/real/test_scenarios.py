"""Real scenarios and presets as scenario strings: parameters, emulated equivalents, selection, not-applicable."""

from __future__ import annotations

import pytest

from conformance.errors import BadInput, NotApplicable
from conformance.intermediaries.path import NetworkPath
from conformance.intermediaries.presets import describe_for_case, load_presets
from conformance.intermediaries.real.calibrate import Pair, compare, load_pairs
from conformance.intermediaries.real.program import Program
from conformance.intermediaries.scenario import describe_all, parse_scenario
from conformance.transcript import Transcript

from .conftest import target_for


def test_real_elements_answer_for_their_emulated_equivalents():
    sc = parse_scenario("real-nat:mode=strict,timeout=4")
    nat = sc.element("nat-idle")
    assert nat is not None and nat.get("mode") == "silent" and nat.get("timeout") == 4.0
    assert parse_scenario("real-nat").element("nat-idle").get("mode") == "rst"
    nginx = parse_scenario("real-nginx:buffering=off")
    assert nginx.element("buffering") is None and nginx.element("read-timeout").get("timeout") == 5.0
    assert {"real-nginx", "buffering", "read-timeout"} <= parse_scenario("real-nginx").names
    assert parse_scenario("real-squid", "full").element("https-only").get("ports") == "443"


def test_real_elements_stand_alone_and_validate():
    with pytest.raises(BadInput, match="stands alone"):
        parse_scenario("real-nginx+link")
    with pytest.raises(BadInput, match="one of"):
        parse_scenario("real-nat:mode=loose")
    with pytest.raises(BadInput, match="at least 1"):
        parse_scenario("real-nat:timeout=0")


def test_scenarios_list_shows_real_and_presets_beside_emulators():
    rows = {r["name"]: r for r in describe_all()}
    assert rows["nat-idle"]["kind"] == "emulated"
    for name in ("real-nginx", "real-haproxy", "real-squid", "real-tinyproxy", "real-nat"):
        assert rows[name]["kind"] == "real"
    assert rows["preset:carrier-nat"]["kind"] == "preset"


def test_presets_expand_per_depth_with_sources():
    presets = load_presets()
    assert {"carrier-nat", "corporate-proxy", "home-gateway", "rfc5382-floor"} <= set(presets)
    for name in presets:
        for depth in ("quick", "full"):
            sc = parse_scenario(f"preset:{name}", depth)
            assert str(sc) == f"preset:{name}" and sc.elements
    floor = parse_scenario("preset:rfc5382-floor", "full")
    assert floor.element("nat-idle").get("timeout") == 7440.0
    quick = parse_scenario("preset:rfc5382-floor", "quick")
    fact = describe_for_case(quick)
    assert "scaled down" in fact["note"] and fact["scaled"] == ["nat-idle timeout 7440 -> 3"]
    assert "RFC 5382" in fact["sources"]["nat-idle.timeout"]
    assert describe_for_case(floor)["scaled"] == []
    with pytest.raises(BadInput, match="unknown preset"):
        parse_scenario("preset:nowhere")


def test_missing_program_is_not_applicable(monkeypatch):
    monkeypatch.setattr(Program, "path", lambda self: None)
    path = NetworkPath.for_scenario(parse_scenario("real-tinyproxy"), target_for(imap_port=1), Transcript())
    with pytest.raises(NotApplicable, match="not installed"):
        path.start()
    path.stop()


def test_calibration_compare_counts_agreement():
    pair = Pair("p", "nat-idle", "real-nat", ("x",), ("dovecot",))

    def res(check, scenario, verdict, actions=()):
        transcript = [{"t": t, "leg": "x", "direction": "I", "text": text, "conn": ""} for t, text in actions]
        return {"check": check, "target": "dovecot", "scenario": scenario, "verdict": verdict,
                "message": "no byte arrived: timed out" if verdict == "fail" else "", "evidence":
                {"transcript": transcript}}

    results = [res("a", "E", "pass"), res("a", "R", "pass"), res("b", "E", "fail", [(3.1, "dropped")]),
               res("b", "R", "pass"), res("c", "R", "pass"), res("d", "E", "skipped"), res("d", "R", "skipped")]
    report = compare(pair, results, "E", "R")
    assert report["compared"] == 2 and report["agree"] == 1 and report["agreement"] == 0.5
    assert report["only"]["real"] == ["c (dovecot)"]
    b = next(r for r in report["rows"] if r["check"] == "b")
    assert b["emulated_action"]["t"] == 3.1 and b["emulated_client_saw"] == "nothing (timed out)"
    assert set(load_pairs()) >= {"nat-silent", "nat-rst", "nginx-buffering", "squid-https-only"}


def test_real_nat_without_root_is_not_applicable(monkeypatch):
    import conformance.intermediaries.real.netns as netns

    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    path = NetworkPath.for_scenario(parse_scenario("real-nat"), target_for(imap_port=1), Transcript())
    with pytest.raises(NotApplicable, match="needs root"):
        path.start()
    path.stop()
