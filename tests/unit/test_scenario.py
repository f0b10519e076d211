"""Scenario strings: canonical form with depth defaults; unknown names and parameters are clear errors."""

import pytest

from conformance.errors import BadInput
from conformance.intermediaries.scenario import parse_scenario


def test_direct_and_defaults():
    assert str(parse_scenario("direct")) == "direct" and parse_scenario("").is_direct
    assert str(parse_scenario("nat-idle:mode=silent")) == "nat-idle:timeout=3,mode=silent"
    assert str(parse_scenario("nat-idle", "full")) == "nat-idle:timeout=30,mode=rst"
    assert str(parse_scenario("lifetime:max=2+kill")) == "lifetime:max=2,mode=fin+kill"


@pytest.mark.parametrize("text, expect", [
    ("nat-idel", "unknown intermediary 'nat-idel'"),
    ("nat-idle:timeot=3", "has no parameter 'timeot'"),
    ("nat-idle:mode=loud", "must be one of rst, fin, silent"),
    ("nat-idle:mode=bogus", "parameter 'mode' must be one of rst, fin, silent, got 'bogus'"),
    ("lifetime:mode=silent", "must be one of rst, fin"),
    ("nat-idle:timeout=abc", "must be float"),
    ("nat-idle:timeout", "is not key=value"),
    ("kill+kill", "appears twice"),
])
def test_errors(text, expect):
    with pytest.raises(BadInput, match=expect.replace("(", r"\(").replace(")", r"\)")):
        parse_scenario(text)


@pytest.fixture
def extra_intermediary():
    """A registry entry that is no mitmproxy addon (as a real program registers), removed afterwards."""
    from conformance.intermediaries.scenario import REGISTRY, Intermediary, Param, register

    spec = register(Intermediary(
        name="test-real", path="tcp", summary="TEST ONLY: a real program stand-in",
        real=lambda scenario, target, transcript: None, emulates=lambda p: (("nat-idle", {"mode": "silent"}),),
        params=(Param("timeout", float, 5.0, 50.0, "idle seconds", unit="s"),
                Param("mode", str, "strict", "strict", "conntrack mode", choices=("default", "strict")))))
    yield spec
    REGISTRY.pop(spec.name, None)


def test_an_intermediary_that_is_no_addon_parses_validates_and_describes_like_the_others(extra_intermediary):
    from conformance.intermediaries.scenario import Intermediary, describe_all, register

    assert str(parse_scenario("test-real")) == "test-real:timeout=5,mode=strict"
    assert parse_scenario("test-real").element("nat-idle").get("mode") == "silent"
    with pytest.raises(BadInput, match="stands alone"):
        parse_scenario("test-real+kill")
    assert str(parse_scenario("test-real:mode=default", "full")) == "test-real:timeout=50,mode=default"
    with pytest.raises(BadInput, match="must be one of default, strict"):
        parse_scenario("test-real:mode=loose")
    row = next(r for r in describe_all() if r["name"] == "test-real")
    assert row["kind"] == "real" and [p["name"] for p in row["params"]] == ["timeout", "mode"]
    with pytest.raises(ValueError, match="already registered"):
        register(Intermediary(name="test-real", path="tcp", summary="another"))
