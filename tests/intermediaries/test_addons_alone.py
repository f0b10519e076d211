"""Each addon alone, the mitmproxy way (``mitmproxy.test.taddons``): its options are its scenario parameters,
declared once, with the full-depth default, and a value the scenario grammar refuses is refused by
``configure`` too (mitmproxy itself checks neither ``choices`` nor ranges on ``--set``)."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons, tflow

from conformance.errors import BadInput
from conformance.intermediaries.addons import https_only, strip_starttls
from conformance.intermediaries.scenario import Emulator, parse_scenario, registry

# the product's emulators (test-only ones other test modules register in this process are not)
EMULATORS = sorted(n for n, s in registry().items()
                   if isinstance(s, Emulator) and s.addon.__module__.startswith("conformance.intermediaries.addons."))


def test_every_built_in_intermediary_is_an_emulator_declared_in_its_addon_module():
    assert {"nat-idle", "lifetime", "kill", "flaky", "strip-starttls", "link", "https-only", "inspecting",
            "buffering", "read-timeout"} <= set(EMULATORS)
    for name in EMULATORS:
        spec = registry()[name]
        module = __import__(spec.addon.__module__, fromlist=["SCENARIO"])
        assert module.SCENARIO is spec, f"{name} must be declared once, beside its addon"


@pytest.mark.parametrize("name", EMULATORS)
def test_options_are_the_scenario_parameters_with_the_full_default(name):
    spec = registry()[name]
    addon = spec.addon()
    with taddons.context(addon) as tctx:
        declared = {p.option for p in getattr(spec.addon, "OPTIONS", ()) if p.option}
        assert declared <= set(tctx.options.keys())
        for p in spec.params:
            if not p.option:  # https-only's `endpoints` names target endpoints: a scenario parameter only
                continue
            option = tctx.options._options[p.option]
            assert option.default == p.option_value(p.full), f"{p.option}: mitmdump starts with the full default"
            assert list(option.choices or ()) == list(p.choices)
            tctx.configure(addon, **{p.option: p.option_value(p.quick)})  # the quick default is accepted


@pytest.mark.parametrize("name", EMULATORS)
def test_a_value_the_scenario_refuses_is_refused_by_configure(name):
    spec = registry()[name]
    addon = spec.addon()
    cases = []
    for p in getattr(spec.addon, "OPTIONS", ()):
        if not p.option:
            continue
        if p.choices:
            cases.append((p, "bogus", "must be one of"))
        elif p.type in (int, float):
            cases.append((p, -1 if p.type is int else "-1", "must not be negative"))
        elif p.check is not None:
            cases.append((p, "abc", "must be"))
    with taddons.context(addon) as tctx:
        for p, bad, words in cases:
            with pytest.raises(exceptions.OptionsError, match=words):
                tctx.configure(addon, **{p.option: bad})
            if p.scenario:
                with pytest.raises(BadInput, match=words):
                    parse_scenario(f"{name}:{p.name}={bad}")


def test_nat_idle_mode_bogus_is_an_error_not_a_fin():
    with pytest.raises(BadInput, match="parameter 'mode' must be one of rst, fin, silent, got 'bogus'"):
        parse_scenario("nat-idle:mode=bogus")


def test_strip_starttls_alone_rewrites_the_servers_capabilities():
    addon = strip_starttls.StripStarttls()
    with taddons.context(addon):
        flow = tflow.ttcpflow(messages=[])
        flow.messages.append(tflow.tcp.TCPMessage(False, b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] hi\r\n"))
        addon.tcp_message(flow)
        assert flow.messages[-1].content == b"* OK [CAPABILITY IMAP4rev1] hi\r\n"
        flow.messages.append(tflow.tcp.TCPMessage(True, b"a STARTTLS\r\n"))
        addon.tcp_message(flow)  # the client asked for TLS anyway: the connection is left alone from now on
        flow.messages.append(tflow.tcp.TCPMessage(False, b"* CAPABILITY IMAP4rev1 STARTTLS\r\n"))
        addon.tcp_message(flow)
        assert flow.messages[-1].content == b"* CAPABILITY IMAP4rev1 STARTTLS\r\n"


def test_https_only_alone_answers_connect_to_an_undeclared_port_with_403():
    addon = https_only.HttpsOnly()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, https_only_ports="443/8443")
        allowed, refused = tflow.tflow(), tflow.tflow()
        allowed.request.method = refused.request.method = "CONNECT"
        allowed.request.port, refused.request.port = 8443, 143
        addon.http_connect(allowed)
        addon.http_connect(refused)
        assert allowed.response is None
        assert refused.response is not None and refused.response.status_code == 403
