"""Submission on the captured connection against scripted peers: the smtplib methods checks use still work, and
each fault gets the verdict the rule gives it (issue 20: a stall after EHLO was an error, an endless EHLO reply
took 13.7 GB)."""

from __future__ import annotations

import base64
import time

import pytest

from conformance.errors import (
    Flood,
    HarnessError,
    ProtocolViolation,
    ServerClosed,
    ServerTimeout,
    TargetUnreachable,
    TlsHandshakeFailed,
)
from conformance.protocols.smtp import CapturingSMTP, SmtpConnection, SmtpRefused
from conformance.protocols.smtpwire import MAX_REPLY_LINES
from conformance.protocols.tls import insecure_context
from conformance.transcript import Transcript
from tests.fakes.scripted import PeerConn, ScriptedPeer, free_port, tls_server_context

PASSWORD = "bob-smtp-secret"
EHLO = (b"250-sink.test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250-CHUNKING\r\n250-AUTH PLAIN LOGIN\r\n"
        b"250 STARTTLS\r\n")


def session(peer: ScriptedPeer, timeout: float = 1.0, transcript: Transcript | None = None) -> CapturingSMTP:
    return CapturingSMTP("127.0.0.1", peer.port, transcript=transcript or Transcript(), timeout=timeout,
                         label="smtp-under-test")


class Sink:
    """A conformant enough submission server: records commands and message octets."""

    def __init__(self, tls_dir=None) -> None:
        self.commands: list[bytes] = []
        self.messages: list[bytes] = []
        self.tls = tls_server_context(tls_dir) if tls_dir else None

    def __call__(self, c: PeerConn) -> None:
        c.send(b"220 sink.test ESMTP\r\n")
        while (line := c.recv_until()) is not None:
            self.commands.append(line)
            verb = line.split(b" ")[0].rstrip(b"\r\n").upper()
            if verb == b"EHLO":
                c.send(EHLO)
            elif verb == b"STARTTLS" and self.tls:
                c.send(b"220 go ahead\r\n")
                if not c.start_tls(self.tls):
                    return
            elif verb == b"AUTH":
                c.send(b"235 2.7.0 ok\r\n")
            elif verb == b"DATA":
                c.send(b"354 go\r\n")
                self.messages.append(c.recv_until(b"\r\n.\r\n"))
                c.send(b"250 2.0.0 queued\r\n")
            elif verb == b"BDAT":
                size = int(line.split(b" ")[1])
                while len(c.buf) < size:
                    more = c.sock.recv(65536)
                    if not more:
                        return
                    c.buf += more
                self.messages.append(c.buf[:size])
                c.buf = c.buf[size:]
                c.send(b"250 2.0.0 chunk\r\n")
            elif verb == b"QUIT":
                c.send(b"221 bye\r\n")
                return
            else:
                c.send(b"250 2.0.0 ok\r\n")


def test_the_session_methods_checks_use_work_on_a_conformant_peer(tmp_path):
    sink = Sink(tmp_path)
    transcript = Transcript()
    with ScriptedPeer(sink) as peer:
        smtp = session(peer, transcript=transcript)
        assert smtp.ehlo("client.test")[0] == 250
        assert smtp.has_extn("starttls") and smtp.ehlo_keywords()["SIZE"] == "1000000"
        assert smtp.starttls(context=insecure_context())[0] == 220 and smtp.tls_version
        assert not smtp.has_extn("starttls"), "EHLO keywords are forgotten after STARTTLS (RFC 3207 4.2)"
        smtp.ehlo("client.test")
        assert smtp.login("bob", PASSWORD)[0] == 235
        smtp.sendmail("bob@x.test", ["alice@x.test"], b"Subject: t\r\n\r\n.leading dot\r\nbody")
        assert smtp.docmd("MAIL", "FROM:<bob@x.test>")[0] == 250
        smtp.rcpt("alice@x.test")
        smtp.send(b"BDAT 5 LAST\r\nhello")
        assert smtp.getreply() == (250, b"2.0.0 chunk")
        assert smtp.quit()[0] == 221
    assert sink.messages[0] == b"Subject: t\r\n\r\n..leading dot\r\nbody\r\n.\r\n", "dot-stuffed and terminated"
    assert sink.messages[1] == b"hello"
    assert any(c.startswith(b"MAIL FROM:<bob@x.test> size=") for c in sink.commands)
    blob = base64.b64encode(f"\0bob\0{PASSWORD}".encode()).decode()
    assert PASSWORD not in transcript.text() and blob not in transcript.text()


def test_stall_after_ehlo_is_a_server_timeout_not_a_disconnect():
    def script(c: PeerConn) -> None:
        c.send(b"220 hi\r\n")
        c.recv_until()
        c.stall()

    with ScriptedPeer(script) as peer:
        smtp = session(peer, timeout=0.5)
        t0 = time.monotonic()
        with pytest.raises(ServerTimeout, match="EHLO"):
            smtp.ehlo()
        assert time.monotonic() - t0 < 2.5


