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
