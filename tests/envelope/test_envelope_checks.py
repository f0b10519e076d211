"""Envelope checks: the S/MIME fixtures against OpenSSL, the checks against the real embedded Dovecot, and a
test-only rewriting intermediary that the checks must catch."""

from __future__ import annotations

import re

import pytest

from conformance.catalog import load_catalog
from conformance.fixtures.smime import SmimeKit, split_multipart_signed
from tests.conftest import CliRun, run_cli

ENVELOPE = "test_signed_roundtrip or test_through_intermediaries"  # the check modules of checks/envelope


@pytest.fixture(scope="module")
def kit():
    k = SmimeKit()
    yield k
    k.cleanup()


def test_every_fixture_verifies_untouched(kit):
    fixtures = kit.fixtures()
    assert {f.name for f in fixtures} == {"signed-7bit", "signed-8bit", "signed-binary", "signed-folded-headers",
                                          "opaque-signed", "enveloped"}
    for f in fixtures:
        v = kit.check(f, f.data)
        assert v.ok, (f.name, v.detail)
        if f.kind == "detached":
            assert split_multipart_signed(f.data)[0] == f.content


@pytest.mark.parametrize("tamper", ["crlf-to-lf", "strip-trailing-space", "refold-part-header", "8bit-to-qp",
                                    "cte-label"])
def test_openssl_detects_each_field_rewrite(kit, tamper):
    fixtures = {f.name: f for f in kit.fixtures()}
    f = {"crlf-to-lf": fixtures["signed-7bit"], "strip-trailing-space": fixtures["signed-7bit"],
         "refold-part-header": fixtures["signed-folded-headers"], "8bit-to-qp": fixtures["signed-8bit"],
         "cte-label": fixtures["signed-7bit"]}[tamper]
    data = {
        "crlf-to-lf": lambda d: d.replace(b"\r\n", b"\n"),
        "strip-trailing-space": lambda d: d.replace(b"line   \r\n", b"line\r\n"),
        "refold-part-header": lambda d: d.replace(b"Content-Type:   text/plain;\r\n\t charset",
                                                  b"Content-Type: text/plain; charset"),
        "8bit-to-qp": lambda d: d.replace(b"Transfer-Encoding: 8bit", b"Transfer-Encoding: quoted-printable").replace(
            "ü".encode(), b"=C3=BC"),
        "cte-label": lambda d: d.replace(b"Transfer-Encoding: 7bit", b"Transfer-Encoding: 8bit"),
    }[tamper](f.data)
    assert data != f.data
    assert not kit.verify(data).ok


def test_reversible_conversion_is_recognised(kit):
    import quopri

    from conformance.checks.envelope.roundtrip import reversible_conversion

    f = next(x for x in kit.fixtures() if x.name == "signed-8bit")
    head, _, text = f.content.partition(b"\r\n\r\n")
    converted = head.replace(b"8bit", b"quoted-printable") + b"\r\n\r\n" + quopri.encodestring(text)
    assert reversible_conversion(f.content, f.data.replace(f.content, converted)) == "quoted-printable"
    assert reversible_conversion(f.content, f.data.replace(b"\r\n", b"\n")) is None
    lossy = head.replace(b"8bit", b"quoted-printable") + b"\r\n\r\n" + quopri.encodestring(text[:-5])
    assert reversible_conversion(f.content, f.data.replace(f.content, lossy)) is None


def test_envelope_checks_pass_on_default_dovecot(lemonade):
    run = lemonade("run", "-k", ENVELOPE)
    v = run.verdicts()
    assert run.rc == 0, run.out + run.err
    link_keys = [k for k in v if k.startswith("envelope/signed_roundtrip_interrupted_and_retried|link")]
    link = v.pop(link_keys[0]) if link_keys else None  # once the link intermediary exists
    assert link in (None, "pass"), link
    assert v == {
        "envelope/signed_append_fetch_byte_exact|direct": "pass",
        "envelope/signed_8bit_append|direct": "pass",
        "envelope/binary_append_fetch|direct": "pass",  # BINARY is exact; BODY[] re-encoded (allowed), noted
        "envelope/body_stable_across_sessions_flags_copy_move|direct": "pass",
        "envelope/catenate_signed_part|direct": "pass",
        "envelope/burl_submission_byte_exact|direct": "pass",
        "envelope/signed_roundtrip_interrupted_and_retried|kill": "pass",
    }, v
    binary = run.result("envelope/binary_append_fetch")
    assert "RFC 3516 4.4" in binary["message"] and "quoted-printable" in binary["message"], binary["message"]
    assert {v["verdict"] for v in binary["requirement_verdicts"].values()} == {"pass"}
    assert [r["fixture"] for r in binary["evidence"]["roundtrip"]][1:] == ["base64 part", "quoted-printable part"]
    rows = run.result("envelope/signed_append_fetch_byte_exact")["evidence"]["roundtrip"]
    assert {r["fixture"] for r in rows} == {"signed-7bit", "signed-folded-headers", "opaque-signed", "enveloped"}
    assert all(r["identical"] for r in rows)
    burl = run.result("envelope/burl_submission_byte_exact")["evidence"]["roundtrip"][0]
    assert burl["identical_after_trace_fields"] and burl["fields_added"] == ["Received"]


