"""cyrus-3.10: Debian 13's Cyrus rebuilt with WebSockets serves IMAP, a JMAP session and JMAP push."""

from __future__ import annotations

import base64
import imaplib
import json
import os
import socket
import ssl
import time

import pytest

from conformance.providers.container import ContainerProvider
from conformance.providers.engine import image_exists
from conformance.providers.images import IMAGES, build_all

pytestmark = pytest.mark.container


@pytest.fixture(scope="module")
def cyrus(engine):
    if not image_exists(IMAGES["cyrus-3.10"].tag()):
        if "cyrus-3.10" not in os.environ.get("LEMONADE_CONTAINER_IMAGES", ""):
            pytest.skip("cyrus-3.10 image not built (a source build of several minutes): run "
                        "scripts/build-images cyrus-3.10 or set LEMONADE_CONTAINER_IMAGES to include it")
        build_all(["cyrus-3.10"])
    prov = ContainerProvider("cyrus-3.10")
    target = prov.start()
    yield target
    prov.stop()


def _http(ep, path: str, user: str, password: str, timeout: float = 10) -> tuple[bytes, socket.socket]:
    s = socket.create_connection((ep.host, ep.port), timeout=timeout)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {auth}\r\n"
              f"Accept: text/event-stream, application/json\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    return head, s


def test_cyrus_serves_imap_and_a_jmap_session_with_websocket_push(cyrus):
    assert cyrus.provider == "container" and cyrus.version.startswith("Cyrus IMAP 3.10"), cyrus.version
    ep = cyrus.endpoints["imap"]
    acc = cyrus.accounts[0]
    m = imaplib.IMAP4(ep.host, ep.port, timeout=10)
    assert "STARTTLS" in m.capabilities and "LOGINDISABLED" in m.capabilities, m.capabilities
    m.starttls(ssl_context=ssl._create_unverified_context())
    m.login(acc.username, acc.password)
    typ, boxes = m.list()
    # autocreated at the first login, special-use flags set (Cyrus spells them in lower case)
    assert typ == "OK" and any(b"\\drafts" in b.lower() for b in boxes), boxes
    m.logout()
    head, s = _http(cyrus.endpoints["jmap"], "/jmap/", acc.username, acc.password)
    with s:
        status = head.split(b"\r\n", 1)[0]
        assert b" 200 " in status, head[:300]
        body = head.split(b"\r\n\r\n", 1)[1]
        length = int([h.split(b":")[1] for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")][0])
        while len(body) < length:
            body += s.recv(65536)
    session = json.loads(body)
    ws = session["capabilities"].get("urn:ietf:params:jmap:websocket")
    assert ws and ws.get("supportsPush") is True, sorted(session["capabilities"])
    assert "eventsource" in session["eventSourceUrl"]


def test_cyrus_eventsource_pushes_a_state_change(cyrus):
    acc = cyrus.accounts[0]
    head, s = _http(cyrus.endpoints["jmap"], "/jmap/eventsource/?types=*&closeafter=no&ping=1",
                    acc.username, acc.password)
    with s:
        assert b" 200 " in head.split(b"\r\n", 1)[0] and b"text/event-stream" in head.lower(), head[:300]
        ep = cyrus.endpoints["imap"]
        m = imaplib.IMAP4(ep.host, ep.port, timeout=10)
        m.starttls(ssl_context=ssl._create_unverified_context())
        m.login(acc.username, acc.password)
        m.append("INBOX", None, None, b"From: a@example.org\r\nSubject: push\r\n\r\nhello\r\n")
        m.logout()
        seen = head.split(b"\r\n\r\n", 1)[1]
        deadline = time.monotonic() + 10
        while b"event: state" not in seen and time.monotonic() < deadline:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                chunk = s.recv(4096)
            except TimeoutError:
                break
            if not chunk:
                break
            seen += chunk
    assert b"event: state" in seen and b'"Email"' in seen, seen[-400:]
