"""Writes the proxy-to-server leg of every TCP connection into the case transcript.

``ServerLegIn`` runs first and records what the server sent (before any rewriting); ``ServerLegOut`` runs
last and records what was forwarded to the server (after rewriting), or that nothing was.
The client-to-proxy leg is recorded by the suite's own clients.
"""

from __future__ import annotations

from mitmproxy import tcp

from conformance.intermediaries.addons.common import shared
from conformance.transcript import Transcript, printable

LEG = "proxy-server"


class ServerLegIn:
    def __init__(self, transcript: Transcript) -> None:
        self.transcript = transcript
        self.redactor = transcript.redactor()

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        s = shared()
        s.open(flow)
        addr = flow.server_conn.address
        self.transcript.add(LEG, "N", f"intermediary opened upstream connection to {addr[0]}:{addr[1]}", conn=s.label(flow))

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        m = flow.messages[-1]
        if not m.from_client and m.content:
            self.transcript.add(LEG, "S", self.redactor.server(printable(m.content)), len(m.content),
                                conn=shared().label(flow))


class ServerLegOut:
    def __init__(self, transcript: Transcript) -> None:
        self.transcript = transcript
        self.redactor = transcript.redactor()

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        m = flow.messages[-1]
        label = shared().label(flow)
        if m.from_client:
            if m.content:
                self.transcript.add(LEG, "C", self.redactor.client(printable(m.content)), len(m.content), conn=label)
            else:
                self.transcript.add(LEG, "I", "client data not forwarded to the server", conn=label)

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        self.transcript.add(LEG, "N", "connection closed", conn=shared().label(flow))

    def tcp_error(self, flow: tcp.TCPFlow) -> None:
        self.transcript.add(LEG, "N", f"connection ended: {flow.error.msg if flow.error else 'error'}",
                            conn=shared().label(flow))
