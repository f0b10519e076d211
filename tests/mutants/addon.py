"""Mutate: one mutation operator (tests/mutants/operators.py) applied on the server->client leg (tests only).

IMAP is read with the suite's own sans-IO reader, so an operator sees whole responses (literals included) and the
verb of the command each tagged one answers; a connection is passed through untouched once it starts TLS or
COMPRESS. SMTP is cut into whole replies and mutated before TLS. JMAP responses are buffered and mutated whole,
except event streams, which pass event by event. ``applied(master)`` counts the responses an operator changed on
that master's path (an operator that never applied cannot be caught). The count and the path's configuration (which
upstream port speaks which protocol, the upstream address to rewrite in JMAP bodies) live on the master, set with
``configure_path``: mitmproxy dispatches the hooks of every master in a process to the addon instances of the newest
one, so an instance's own attributes would mix paths that run side by side. Alone:
``mitmdump --mode reverse:tcp://127.0.0.1:143@10143 -s tests/mutants/addon.py --set mutant_operator=imap-drop-exists``.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from mitmproxy import http, tcp
from mitmproxy.proxy import server_hooks

from conformance.errors import ProtocolViolation
from conformance.intermediaries.addons.common import RawTcp, StreamResponses, current_master, options
from conformance.intermediaries.addons.strip_starttls import distinct_loopback
from conformance.protocols.imapwire import ResponseReader
from tests.mutants.operators import OPERATORS, drop_state_events, is_push, mutate_imap, mutate_json, mutate_smtp, reorder

DELAY = 3.0  # imap-delay-push: longer than every promptness threshold of the quick depth (2-3 s)
_command = re.compile(rb"^([^\s]+) (UID [A-Za-z]+|[A-Za-z]+)", re.M)
_smtp_reply = re.compile(rb"(?:\d{3}-[^\r\n]*\r\n)*\d{3}(?: [^\r\n]*)?\r\n")
APPLIED = "_lemonade_mutations_applied"
PATH_CONFIG = "_lemonade_mutant_path"


@dataclass
class PathConfig:
    protocols: dict[int, str] = field(default_factory=dict)  # upstream port -> imap | smtp (else from the greeting)
    aliases: dict[bytes, bytes] = field(default_factory=dict)  # upstream host:port -> the proxy's (JMAP bodies)


def configure_path(master, config: PathConfig) -> None:
    """The configuration of ``master``'s path (before any client connects)."""
    setattr(master, PATH_CONFIG, config)


def path_config() -> PathConfig:
    return getattr(current_master(), PATH_CONFIG, None) or PathConfig()


def applied(master) -> int:
    """How many responses the operator changed on ``master``'s path."""
    return getattr(master, APPLIED, 0)


def count(changed: bool) -> None:
    """Count one change on the current master's path."""
    if changed:
        master = current_master()
        setattr(master, APPLIED, applied(master) + 1)


@dataclass
class ImapFlow:
    reader: ResponseReader = field(default_factory=ResponseReader)
    verbs: dict[str, str] = field(default_factory=dict)  # tag -> verb of the client's command
    passthrough: bool = False


@dataclass
class SmtpFlow:
    held: bytes = b""
    last: str = ""
    tls: bool = False


