"""Credentials never reach a transcript: protocol-aware redaction plus known-secret scrubbing."""

import base64

from conformance.transcript import REDACTED, Redactor, Transcript, printable


def test_imap_login_redacted():
    r = Redactor({"s3cret"})
    assert r.client('a1 LOGIN "alice" "s3cret"\r\n') == f'a1 LOGIN "alice" {REDACTED}\r\n'


def test_authenticate_and_continuation_redacted():
    r = Redactor()
    blob = base64.b64encode(b"\0alice\0pw").decode()
    assert blob not in r.client(f"a2 AUTHENTICATE PLAIN {blob}\r\n")
    r2 = Redactor()
    r2.client("a3 AUTHENTICATE PLAIN\r\n")
    r2.server("+ \r\n")
    assert r2.client(blob + "\r\n").strip() == REDACTED
    r2.server("a3 OK done\r\n")
    assert r2.client("a4 NOOP\r\n") == "a4 NOOP\r\n"


def test_smtp_auth_and_basic_redacted():
    r = Redactor()
    assert "AGFsaWNl" not in r.client("AUTH PLAIN AGFsaWNlAHB3\r\n")
    assert r.scrub("Authorization: Basic YWxpY2U6cHc=\r\n") == f"Authorization: Basic {REDACTED}\r\n"


def test_secret_and_its_base64_scrubbed_anywhere():
    pw = "alice-pw-123"
    t = Transcript(secrets={pw})
    r = t.redactor()
    text = r.server(f"* OK echo {pw} and {base64.b64encode(pw.encode()).decode()}")
    assert pw not in text and base64.b64encode(pw.encode()).decode() not in text


def test_printable_escapes_controls_and_summarises_tls():
    assert printable(b"a\x00b\r\n") == "a\\x00b\r\n"
    assert printable(b"\x17\x03\x03\x00\x10" + b"x" * 16).startswith("[TLS records")
