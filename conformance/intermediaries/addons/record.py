"""Writes the proxy-to-server leg of every TCP connection into the case transcript.

``ServerLegIn`` runs first and records what the server sent (before any rewriting); ``ServerLegOut`` runs
last and records what was forwarded to the server (after rewriting), or that nothing was.
The client-to-proxy leg is recorded by the suite's own clients.
"""

from __future__ import annotations

import re

from mitmproxy import http, tcp

from conformance.intermediaries.addons.common import options, shared
from conformance.transcript import Redactor, Transcript

LEG = "proxy-server"
SUMMARY = 256  # a chunk larger than 4 KiB is recorded by its first 256 octets and its size (bulk transfers)


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def text_of(data: bytes, nbytes: int | None = None) -> str:
    """``transcript.printable`` with the same output, scanning with a regex instead of per character (this
    runs for every relayed chunk); bulk chunks are summarised. ``nbytes``: the chunk's size when ``data`` is
    its first octets only (at least the 2,000 a text shows)."""
    n = len(data) if nbytes is None else nbytes
    limit = SUMMARY if n > 4096 else 2000
    if n >= 5 and 0x14 <= data[0] <= 0x17 and data[1] == 0x03:
        return f"[TLS records, {n} octets]"
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", data[:limit].decode("utf-8", errors="backslashreplace"))
    if n > limit:
        text += f"... [{n - limit} more octets]"
    return text


def shown(data: bytes) -> bytes:
    """The octets of a chunk its text (``text_of``) shows: the rest is counted, not kept."""
    n = len(data)
    return data if n <= 2000 else data[:SUMMARY if n > 4096 else 2000]


class WireText:
    """How one connection's relayed chunks become transcript text: printable, then redacted by the
    connection's own redactor (its SASL state), when the transcript is read (``Transcript.add_wire``)."""

    __slots__ = ("redactor",)

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor

    def client(self, data: bytes, nbytes: int) -> str:
        return self.redactor.client(text_of(data, nbytes))

    def server(self, data: bytes, nbytes: int) -> str:
        return self.redactor.server(text_of(data, nbytes))


class RecordMessages:
    """Whether the recorders keep every relayed message (``lemonade_record=all``, the default) or only what
    happens to connections (``connections``: opened, cut, closed), for runs where per-message evidence is of no
    use and its cost is the suite's own latency (``lemonade load``). The transcript bounds what it keeps itself
    (a head and a ring per connection), so a long transfer still shows how it began and how it ended."""

    def __init__(self, transcript: Transcript) -> None:
        self.transcript = transcript
        self.messages = True

    def configure(self, updated) -> None:
        if "lemonade_record" in updated:
            self.messages = options().lemonade_record == "all"


class ServerLegIn(RecordMessages):
    def load(self, loader) -> None:
        loader.add_option("lemonade_record", str, "all", "What the path records into the case transcript: every "
                                                         "relayed message (all) or connection events only.",
                          choices=["all", "connections"])

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        s = shared()
        s.open(flow)
        addr = flow.server_conn.address
        self.transcript.add(LEG, "N", f"intermediary opened upstream connection to {addr[0]}:{addr[1]}", conn=s.label(flow))

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        m = flow.messages[-1]
        if not m.from_client and m.content and self.messages:
            s = shared()
            data = m.content
            self.transcript.add_wire(LEG, "S", shown(data), len(data), wire_text_of(flow, self.transcript, s).server,
                                     s.label(flow))


def wire_text_of(flow: tcp.TCPFlow, transcript: Transcript, s=None) -> WireText:
    """The rendering of one connection, with its redactor, shared by both recorders: the server's final reply
    (seen by ServerLegIn) ends the SASL exchange the client's AUTHENTICATE began (seen by ServerLegOut); one
    connection's SASL state never spills onto another."""
    redactors = (s or shared()).redactors
    r = redactors.get(flow.client_conn.id)
    if r is None:
        r = redactors[flow.client_conn.id] = WireText(transcript.redactor())
    return r


def _head(message: http.Message, first: str) -> str:
    return first + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in message.headers.items(multi=True))


class HttpLegIn:
    """HTTP flows on the proxy-server leg: response heads as they arrive and how each exchange ended."""

    def __init__(self, transcript: Transcript) -> None:
        self.transcript = transcript
        self.redactor = transcript.redactor()

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        r = flow.response
        if r is not None:
            self.transcript.add(LEG, "S", self.redactor.server(_head(r, f"{r.http_version} {r.status_code} {r.reason}")),
                                conn=f"http {flow.request.method} {flow.request.path}")

    def response(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None and flow.request.method != "CONNECT":
            self.transcript.add(LEG, "N", f"response {flow.response.status_code} complete",
                                conn=f"http {flow.request.method} {flow.request.path}")

    def error(self, flow: http.HTTPFlow) -> None:
        self.transcript.add(LEG, "N", f"exchange ended: {flow.error.msg if flow.error else 'error'}",
                            conn=f"http {flow.request.method} {flow.request.path}")


class HttpLegOut:
    """HTTP requests as forwarded to the server (after every addon), credentials redacted."""

    def __init__(self, transcript: Transcript) -> None:
        self.transcript = transcript
        self.redactor = transcript.redactor()

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:  # answered by the intermediary itself, never forwarded
            return
        q = flow.request
        self.transcript.add(LEG, "C", self.redactor.client(_head(q, f"{q.method} {q.url} {q.http_version}")),
                            len(q.raw_content or b""), conn=f"http {q.method} {q.path}")

    def http_connect(self, flow: http.HTTPFlow) -> None:
        q = flow.request
        verdict = f"answered {flow.response.status_code} by the intermediary" if flow.response else "tunnel opened"
        self.transcript.add(LEG, "N", f"CONNECT {q.host}:{q.port}: {verdict}", conn=f"connect {q.host}:{q.port}")


class ServerLegOut(RecordMessages):
    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        m = flow.messages[-1]
        if m.from_client and self.messages:
            s = shared()
            label = s.label(flow)
            if m.content:
                data = m.content
                self.transcript.add_wire(LEG, "C", shown(data), len(data), wire_text_of(flow, self.transcript, s).client,
                                         label)
            else:
                self.transcript.add(LEG, "I", "client data not forwarded to the server", conn=label)
        del flow.messages[:-1]  # every addon reads only the newest message; keep memory flat on long transfers

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        self.transcript.add(LEG, "N", "connection closed", conn=shared().label(flow))

    def tcp_error(self, flow: tcp.TCPFlow) -> None:
        self.transcript.add(LEG, "N", f"connection ended: {flow.error.msg if flow.error else 'error'}",
                            conn=shared().label(flow))