def test_auth_stall_names_the_step_without_the_password():
    def script(c: PeerConn) -> None:
        c.send(b"220 hi\r\n")
        c.recv_until()
        c.send(b"250-x\r\n250 AUTH LOGIN\r\n")
        c.recv_until()
        c.send(b"334 VXNlcm5hbWU6\r\n")
        c.recv_until()
        c.send(b"334 UGFzc3dvcmQ6\r\n")
        c.recv_until()
        c.stall()

    transcript = Transcript()
    with ScriptedPeer(script) as peer:
        smtp = session(peer, timeout=0.5, transcript=transcript)
        with pytest.raises(ServerTimeout) as e:
            smtp.login("bob", PASSWORD)
    encoded = base64.b64encode(PASSWORD.encode()).decode()
    assert "AUTH LOGIN password" in str(e.value)
    for text in (str(e.value), transcript.text()):
        assert PASSWORD not in text and encoded not in text


def test_endless_multi_line_reply_is_a_flood_after_a_bounded_number_of_lines():
    def script(c: PeerConn) -> None:
        c.send(b"220 hi\r\n")
        c.recv_until()
        c.flood(b"250-FLOOD keyword keyword keyword\r\n" * 1000)

    with ScriptedPeer(script) as peer:
        smtp = session(peer, timeout=20)
        t0 = time.monotonic()
        with pytest.raises(Flood, match=f"{MAX_REPLY_LINES} lines"):
            smtp.ehlo()
        assert time.monotonic() - t0 < 5


def test_reset_early_close_and_garbage():
    with ScriptedPeer(lambda c: (c.send(b"220 hi\r\n"), c.recv_until(), c.reset())) as peer:
        with pytest.raises(ServerClosed):
            session(peer).ehlo()
    with ScriptedPeer(lambda c: (c.send(b"220 hi\r\n"), c.recv_until(), c.send(b"250-half a reply\r\n"))) as peer:
        with pytest.raises(ServerClosed, match="closed the connection"):
            session(peer).ehlo()
    with ScriptedPeer(lambda c: c.send(b"* OK this is IMAP, not SMTP\r\n")) as peer:
        with pytest.raises(ProtocolViolation, match="NNN"):
            session(peer)
    with ScriptedPeer(lambda c: c.send(b"220-a\r\n250 b\r\n")) as peer:
        with pytest.raises(ProtocolViolation, match="mixes codes"):
            session(peer)


def test_refused_greeting_is_the_check_s_prerequisite_not_a_fail():
    with ScriptedPeer(lambda c: c.send(b"554 no service for you\r\n")) as peer:
        with pytest.raises(SmtpRefused) as e:
            session(peer)
    assert e.value.smtp_code == 554


def test_tls_handshake_failure_and_stall_after_starttls():
    def garbage(c: PeerConn) -> None:
        c.send(b"220 hi\r\n")
        c.recv_until()
        c.send(b"220 go\r\n")
        c.recv_until(b"\x01", timeout=5)
        c.send(b"500 not TLS\r\n" * 20)

    def stall(c: PeerConn) -> None:
        c.send(b"220 hi\r\n")
        c.recv_until()
        c.send(b"220 go\r\n")
        c.stall()

    for script in (garbage, stall):
        with ScriptedPeer(script) as peer:
            smtp = SmtpConnection("127.0.0.1", peer.port, Transcript(), label="raw", timeout=0.7)
            assert smtp.reply().code == 220
            assert smtp.command("STARTTLS").code == 220
            t0 = time.monotonic()
            with pytest.raises(TlsHandshakeFailed):
                smtp.start_tls()
            assert time.monotonic() - t0 < 2.5


def test_refused_connect_own_listener_versus_target():
    port = free_port()
    with pytest.raises(HarnessError) as own:
        CapturingSMTP("127.0.0.1", port, transcript=Transcript(), via="intermediary listener (scenario kill)")
    assert not isinstance(own.value, TargetUnreachable)
    with pytest.raises(TargetUnreachable):
        CapturingSMTP("127.0.0.1", port, transcript=Transcript())


def test_server_text_quoted_in_a_failure_carries_no_password():
    """A server that echoes the AUTH line as garbage: the ProtocolViolation quotes it, redacted."""
    def script(c: PeerConn) -> None:
        c.send(b"220 hi\r\n")
        c.recv_until()
        c.send(b"250-x\r\n250 AUTH PLAIN\r\n")
        auth = c.recv_until()
        c.send(b"echo: " + auth)
        c.stall()

    with ScriptedPeer(script) as peer:
        smtp = session(peer, timeout=2)
        with pytest.raises(ProtocolViolation) as e:
            smtp.login("bob", PASSWORD)
    blob = base64.b64encode(f"\0bob\0{PASSWORD}".encode()).decode()
    assert "echo" in str(e.value) and blob not in str(e.value) and PASSWORD not in str(e.value)