def run_with_rewrite(tmp_path, *args: str) -> CliRun:
    """`lemonade run` in a process that first registers the test-only rewriting intermediary (run_cli keeps the run
    in that one process: the workers would not know the addon)."""
    return run_cli(tmp_path / "rewrite-run", "run", *args, prelude="import tests.envelope.rewrite_addon")


@pytest.mark.proves("envelope/signed_append_fetch_byte_exact", "imap.msg.append-roundtrip")
@pytest.mark.proves("envelope/signed_append_fetch_byte_exact", "mobile.envelope.signed-byte-exact")
@pytest.mark.proves("envelope/signed_append_fetch_byte_exact", "smime.canonical-text")
@pytest.mark.proves("envelope/signed_append_fetch_byte_exact", "smime.signed-7bit")
@pytest.mark.proves("envelope/signed_append_fetch_byte_exact", "smime.part-headers-covered")
@pytest.mark.proves("envelope/signed_append_fetch_byte_exact", "smime.binary-capable")
@pytest.mark.proves("envelope/signed_append_fetch_byte_exact", "imap.msg.size-matches")
@pytest.mark.proves("envelope/signed_8bit_append", "imap.msg.append-8bit")
@pytest.mark.proves("envelope/binary_append_fetch", "binary.append-no-loss")
@pytest.mark.proves("envelope/binary_append_fetch", "binary.fetch-decoded")
@pytest.mark.proves("envelope/body_stable_across_sessions_flags_copy_move", "imap.msg.immutable")
@pytest.mark.proves("envelope/body_stable_across_sessions_flags_copy_move", "mobile.envelope.signed-byte-exact")
@pytest.mark.proves("envelope/catenate_signed_part", "catenate.octets-unchanged")
@pytest.mark.proves("envelope/catenate_signed_part", "mobile.envelope.signed-byte-exact")
@pytest.mark.proves("envelope/signed_roundtrip_interrupted_and_retried", "mobile.envelope.signed-byte-exact")
def test_rewriting_intermediary_fails_every_envelope_check(tmp_path, prove):
    """CRLF->LF (or a 7bit label relabelled 8bit) on the server->client leg: every check that reads the octets back
    must fail, with evidence. One run: unpinned checks run under both scenarios, the kill check under the second."""
    run = run_with_rewrite(tmp_path, "--scenario", "rewrite:mode=eol", "--scenario", "kill+rewrite:mode=cte",
                           "-k", ENVELOPE)
    assert run.rc == 1, run.out + run.err
    sc = "rewrite:mode=eol"
    check = "envelope/signed_append_fetch_byte_exact"
    r = prove(run, check, "imap.msg.append-roundtrip", ["did not come back intact", "first difference at octet"],
              scenario=sc)
    prove(run, check, "mobile.envelope.signed-byte-exact", ["did not come back intact", "OpenSSL: FAILS"], scenario=sc)
    for rid in ("smime.canonical-text", "smime.signed-7bit", "smime.part-headers-covered", "smime.binary-capable"):
        prove(run, check, rid, "did not come back intact", scenario=sc)
    prove(run, check, "imap.msg.size-matches", "RFC822.SIZE", scenario=sc)  # a SHOULD: non-strict
    rows = r["evidence"]["roundtrip"]
    multipart = [x for x in rows if x["fixture"] in ("signed-7bit", "signed-folded-headers")]
    assert multipart and all(not x["identical"] and x["openssl"].startswith("FAILS") for x in multipart)
    actions = [e["text"] for e in r["evidence"]["transcript"] if e["direction"] == "I"]
    assert any(re.search(r"server->client leg: .*CRLF turned into LF", a) for a in actions), actions
    # the proxy-server leg carried the intact octets: the server is not the one who changed them
    assert any(e["leg"] == "proxy-server" and "Content-Transfer-Encoding: 7bit\r\n" in e["text"]
               for e in r["evidence"]["transcript"])
    prove(run, "envelope/signed_8bit_append", "imap.msg.append-8bit", "without a reversible 7bit conversion",
          scenario=sc)
    for rid in ("binary.append-no-loss", "binary.fetch-decoded"):
        prove(run, "envelope/binary_append_fetch", rid, "BINARY[1.2] does not return the appended binary octets",
              scenario=sc)
    stable = "envelope/body_stable_across_sessions_flags_copy_move"
    prove(run, stable, "imap.msg.immutable", ["reads of the same UID did not come back intact"], scenario=sc)
    prove(run, stable, "mobile.envelope.signed-byte-exact", "copies did not come back intact", scenario=sc)
    prove(run, "envelope/catenate_signed_part", "catenate.octets-unchanged", "octets were not copied unchanged",
          scenario=sc)
    prove(run, "envelope/catenate_signed_part", "mobile.envelope.signed-byte-exact", "did not come back intact",
          scenario=sc)
    prove(run, "envelope/signed_roundtrip_interrupted_and_retried", "mobile.envelope.signed-byte-exact",
          "copies through the path kill+rewrite:mode=cte did not come back intact")
    relabelled = prove(run, "envelope/signed_append_fetch_byte_exact", "mobile.envelope.signed-byte-exact",
                       ["did not come back intact", "Transfer-Encoding: 8bit", "OpenSSL: FAILS"],
                       scenario="kill+rewrite:mode=cte")
    assert relabelled["verdict"] == "fail"
    html = (run.dir / "index.html").read_text()
    assert "what the intermediaries did on the path" in html and "CRLF turned into LF" in html