class Mutate:
    def __init__(self) -> None:
        self.flows: dict[str, ImapFlow | SmtpFlow] = {}  # client connection id -> state (ids are unique)

    def load(self, loader) -> None:
        loader.add_option("mutant_operator", str, "identity", "The mutation operator (tests/mutants/operators.py).",
                          choices=sorted(OPERATORS))

    @property
    def operator(self) -> str:
        return options().mutant_operator

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Leave from a loopback address other than the server's: Dovecot trusts a peer with its own address (it
        offers AUTH before TLS and takes cleartext logins), which the path must not change."""
        if data.server.sockname is None and data.server.address:
            source = distinct_loopback(data.server.address[0])
            if source:
                data.server.sockname = (source, 0)

    # -- TCP: IMAP and SMTP ---------------------------------------------------------------------------
    def _state(self, flow: tcp.TCPFlow, first: bytes) -> ImapFlow | SmtpFlow:
        cid = flow.client_conn.id
        if cid not in self.flows:
            port = flow.server_conn.address[1] if flow.server_conn.address else 0
            kind = path_config().protocols.get(port) or ("smtp" if first[:3].isdigit() else "imap")
            self.flows[cid] = SmtpFlow() if kind == "smtp" else ImapFlow()
        return self.flows[cid]

    async def tcp_message(self, flow: tcp.TCPFlow) -> None:
        m = flow.messages[-1]
        if m.from_client:
            state = self.flows.get(flow.client_conn.id)
            if isinstance(state, ImapFlow):
                for tag, verb in _command.findall(m.content):
                    state.verbs[tag.decode(errors="replace")] = verb.decode(errors="replace").upper()
            elif isinstance(state, SmtpFlow) and m.content.strip():
                state.last = m.content.strip().split(b"\r\n")[-1].split(b" ", 1)[0].decode(errors="replace").upper()
            return
        if not m.content:
            return
        state = self._state(flow, m.content)  # identity goes through the same reading and writing: the control
        if isinstance(state, SmtpFlow):
            m.content = self._smtp(state, m.content)
            return
        if state.passthrough:
            return
        try:
            responses = state.reader.feed(m.content)
        except ProtocolViolation:
            state.passthrough = True
            return
        out: list[bytes] = []
        for resp in responses:
            verb = state.verbs.get(resp.tag, "") if not resp.is_untagged else ""
            new = mutate_imap(self.operator, resp, verb)
            count(new != [resp.raw])
            out += new
            if resp.status == "OK" and verb in ("COMPRESS", "STARTTLS"):
                state.passthrough = True  # what follows is deflated or TLS: nothing more to read
        if self.operator == "imap-reorder":
            shuffled = reorder(out)
            count(shuffled != out)
            out = shuffled
        if state.passthrough:
            out.append(bytes(state.reader._buf))  # the rest of this segment, already deflated or TLS
        if self.operator == "imap-delay-push" and is_push(out):
            count(True)
            await asyncio.sleep(DELAY)
        m.content = b"".join(out)

    def _smtp(self, state: SmtpFlow, data: bytes) -> bytes:
        if state.tls:
            return data
        state.held += data
        out, pos = bytearray(), 0
        for match in _smtp_reply.finditer(state.held):
            if match.start() != pos:
                break
            reply = match.group(0)
            new = mutate_smtp(self.operator, reply, state.last, state.tls)
            count(new != reply)
            out += new
            pos = match.end()
            if state.last == "STARTTLS" and new.startswith(b"220"):
                state.tls = True
                out += state.held[pos:]
                pos = len(state.held)
                break
        state.held = state.held[pos:]
        return bytes(out)

    # -- HTTP: JMAP -------------------------------------------------------------------------------------
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is None or not (self.operator == "identity" or self.operator.startswith("jmap-")):
            return
        ctype = flow.response.headers.get("content-type", "")
        if ctype.startswith("text/event-stream"):
            if self.operator == "jmap-drop-state-events":
                flow.response.stream = self._event_filter()
            return
        flow.response.stream = False  # buffered: the response hook sees the whole body

    def _event_filter(self):
        held = b""

        def filter_chunk(chunk: bytes) -> bytes:
            nonlocal held
            if not chunk:  # end of the body: whatever is left goes as it is
                rest, held = held, b""
                return rest
            data = held + chunk
            out, held = drop_state_events(data)
            count(len(out) + len(held) < len(data))
            return out

        return filter_chunk

    def response(self, flow: http.HTTPFlow) -> None:
        r = flow.response
        if r is None or r.stream or not (self.operator == "identity" or self.operator.startswith("jmap-")):
            return
        body = r.content or b""
        for upstream, proxy in path_config().aliases.items():  # absolute URLs of the Session must lead back through here
            body = body.replace(upstream, proxy)
            if "location" in r.headers:
                r.headers["location"] = r.headers["location"].replace(upstream.decode(), proxy.decode())
        r.content = body
        status, body = mutate_json(self.operator, flow.request.path, r.status_code, body)
        if (status, body) != (r.status_code, r.content):
            count(True)
            r.status_code = status
            r.content = body


addons = [RawTcp(), StreamResponses(), Mutate()]
