"""The TLS suite, TLS compression, COMPRESS layering and ManageSieve checks can fail, each for its own reason: one
run against fakes that get one thing wrong (tests/fakes/tls.py) beside ones that get it right; and the ClientHello
reader with plain bytes."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest

from conformance.checks.transport.clienthello import ServerHelloReader, client_hello
from tests.direct import assert_judged
from tests.fakes.imap import FakeImapServer
from tests.fakes.tls import CompressingHello, FakeManageSieve, MisLayeredCompress, TlsImapServer, server_context

MTI = "transport/mandatory_tls12_suite"
NOCOMP = "transport/no_tls_compression"
LAYER = "reconnect/compress_inside_tls"
SIEVE = "capability/managesieve_lists_lemonade_extensions"
LEMONADE_SIEVE = "enotify imap4flags relational vacation variables comparator-i;unicode-casemap fileinto"


def sieve_target(directory: Path, name: str, port: int) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(f'name = "{name}"\n[endpoints]\nmanagesieve = "sieve://127.0.0.1:{port}"\n'
                    '[[accounts]]\nusername = "alice"\npassword = "alice-fake-pw"\n')
    return path


@pytest.mark.proves("transport/mandatory_tls12_suite", "tls.imap-mti-suite")
@pytest.mark.proves("transport/no_tls_compression", "tls.no-compression")
@pytest.mark.proves("reconnect/compress_inside_tls", "compress.layering")
@pytest.mark.proves("capability/managesieve_lists_lemonade_extensions", "lemonade.mda.managesieve-extensions")
def test_tls_and_sieve_checks_fail_against_fakes_getting_one_thing_wrong(lemonade, tmp_path, prove):
    args = ["run", "-n", "2", "-k", "mandatory_tls12 or no_tls_compression or compress_inside_tls or managesieve"]
    with ExitStack() as stack:
        for name, ctx in (("aes256-only", server_context(rsa=True, ciphers="ECDHE-RSA-AES256-GCM-SHA384")),
                          ("ec-only", server_context(rsa=False)), ("rsa", server_context(rsa=True))):
            fake = stack.enter_context(TlsImapServer(ctx))
            args += ["--target", str(fake.target_file(tmp_path, name=name))]
        hello = stack.enter_context(CompressingHello())
        args += ["--target", str(hello.target_file(tmp_path))]
        mis = stack.enter_context(FakeImapServer(MisLayeredCompress))
        mis.tls_context = server_context(rsa=False)  # type: ignore[attr-defined]
        args += ["--target", str(mis.target_file(tmp_path, name="compress-below-tls"))]
        for name, sieve in (("sieve-missing", LEMONADE_SIEVE.replace("variables ", "")), ("sieve-complete", LEMONADE_SIEVE)):
            fake = stack.enter_context(FakeManageSieve(sieve))
            args += ["--target", str(sieve_target(tmp_path, name, fake.port))]
        run = lemonade(*args, timeout=600)
    prove(run, MTI, "tls.imap-mti-suite", "imaps: ", target="aes256-only")
    assert_judged(run, MTI, "tls.imap-mti-suite", "not-applicable", "no RSA certificate", target="ec-only")
    assert_judged(run, MTI, "tls.imap-mti-suite", "pass", target="rsa")
    prove(run, NOCOMP, "tls.no-compression", "compression method 1 (DEFLATE)", target="compressing-hello")
    assert_judged(run, NOCOMP, "tls.no-compression", "pass", target="rsa")
    prove(run, LAYER, "compress.layering", "compression was applied outside TLS", target="compress-below-tls")
    prove(run, SIEVE, "lemonade.mda.managesieve-extensions", "SIEVE capability lacks variables",
          target="sieve-missing")
    assert_judged(run, SIEVE, "lemonade.mda.managesieve-extensions", "pass", target="sieve-complete")


def test_client_hello_offers_deflate_and_the_reader_sees_the_choice():
    hello = client_hello(compression=(1, 0))
    assert hello[:3] == b"\x16\x03\x01" and hello[5] == 1  # a handshake record holding a ClientHello
    assert b"\x02\x01\x00" in hello  # two compression methods: DEFLATE, null
    reader = ServerHelloReader()
    body = b"\x03\x03" + b"\x00" * 32 + b"\x00" + b"\xc0\x2f" + b"\x01"
    record = b"\x16\x03\x03" + (4 + len(body)).to_bytes(2, "big") + b"\x02" + len(body).to_bytes(3, "big") + body
    assert reader.feed(record[:7]) is None  # incomplete
    answer = reader.feed(record[7:])
    assert answer.kind == "server-hello" and answer.compression == 1 and answer.cipher_suite == 0xC02F
    alert = ServerHelloReader().feed(b"\x15\x03\x03\x00\x02\x02\x28")
    assert alert.kind == "alert" and alert.alert == (2, 40)