def test_identical_octets_that_openssl_rejects_are_an_error_not_a_fail():
    """The server gave back exactly what it was given; OpenSSL still refuses it: the fixture or OpenSSL is at fault."""
    from conformance.checks.envelope.roundtrip import judge_rows
    from tests.unit.test_check_api import _case

    case = _case(load_catalog(), ["mobile.envelope.signed-byte-exact", "imap.msg.append-roundtrip"], [])
    rows = [{"fixture": "signed-7bit", "step": "APPEND/FETCH BODY[]", "identical": True, "difference": "",
             "openssl": "FAILS (signature): bad digest"}]
    assert not judge_rows(case, "mobile.envelope.signed-byte-exact", rows, "messages")
    assert judge_rows(case, "imap.msg.append-roundtrip", rows, "messages", need_openssl=False)
    judged = case.judgement.judged
    assert judged["mobile.envelope.signed-byte-exact"].verdict == "error", judged
    assert "OpenSSL rejects" in judged["mobile.envelope.signed-byte-exact"].message
    assert judged["imap.msg.append-roundtrip"].verdict == "pass"


def test_catenate_without_literal_plus_uses_synchronizing_literals(lemonade):
    """A server without LITERAL+ (hidden by a test-only intermediary): the CATENATE check sends its TEXT parts as
    synchronizing literals and still judges the octets, where it used to fail for want of LITERAL+."""
    run = lemonade("run", "--scenario", "strip-literal-plus", "-k", "catenate_signed_part",
                   prelude="import tests.envelope.strip_uidplus_addon")
    r = run.result("envelope/catenate_signed_part")
    assert r["verdict"] == "pass", r
    sent = [e["text"] for e in r["evidence"]["transcript"] if e["direction"] == "C" and "CATENATE" in e["text"]]
    assert sent and "TEXT {" in sent[0] and "+}" not in sent[0], sent


@pytest.mark.proves("envelope/body_stable_across_sessions_flags_copy_move", "uidplus.copyuid")
def test_copy_and_move_without_copyuid_are_non_strict(lemonade, prove):
    """A server that advertises UIDPLUS but forgets [COPYUID] (a test-only intermediary removes it): uidplus.copyuid
    (a SHOULD) is non-strict, the octets still decide the two other requirements."""
    run = lemonade("run", "--scenario", "strip-copyuid", "-k", "body_stable_across_sessions",
                   prelude="import tests.envelope.strip_uidplus_addon")
    r = prove(run, "envelope/body_stable_across_sessions_flags_copy_move", "uidplus.copyuid", "COPY OK without [COPYUID]")
    assert {k: v["verdict"] for k, v in r["requirement_verdicts"].items() if k != "uidplus.copyuid"} == {
        "imap.msg.immutable": "pass", "mobile.envelope.signed-byte-exact": "pass"}, r
