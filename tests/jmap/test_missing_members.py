"""A server that leaves out a member every answer of its kind must carry gets ``fail`` naming the member and the RFC
section, never an error (``KeyError``): scripted peers omit ``state`` (/get), ``accountId`` (every standard method)
or ``newState`` (/changes, /set, Email/import); the typed accessors of conformance/protocols/members.py say what is
missing."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from conformance.errors import ProtocolViolation
from conformance.protocols.members import GET, Arr, MissingMember, MistypedMember, Obj, method_response
from tests.fakes.jmap import FakeJmapServer

CHECKS = ("get_state_changes", "changes_maxchanges", "email_changes_reconstruct_after_reconnect")
EXPECT = {  # behaviour -> (member named, RFC section named, the checks that read it: fail; the others pass)
    "omit-state": ("'state'", "RFC 8620 5.1", {f"jmap/{c}" for c in CHECKS}),
    "omit-accountId": ("'accountId'", "RFC 8620 5.1", {"jmap/get_state_changes"}),
    "omit-newState": ("'newState'", "RFC 8620 5.2", {"jmap/email_changes_reconstruct_after_reconnect"}),
}


def test_a_missing_member_is_a_fail_naming_it(lemonade, tmp_path):
    with ExitStack() as stack:
        fakes = {b: stack.enter_context(FakeJmapServer(b)) for b in EXPECT}
        args = ["run", "--profile", "jmap", "--scenario", "direct", "-n", "2", "-k", " or ".join(CHECKS)]
        for fake in fakes.values():
            args += ["--target", str(fake.target_file(tmp_path))]
        run = lemonade(*args)
    results = run.results["results"]
    assert len(results) == len(CHECKS) * len(EXPECT), run.out + run.err
    for r in results:
        behaviour = r["target"].removeprefix("fake-jmap-")
        member, section, failing = EXPECT[behaviour]
        if r["check"] not in failing:  # a member no step of the check reads fails nothing
            assert r["verdict"] == "pass", (behaviour, r["check"], r["verdict"], r["message"])
            continue
        assert r["verdict"] == "fail", (behaviour, r["check"], r["verdict"], r["message"])
        assert member in r["message"] and section in r["message"], (behaviour, r["check"], r["message"])
        assert "KeyError" not in r["message"] and "Traceback" not in r["message"]
    assert run.rc == 1, run.out


def test_typed_accessors_name_the_member_and_the_section():
    got = method_response("Email/get", {"accountId": "a", "state": "s1", "list": [{"id": "M1"}], "notFound": []}, "c0")
    assert got.str("state") == "s1" and got["list"][0].str("id") == "M1"
    with pytest.raises(MissingMember, match=r"Email/get response \(call c0\) has no 'state' member \(RFC 8620 5.1: "
                                            r"state: String\)"):
        method_response("Email/get", {"accountId": "a", "list": []}, "c0").str("state")
    with pytest.raises(MistypedMember, match=r"member 'state' is 7 \(Number\); RFC 8620 5.1 declares String"):
        method_response("Email/get", {"accountId": "a", "state": 7}, "c0")["state"]
    with pytest.raises(MissingMember, match="'newState'"):
        method_response("Email/set", {"accountId": "a"}).require("accountId", "newState")
    with pytest.raises(MissingMember, match=r"'list'\[0\] has no 'id' member"):
        Obj({"list": [{}]}, "Mailbox/get response", "RFC 8620 5.1", GET)["list"][0]["id"]
    with pytest.raises(MissingMember, match="has no element 0"):
        Arr([], "methodResponses", "RFC 8620 3.4")[0]
    with pytest.raises(MistypedMember, match="requires Boolean"):
        Obj({"hasMoreChanges": 1}, "Email/changes response", "RFC 8620 5.2").bool("hasMoreChanges")
    assert Obj({"x": None}, "o", "s").optional("x", dict, {}) == {}
    assert issubclass(MissingMember, ProtocolViolation) and issubclass(MistypedMember, ProtocolViolation)
    # still a dict and a list for everything else: JSON, equality, .get
    o = Obj({"a": [1, {"b": 2}]}, "o", "s")
    assert o == {"a": [1, {"b": 2}]} and o.get("zz") is None and o["a"][1]["b"] == 2
