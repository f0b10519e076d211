"""The relay a check reads in clear (NetworkPath.terminate_tls, used by client.qresync.use): it terminates imaps
with the path's own CA, hides COMPRESS=DEFLATE, and records commands in clear with credentials redacted per
connection (an AUTHENTICATE with SASL-IR redacts its own line only, not the rest of the connection)."""

from __future__ import annotations

import base64
import socket
import ssl

import pytest

from conformance.catalog import load_catalog, parse_override
from conformance.errors import BadInput
from conformance.intermediaries.addons.clear import hide_compress
from conformance.intermediaries.path import NetworkPath
from conformance.intermediaries.scenario import parse_scenario
from conformance.transcript import Transcript


def imap_exchange(sock: ssl.SSLSocket, line: str, tag: str) -> bytes:
    sock.sendall(line.encode() + b"\r\n")
    data = b""
    while f"\r\n{tag} ".encode() not in b"\r\n" + data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before {tag} completed: {data!r}"
        data += chunk
    return data


def test_terminating_relay_reads_commands_in_clear_with_credentials_redacted(dovecot):
    account = dovecot.accounts[0]
    transcript = Transcript(secrets=dovecot.secrets())
    path = NetworkPath(parse_scenario("kill"), dovecot, transcript)
    path.terminate_tls = {"imaps"}
    path.start()
    try:
        assert path.intercepts_tls and path.ca_file
        host, port = path.address("imaps")
        ctx = ssl.create_default_context(cafile=path.ca_file)  # the path's CA only: the relay's certificate
        plain = base64.b64encode(f"\0{account.username}\0{account.password}".encode()).decode()
        for n in range(2):  # a second connection starts with a fresh SASL state
            with ctx.wrap_socket(socket.create_connection((host, port), timeout=10), server_hostname="localhost") as s:
                s.recv(4096)  # greeting
                caps = imap_exchange(s, f"a{n} AUTHENTICATE PLAIN {plain}", f"a{n}")
                assert b" OK" in caps and b"COMPRESS=" not in caps.upper(), caps
                caps = imap_exchange(s, f"b{n} CAPABILITY", f"b{n}")
                assert b"IMAP4rev1" in caps and b"COMPRESS=" not in caps.upper(), caps
                imap_exchange(s, f"c{n} SELECT INBOX", f"c{n}")
                imap_exchange(s, f"d{n} LOGOUT", f"d{n}")
    finally:
        path.stop()
    assert not path.harness_errors, path.harness_errors
    sent = [e.text for e in transcript.entries if e.leg == "proxy-server" and e.direction == "C"]
    text = "".join(sent)
    for n in range(2):
        assert f"a{n} AUTHENTICATE PLAIN <redacted>" in text and f"c{n} SELECT INBOX" in text, sent
    assert account.password not in text and plain not in text
    assert any("hide-compress" in e.text for e in transcript.entries if e.direction == "I")


def test_hide_compress_touches_capability_lists_only():
    data = (b"* CAPABILITY IMAP4rev1 COMPRESS=DEFLATE IDLE\r\n"
            b"a OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] done\r\n* 1 FETCH (BODY[] {20}\r\nCOMPRESS=DEFLATE x\r\n)\r\n")
    out, removed = hide_compress(data)
    assert removed == 2
    assert out.startswith(b"* CAPABILITY IMAP4rev1 IDLE\r\na OK [CAPABILITY IMAP4rev1] done\r\n")
    assert out.endswith(b"COMPRESS=DEFLATE x\r\n)\r\n")  # message content is left alone


@pytest.mark.parametrize("text, words", [
    ("client.push.silent-drop-recovery:recover_within", "expected REQUIREMENT:PARAMETER=VALUE"),
    ("no.such:x=1", "unknown requirement"),
    ("client.push.silent-drop-recovery:nope=1", "has no parameter 'nope'"),
    ("client.push.silent-drop-recovery:observe=soon", "is not a float"),
    ("client.push.silent-drop-recovery:observe=-1", "from 0 to 1e9"),
])
def test_param_override_bad_input_is_named(text, words):
    with pytest.raises(BadInput, match=words.replace("(", r"\(")):
        parse_override(text, load_catalog())


def test_param_override_wins_at_every_depth():
    catalog = load_catalog()
    key, value = parse_override("idle.reissue-29:max_gap=3", catalog)
    catalog.overrides[key] = value
    assert value == 3.0 and all(catalog.parameter("idle.reissue-29", "max_gap", d) == 3.0 for d in ("quick", "full"))
    assert catalog.parameter("idle.reissue-29", "observe", "full") == 2100
