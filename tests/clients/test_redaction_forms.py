"""Redaction holds for the credential forms real clients put on the wire (as the relay records them in chunks):
LOGIN quoted (imapfilter, getmail's imaplib), LOGIN with synchronising and non-synchronising literals,
AUTHENTICATE PLAIN with SASL-IR (curl, mbsync, interimap), AUTHENTICATE PLAIN answered after a continuation
(fetchmail), AUTHENTICATE LOGIN, SMTP AUTH PLAIN, HTTP Basic (jmapc/requests)."""

from __future__ import annotations

import base64

import pytest

from conformance.transcript import Transcript

USER, PW = "alice", "alice-Lemonade-pw1"
PLAIN = base64.b64encode(f"\0{USER}\0{PW}".encode()).decode()
B64_USER, B64_PW = base64.b64encode(USER.encode()).decode(), base64.b64encode(PW.encode()).decode()
BASIC = base64.b64encode(f"{USER}:{PW}".encode()).decode()

FORMS = {
    "login-quoted": [f'1001 LOGIN "{USER}" "{PW}"\r\n'],
    "login-atoms": [f"A2 LOGIN {USER} {PW}\r\n"],
    "login-literal-sync": [f"a LOGIN {{{len(USER)}}}\r\n", f"{USER} {{{len(PW)}}}\r\n", f"{PW}\r\n"],
    "login-literal-plus": [f"a LOGIN {{{len(USER)}+}}\r\n{USER} {{{len(PW)}+}}\r\n{PW}\r\n"],
    "sasl-ir-plain": [f"A001 AUTHENTICATE PLAIN {PLAIN}\r\n"],
    "plain-after-continuation": ["A0002 AUTHENTICATE PLAIN\r\n", f"{PLAIN}\r\n"],
    "auth-login": ["3 AUTHENTICATE LOGIN\r\n", f"{B64_USER}\r\n", f"{B64_PW}\r\n"],
    "smtp-auth-plain": [f"AUTH PLAIN {PLAIN}\r\n"],
    "http-basic": [f"GET /.well-known/jmap HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {BASIC}\r\n\r\n"],
    "split-password": ['1001 LOGIN "alice" "alice-Lem', 'onade-pw1"\r\n'],
}
SERVER = {"plain-after-continuation": "+ \r\n", "auth-login": "+ VXNlcm5hbWU6\r\n", "login-literal-sync": "+ OK\r\n"}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_real_client_credential_forms_are_redacted(form):
    t = Transcript(secrets={PW})
    red = t.redactor()
    out = []
    for chunk in FORMS[form]:
        out.append(red.client(chunk))
        if form in SERVER:
            red.server(SERVER[form])
    text = "".join(out)
    for secret in (PW, PLAIN, B64_PW, BASIC):
        assert secret not in text, (form, text)
    if form == "split-password":  # the tail of a LOGIN line cut by a segment boundary is a credential too
        assert "onade-pw1" not in out[1] and "<redacted>" in out[1]
